"""Rewards with trl's signature ``fn(completions, **columns) -> list[float]``, in one name -> callable registry.

``completions`` are strings or trl's conversational form ``[{"role": "assistant", "content": str}]``; the dataset
columns arrive as keyword lists (``bbox``: pixel xyxy ground truth, ``width``, ``height``). The paper's GRPO reward is
the final-step IoU + 0.1 x a format bonus, with no per-step shaping: :data:`PAPER_WEIGHTS`.
"""
from __future__ import annotations

from typing import Callable, Sequence

from . import boxes as bx
from .parsing import answer_box, parse_box

RewardFn = Callable[..., list[float]]
REWARDS: dict[str, RewardFn] = {}
PAPER_WEIGHTS = {"iou": 1.0, "format": 0.1}


def register(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: add a reward function to :data:`REWARDS`."""
    def deco(fn: RewardFn) -> RewardFn:
        REWARDS[name] = fn
        return fn
    return deco


def _text(c) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[-1], dict):
        content = c[-1].get("content", "")
        if isinstance(content, list):  # [{"type": "text", "text": ...}]
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
    return ""


@register("iou")
def iou_reward(completions: Sequence, bbox: Sequence, width: Sequence, height: Sequence, coord_format: str = "qwen3",
               resized: Sequence | None = None, window: Sequence | None = None, **_) -> list[float]:
    """IoU of the parsed box with the ground truth; 0 for a parse failure.

    Args:
        completions: model outputs (strings or trl conversational completions).
        bbox: ground-truth xyxy pixel boxes; width, height: image sizes.
        resized: per sample, the processor-resized ``(width, height)`` that ``qwen25`` pixels refer to.
        window: per sample, the zoom view's window (image pixels) when the answer is in its frame, else None.

    >>> iou_reward(['{"bbox_2d": [0, 0, 500, 500]}', "no box"], bbox=[[0, 0, 64, 64]] * 2, width=[128] * 2,
    ...            height=[128] * 2)
    [1.0, 0.0]
    """
    if coord_format == "qwen25" and resized is None:
        raise ValueError("iou_reward: qwen25 answers are pixels of the resized image; pass resized=[(w, h), ...]")
    frames = resized if resized is not None else [None] * len(completions)
    windows = window if window is not None else [None] * len(completions)
    return [bx.iou(answer_box(_text(c), w, h, coord_format, fr, win)[0], g)
            for c, g, w, h, fr, win in zip(completions, bbox, width, height, frames, windows)]


@register("format")
def format_reward(completions: Sequence, **_) -> list[float]:
    """1.0 when the completion contains a parsable, finite box, else 0.0.

    >>> format_reward(['The box is too small. {"bbox_2d": [1, 2, 30, 40]}', "{bbox_2d: oops}"])
    [1.0, 0.0]
    """
    return [1.0 if parse_box(_text(c)).ok else 0.0 for c in completions]


def combined(completions: Sequence, weights: dict[str, float] | None = None, **columns) -> list[float]:
    """Weighted sum of registry rewards (default: the paper's IoU + 0.1 x format)."""
    weights = weights or PAPER_WEIGHTS
    total = [0.0] * len(completions)
    for name, w in weights.items():
        for i, r in enumerate(REWARDS[name](completions, **columns)):
            total[i] += w * r
    return total

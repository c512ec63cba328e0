"""Check every sample before the refinement loop generates anything, so an odd sample is named instead of crashing
its whole batch with a traceback that names nothing.

**The rule.** :func:`~ivt_lib.core.loop.run_loop` (and GRPO, on its training and validation samples) refuses the whole
call when any sample is invalid, before any generation, with an :class:`InvalidSamplesError` that names every invalid
sample: its id, its position and why. Nothing is dropped silently, so a result always covers every sample it says it
covers. To run the others, remove the named samples (:func:`sample_problems` lists them) or fix them.

A sample is invalid when
* its image is missing (``None``, no ``image`` field) or not a PIL image, cannot be decoded (a truncated file), has no
  pixels, or is more than :data:`MAX_ASPECT` times wider than high or higher than wide (Qwen-VL's processor stops on
  those: "absolute aspect ratio must be smaller than 200");
* its ground-truth box is not four finite numbers, is empty or inverted, or leaves the image by more than
  :data:`BOX_TOLERANCE` px (such a box scored IoU 0 without a word; ``splits.load_split`` applies the same rule);
* its expression is not text, is empty, or is longer than ``prompts.MAX_EXPRESSION_CHARS``
  (:func:`~ivt_lib.core.prompts.expression_problem`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from PIL import Image

from .prompts import expression_problem

MAX_ASPECT = 200  # Qwen2/2.5/3-VL smart_resize refuses max(w, h) / min(w, h) > 200 (transformers 5.24)
BOX_TOLERANCE = 1.0  # px: float rounding of xywh -> xyxy conversions in real datasets
SHOWN = 20  # problems spelt out in the error; the rest are counted


@dataclass(frozen=True)
class SampleProblem:
    """One invalid sample: its position in the list, its id and every reason it is invalid."""

    index: int
    sample_id: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        return f"sample {self.sample_id!r} (#{self.index}): {'; '.join(self.reasons)}"


class InvalidSamplesError(ValueError):
    """Some samples cannot be run; ``problems`` lists them (nothing was generated)."""

    def __init__(self, message: str, problems: list[SampleProblem]):
        super().__init__(message)
        self.problems = problems


def image_problem(image: Any) -> tuple[str | None, Image.Image | None]:
    """``(why the image cannot be used, None)`` or ``(None, its RGB copy)`` (decoded here, once)."""
    if image is None:
        return "image is missing (None)", None
    if not isinstance(image, Image.Image):
        return f"image is a {type(image).__name__}, not a PIL image", None
    w, h = image.size
    if w < 1 or h < 1:
        return f"image is {w}x{h} px: no pixels", None
    if max(w, h) / min(w, h) > MAX_ASPECT:
        return (f"image is {w}x{h} px: aspect ratio {max(w, h) / min(w, h):.0f}:1 is over {MAX_ASPECT}:1, which the "
                "Qwen-VL processor refuses"), None
    try:
        return None, image.convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for a damaged file
        return f"image cannot be decoded ({type(exc).__name__}: {exc})", None


def box_problem(box: Any, width: int, height: int) -> str | None:
    """Why ``box`` is not a ground-truth xyxy box inside a ``width`` x ``height`` image, else None."""
    try:
        b = [float(v) for v in box]
    except (TypeError, ValueError):
        return f"ground-truth box {box!r} is not 4 numbers"
    if len(b) != 4 or not all(math.isfinite(v) for v in b):
        return f"ground-truth box {box!r} is not 4 finite numbers"
    x1, y1, x2, y2 = b
    if not (x1 < x2 and y1 < y2):
        return f"ground-truth box {tuple(b)} is empty or inverted (xyxy needs x1 < x2 and y1 < y2)"
    t = BOX_TOLERANCE
    if not (-t <= x1 and -t <= y1 and x2 <= width + t and y2 <= height + t):
        return f"ground-truth box {tuple(b)} is not inside the {width}x{height} image"
    return None


def _check(index: int, sample: Any) -> tuple[SampleProblem | None, Image.Image | None]:
    if not isinstance(sample, dict):
        return SampleProblem(index, f"#{index}", (f"is a {type(sample).__name__}, not a dict",)), None
    sid = str(sample.get("id", f"#{index}"))
    reasons = [] if "id" in sample else ["no 'id' field"]
    problem, rgb = image_problem(sample.get("image"))
    if problem:
        reasons.append(problem if "image" in sample else "no 'image' field")
    if "bbox" not in sample:
        reasons.append("no 'bbox' field")
    elif isinstance(sample.get("image"), Image.Image):
        reasons += [p for p in [box_problem(sample["bbox"], *sample["image"].size)] if p]
    if "expression" not in sample:
        reasons.append("no 'expression' field")
    elif p := expression_problem(sample["expression"]):
        reasons.append(p)
    return (SampleProblem(index, sid, tuple(reasons)) if reasons else None), rgb


def sample_problems(samples: Sequence[dict]) -> list[SampleProblem]:
    """Every invalid sample of ``samples`` with its reasons (empty when all can be run)."""
    return [p for i, s in enumerate(samples) if (p := _check(i, s)[0]) is not None]


def check_samples(samples: Sequence[dict], what: str = "run_loop") -> list[Image.Image]:
    """Each sample's image as RGB, or :class:`InvalidSamplesError` naming every invalid one (``what``: the caller)."""
    images, problems = [], []
    for i, s in enumerate(samples):
        problem, rgb = _check(i, s)
        images.append(rgb)
        if problem is not None:
            problems.append(problem)
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise InvalidSamplesError(
            f"{what}: {len(problems)} of {len(samples)} samples cannot be run, so none was; remove or fix them "
            f"(ivt_lib.core.sample_check.sample_problems(samples) lists them):\n{shown}{more}", problems)
    return images

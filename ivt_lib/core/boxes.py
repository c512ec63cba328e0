"""Boxes: the one convention used everywhere in ivt.

Convention
----------
* Every box inside ivt is **xyxy in pixels of the image it refers to**: ``(x1, y1, x2, y2)`` floats, continuous
  coordinates, the image spanning ``[0, W] x [0, H]`` (no ``+1``: a box's width is ``x2 - x1``).
* Models speak their own frame only at the text boundary:
  - ``"qwen3"``: Qwen3-VL's relative integers 0..1000 (``x_rel = round(1000 * x / W)``);
  - ``"qwen25"``: Qwen2.5-VL's absolute pixels of the processor-resized image. The resized size is the
    processor's own ``smart_resize`` (:func:`qwen25_resized_size`); without an explicit ``resized`` the stock
    Qwen2.5-VL settings are used (patch 14, merge 2, 3,136-12,845,056 pixels), and the loop passes its processor's.
* Datasets that store ``xywh`` are converted once, at load time, with :func:`xywh_to_xyxy`.

The validity rule (one rule, applied by :func:`sanitize`)
---------------------------------------------------------
1. A box with any non-finite coordinate (NaN, inf) is **invalid** -> ``None`` (scored as a parse failure, IoU 0).
2. An inverted pair (``x2 < x1`` or ``y2 < y1``) is **reordered** (min, max): the model named the same rectangle.
3. Coordinates outside the image are **clipped** to it.
4. What remains may have zero area; it is kept (IoU 0 with any box) and counted as *degenerate* by the metrics.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

Box = tuple[float, float, float, float]
COORD_FORMATS = ("qwen3", "qwen25")
# Qwen2.5-VL's preprocessor_config.json: patch 14, merge 2, min_pixels 3136, max_pixels 12845056
QWEN25_RESIZE = {"patch": 14, "merge": 2, "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16384}


def qwen25_resized_size(width: int, height: int, patch: int = 14, merge: int = 2, min_pixels: int = 56 * 56,
                        max_pixels: int = 28 * 28 * 16384) -> tuple[int, int]:
    """``(width, height)`` of the image after Qwen2/2.5-VL's processor resize (transformers' own ``smart_resize``)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = smart_resize(int(height), int(width), factor=patch * merge, min_pixels=min_pixels, max_pixels=max_pixels)
    return int(w), int(h)


def resize_params(processor) -> dict[str, int]:
    """The resize settings of a Qwen-VL processor (for :func:`qwen25_resized_size`); the stock ones if absent."""
    ip = getattr(processor, "image_processor", processor)
    size = getattr(ip, "size", None)
    out = dict(QWEN25_RESIZE)
    for key, attr, alt in (("patch", "patch_size", None), ("merge", "merge_size", None),
                           ("min_pixels", "min_pixels", "shortest_edge"), ("max_pixels", "max_pixels", "longest_edge")):
        v = getattr(ip, attr, None)
        if v is None and alt is not None and size is not None:  # a dict, or transformers' SizeDict
            v = size.get(alt) if isinstance(size, dict) else getattr(size, alt, None)
        if isinstance(v, int) and v > 0:
            out[key] = v
    return out


def model_frames(processor, sizes: Sequence[tuple[int, int]], fmt: str = "qwen3") -> list[tuple[int, int] | None]:
    """Per image ``(width, height)``, the frame a model's pixel answers refer to: for qwen25 the size ``processor``
    resized it to, for qwen3 (0-1000 relative) None. The loop, the GRPO reward and the single-step reward share it."""
    if fmt != "qwen25":
        return [None] * len(sizes)
    rp = resize_params(processor)
    return [qwen25_resized_size(w, h, **rp) for w, h in sizes]


def xywh_to_xyxy(box: Sequence[float]) -> Box:
    """Convert ``(x, y, w, h)`` to ``(x1, y1, x2, y2)``."""
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)


def xyxy_to_xywh(box: Sequence[float]) -> Box:
    """Convert ``(x1, y1, x2, y2)`` to ``(x, y, w, h)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1, y1, x2 - x1, y2 - y1)


def sanitize(box: Sequence[float] | None, width: float, height: float) -> Box | None:
    """Apply the documented validity rule: non-finite -> None, reorder inverted pairs, clip to the image."""
    if box is None or len(box) != 4:
        return None
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    clip = lambda v, hi: min(max(v, 0.0), float(hi))  # noqa: E731
    return (clip(x1, width), clip(y1, height), clip(x2, width), clip(y2, height))


def to_model_frame(box: Sequence[float], width: float, height: float, fmt: str = "qwen3",
                   resized: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """Pixel xyxy -> the integers a model writes (``qwen3``: 0..1000 relative; ``qwen25``: pixels of the
    processor-resized image, ``resized`` or the stock Qwen2.5-VL resize)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if fmt == "qwen3":
        sx, sy = 1000.0 / width, 1000.0 / height
    elif fmt == "qwen25":
        rw, rh = resized if resized is not None else qwen25_resized_size(width, height)
        sx, sy = rw / width, rh / height
    else:
        raise ValueError(f"unknown coord format {fmt!r}; expected one of {COORD_FORMATS}")
    return (round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy))


def from_model_frame(box: Sequence[float], width: float, height: float, fmt: str = "qwen3",
                     resized: tuple[int, int] | None = None) -> Box:
    """Model integers -> pixel xyxy of the original image (no validity rule applied; see :func:`sanitize`)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if fmt == "qwen3":
        sx, sy = width / 1000.0, height / 1000.0
    elif fmt == "qwen25":
        rw, rh = resized if resized is not None else qwen25_resized_size(width, height)
        sx, sy = width / rw, height / rh
    else:
        raise ValueError(f"unknown coord format {fmt!r}; expected one of {COORD_FORMATS}")
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def area(box: Sequence[float]) -> float:
    """Area of an xyxy box (0 for inverted or empty boxes)."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """IoU of two xyxy boxes; 0.0 when either is None or the union is empty."""
    if a is None or b is None:
        return 0.0
    return float(iou_matched(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))[0])


def iou_matched(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise IoU of two ``(N, 4)`` xyxy tensors; 0 where the union is empty."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def iou_pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU ``(N, M)`` of xyxy tensors, the same contract as ``torchvision.ops.box_iou`` but 0 on empty unions."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def is_still(prev: Sequence[float] | None, new: Sequence[float] | None, eps: float) -> bool:
    """Stop-when-still's one test: both boxes exist and the new one moved less than ``eps`` (1 - IoU) from the previous
    (the loop's early stop and :func:`ivt_lib.core.metrics.still_rule` both use it, so they cannot disagree)."""
    return prev is not None and new is not None and 1.0 - iou(prev, new) < eps


def is_degenerate(box: Sequence[float] | None, width: float, height: float, full_frac: float = 0.95) -> bool:
    """True for zero-area boxes and boxes covering (nearly) the whole image."""
    if box is None:
        return False
    a = area(box)
    return a <= 0.0 or a >= full_frac * width * height


def lerp(a: Sequence[float], b: Sequence[float], t: float) -> Box:
    """Linear interpolation between two xyxy boxes (t=0 -> a, t=1 -> b): the teacher's corrective path."""
    return tuple(float(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def jitter(rng, box: Sequence[float], width: float, height: float, scale: float) -> Box | None:
    """Randomly shift (Gaussian, ``scale`` x size) and rescale (log-normal) a box, then apply :func:`sanitize`."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + rng.gauss(0, scale) * bw, (y1 + y2) / 2 + rng.gauss(0, scale) * bh
    sw, sh = math.exp(rng.gauss(0, scale)), math.exp(rng.gauss(0, scale))
    return sanitize((cx - bw * sw / 2, cy - bh * sh / 2, cx + bw * sw / 2, cy + bh * sh / 2), width, height)

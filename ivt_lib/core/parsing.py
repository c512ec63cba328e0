"""Parsing model output: text -> box in the model's frame, or a failure reason. Never raises.

Accepted forms (the **last** box in the text wins, because reasoning may quote earlier boxes first):
* Qwen3-VL JSON ``{"bbox_2d": [x1, y1, x2, y2]}``, also inside a list, code fences or surrounding prose;
* Qwen-VL box tokens ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from . import boxes as bx

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf(?:inity)?)"
_JSON_BOX = re.compile(
    r"[\"']?bbox_2d[\"']?\s*:\s*\[\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*,\s*(" + _NUM
    + r")\s*\]")
_TOKEN_BOX = re.compile(
    r"<\|box_start\|>\s*\(\s*(" + _NUM + r")\s*,\s*(" + _NUM + r")\s*\)\s*,\s*\(\s*(" + _NUM + r")\s*,\s*(" + _NUM
    + r")\s*\)\s*<\|box_end\|>")

FAIL_EMPTY = "empty"
FAIL_NO_BOX = "no_box"
FAIL_NON_FINITE = "non_finite"
FAIL_NOT_TEXT = "not_text"


@dataclass(frozen=True)
class ParsedBox:
    """The parse result: ``box`` in the model's frame when ``ok``, else ``reason`` says why not."""

    box: tuple[float, float, float, float] | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """True when a finite box was found."""
        return self.box is not None


def parse_box(text: object) -> ParsedBox:
    """Extract the last box from model text; failures come back as ``ParsedBox(None, reason)``."""
    if not isinstance(text, str):
        return ParsedBox(None, FAIL_NOT_TEXT)
    if not text.strip():
        return ParsedBox(None, FAIL_EMPTY)
    best: tuple[int, tuple[str, ...]] | None = None
    for pattern in (_JSON_BOX, _TOKEN_BOX):
        for m in pattern.finditer(text):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.groups())
    if best is None:
        return ParsedBox(None, FAIL_NO_BOX)
    try:
        vals = tuple(float(v) for v in best[1])
    except (ValueError, OverflowError):
        return ParsedBox(None, FAIL_NON_FINITE)
    if not all(math.isfinite(v) for v in vals):
        return ParsedBox(None, FAIL_NON_FINITE)
    return ParsedBox(vals)  # type: ignore[arg-type]


def format_box(box: tuple[int, int, int, int] | list[int]) -> str:
    """The canonical answer string, exactly as Qwen3-VL writes it: ``{"bbox_2d": [x1, y1, x2, y2]}``."""
    return '{"bbox_2d": [' + ", ".join(str(int(v)) for v in box) + "]}"


def answer_box(text: object, width: int, height: int, coord_format: str = "qwen3",
               resized: Sequence[int] | None = None, window: Sequence[int] | None = None,
               ) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """A model answer as a pixel box of the original image: parse, leave the model's frame (``resized``: the
    processor-resized size, for qwen25; ``window``: the zoom view's square window in image pixels, when the answer
    is in its frame), then the one sanitising rule of :func:`ivt_lib.core.boxes.sanitize`. Returns
    ``(box, None)``, or ``(None, reason)`` for a parse failure or an unusable box (scored as IoU 0). The loop and the
    rewards both call this, so a trajectory's IoU and its GRPO reward come from the same box."""
    parsed = parse_box(text)
    if not parsed.ok:
        return None, parsed.reason
    fr = tuple(resized) if resized is not None else None
    if window is None:
        box = bx.from_model_frame(parsed.box, width, height, coord_format, fr)
    else:  # the window's frame -> its pixels -> the image's pixels
        x0, y0, x1, y1 = (float(v) for v in window)
        a = bx.from_model_frame(parsed.box, x1 - x0, y1 - y0, coord_format, fr)
        box = (a[0] + x0, a[1] + y0, a[2] + x0, a[3] + y0)
    box = bx.sanitize(box, width, height)
    return (box, None) if box is not None else (None, "invalid_box")

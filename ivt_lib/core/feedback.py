"""Feedback views: how a refine step shows the model its previous box.

* ``overlay`` (the paper's, and every default row's): the image with the previous box drawn
  (:func:`ivt_lib.core.render.draw_box`); the box is stated in, and the answer given in, the image's frame.
* ``zoom`` (ours, a labelled extra): the same overlay image, plus a **second image**: a square window centred on the
  previous box (side ``(1 + 2 * margin)`` times the box's longer side, at least ``ZOOM_MIN_SIDE`` px), cut from the
  clean image, upsampled to ``size`` x ``size`` px, with the previous box drawn on it. Parts of the window outside
  the image are black. The prompt states the box in the window's frame and **the model answers in the window's
  frame**; the loop maps the answer back to the image (:func:`ivt_lib.core.parsing.answer_box` with ``window``).

Why the window's frame and not the image's: on the embedded default an object is about one merged vision token
(32 px of a 128 px scene), so a 4 px misalignment is an eighth of a token; in the window the same misalignment is
about 2x larger in pixels (``size / side``), and because the window always puts the previous box at the same place,
"keep" is one fixed answer and a correction is read off the picture directly, with no arithmetic between the
stated numbers and what is seen. The cost: a refine step cannot move the box far outside the window (an answer
outside it is allowed and clipped to the image, but nothing outside it is shown enlarged), so a start on the wrong
object is not fixed by the zoom (the full image is still shown for that).
A parse failure at the previous step has no box: the window is then the whole image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from . import boxes as bx
from .prompts import step_messages, zoom_messages
from .render import draw_box

FEEDBACK_VIEWS = ("overlay", "zoom")
ZOOM_MARGIN = 0.5   # context on each side of the box, as a share of its longer side (the box fills half the window)
ZOOM_SIZE = 128     # the window is upsampled to this many px a side (the embedded scenes' own size)
ZOOM_MIN_SIDE = 16  # px: the smallest window, so a tiny box is not magnified without limit

Window = tuple[int, int, int, int]  # xyxy in image pixels, integers, square; may reach outside the image


@dataclass(frozen=True)
class ViewSettings:
    """A feedback view and its knobs (``margin`` and ``size`` matter for ``zoom`` only)."""

    feedback: str = "overlay"
    margin: float = ZOOM_MARGIN
    size: int = ZOOM_SIZE

    def __post_init__(self) -> None:
        if self.feedback not in FEEDBACK_VIEWS:
            raise ValueError(f"unknown feedback view {self.feedback!r}; expected one of {FEEDBACK_VIEWS}")
        if not 0.0 <= self.margin <= 4.0:
            raise ValueError(f"zoom margin {self.margin!r} must be in [0, 4]")
        if not 32 <= self.size <= 1024:
            raise ValueError(f"zoom size {self.size!r} must be in [32, 1024] px")


@dataclass
class RefineView:
    """What one refine step shows: its messages, its images (1 or 2) and the frame its answer is read in."""

    messages: list[dict]
    images: list[Image.Image]
    window: Window | None = None          # None: the answer is in the image's frame
    frame: tuple[int, int] | None = None  # qwen25 only: the processor-resized size of the image answered in


def zoom_window(box: Sequence[float] | None, width: int, height: int, margin: float = ZOOM_MARGIN,
                min_side: int = ZOOM_MIN_SIDE) -> Window:
    """The square window around ``box`` (integer pixels); the whole image (its longer side) when ``box`` is None."""
    if box is None:
        side = max(width, height)
        return (0, 0, side, side)
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(min_side, round(max(x2 - x1, y2 - y1) * (1 + 2 * margin)), 1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return (left, top, left + side, top + side)


def to_window(box: Sequence[float], window: Window) -> bx.Box:
    """An image-pixel box in the window's own pixels (its top-left corner at 0, 0)."""
    x0, y0 = window[0], window[1]
    return (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)


def from_window(box: Sequence[float], window: Window) -> bx.Box:
    """A box in the window's own pixels, back in image pixels (no validity rule applied)."""
    x0, y0 = window[0], window[1]
    return (box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0)


def zoom_image(image: Image.Image, box: Sequence[float] | None, window: Window, size: int = ZOOM_SIZE,
               style: dict | None = None) -> Image.Image:
    """The window cut from the clean ``image`` (black outside it), upsampled to ``size`` px, ``box`` drawn on it."""
    crop = image.convert("RGB").crop(window).resize((size, size), Image.BICUBIC)
    if box is None:
        return crop
    scale = size / (window[2] - window[0])
    return draw_box(crop, tuple(v * scale for v in to_window(box, window)), **(style or {}))


def refine_view(image: Image.Image, expression: str, previous: Sequence[float] | None, step: int, T: int,
                view: ViewSettings = ViewSettings(), coord_format: str = "qwen3", style: dict | None = None,
                prompt_format: str = "refine", processor=None, draw_previous: bool = True) -> RefineView:
    """The messages and images of refine step ``step`` of ``T`` from ``previous`` (image pixels, or None)."""
    w, h = image.width, image.height
    shown = previous if draw_previous else None
    overlay = draw_box(image, shown, **(style or {})) if shown is not None else image.convert("RGB")
    if view.feedback == "overlay":
        frame = bx.model_frames(processor, [(w, h)], coord_format)[0]
        prev_m = bx.to_model_frame(previous, w, h, coord_format, frame) if previous is not None else None
        return RefineView(step_messages(expression, prev_m, step, T, prompt_format), [overlay], None, frame)
    if prompt_format != "refine":
        raise ValueError(f"the zoom view asks with the refine prompt only, not {prompt_format!r}")
    window = zoom_window(previous, w, h, view.margin)
    side = window[2] - window[0]
    frame = bx.model_frames(processor, [(view.size, view.size)], coord_format)[0]
    prev_m = (bx.to_model_frame(to_window(previous, window), side, side, coord_format, frame)
              if previous is not None else None)
    crop = zoom_image(image, shown, window, view.size, style)
    return RefineView(zoom_messages(expression, prev_m, step, T), [overlay, crop], window, frame)


def answer_in_view(box: Sequence[float], view: RefineView, width: int, height: int,
                   coord_format: str = "qwen3") -> tuple[int, int, int, int]:
    """An image-pixel box as the model should write it in ``view``'s frame (SFT targets)."""
    if view.window is None:
        return bx.to_model_frame(box, width, height, coord_format, view.frame)
    side = view.window[2] - view.window[0]
    return bx.to_model_frame(to_window(box, view.window), side, side, coord_format, view.frame)

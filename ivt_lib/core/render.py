"""Rendering: the previous box as a semi-transparent red overlay (as in the paper), and trajectory grids.

This is the single renderer used by the refinement loop, the figures and the widget, so what the model sees is
exactly what a reader sees.
"""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw

OVERLAY_RGB = (255, 0, 0)  # the paper's red; the synthetic palette keeps red out so the box is never a "shape"
OVERLAY_FILL_ALPHA = 64     # semi-transparent fill
OVERLAY_EDGE_ALPHA = 200    # strong outline, so thin boxes stay visible
OVERLAY_WIDTH = 2
# Named overlays for the drop-driver arms of notebook 01: "fill" is the paper's (and the loop's default); the others
# ask whether the red fill, which tints the target's colour that the expression names, drives the naive drop.
OVERLAY_STYLES: dict[str, dict[str, int]] = {
    "fill": {"fill_alpha": OVERLAY_FILL_ALPHA, "edge_alpha": OVERLAY_EDGE_ALPHA},
    "light_fill": {"fill_alpha": 24, "edge_alpha": OVERLAY_EDGE_ALPHA},
    "outline": {"fill_alpha": 0, "edge_alpha": OVERLAY_EDGE_ALPHA},
}


def overlay_style(name: str) -> dict[str, int]:
    """``draw_box`` keyword arguments of a named overlay (``fill``, ``light_fill``, ``outline``)."""
    if name not in OVERLAY_STYLES:
        raise ValueError(f"unknown overlay {name!r}; expected one of {sorted(OVERLAY_STYLES)}")
    return OVERLAY_STYLES[name]


def draw_box(image: Image.Image, box: Sequence[float] | None, rgb: tuple[int, int, int] = OVERLAY_RGB,
             fill_alpha: int = OVERLAY_FILL_ALPHA, edge_alpha: int = OVERLAY_EDGE_ALPHA,
             width: int = OVERLAY_WIDTH) -> Image.Image:
    """Return a copy of ``image`` (RGB) with a semi-transparent box overlay; ``None`` draws nothing."""
    base = image.convert("RGB")
    if box is None:
        return base.copy()
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    x1, y1, x2, y2 = (float(v) for v in box)
    # PIL's rectangle includes its end pixel; a box's right edge x2 lies between pixels x2-1 and x2.
    xy = [round(x1), round(y1), max(round(x1), round(x2) - 1), max(round(y1), round(y2) - 1)]
    d.rectangle(xy, fill=rgb + (fill_alpha,), outline=rgb + (edge_alpha,), width=width)
    return Image.alpha_composite(base.convert("RGBA"), layer).convert("RGB")


def draw_boxes(image: Image.Image, boxes: Sequence[tuple[Sequence[float] | None, tuple[int, int, int]]],
               width: int = 2, scale: int = 1) -> Image.Image:
    """Outline several boxes (e.g. ground truth in green, prediction in red) for figures; optional upscale."""
    img = image.convert("RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    d = ImageDraw.Draw(img)
    for box, rgb in boxes:
        if box is None:
            continue
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        d.rectangle([round(x1), round(y1), max(round(x1), round(x2) - 1), max(round(y1), round(y2) - 1)],
                    outline=rgb, width=width)
    return img


def trajectory_grid(rows: Sequence[Sequence[Image.Image]], pad: int = 4,
                    bg: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Tile rows of images (one row per sample, one column per step) into one image."""
    if not rows or not any(rows):
        raise ValueError("trajectory_grid needs at least one row with one image")
    w = max(im.width for r in rows for im in r)
    h = max(im.height for r in rows for im in r)
    ncol = max(len(r) for r in rows)
    grid = Image.new("RGB", (ncol * (w + pad) + pad, len(rows) * (h + pad) + pad), bg)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            grid.paste(im.convert("RGB"), (pad + j * (w + pad), pad + i * (h + pad)))
    return grid

"""Tests for ivt_lib.core.render: the semi-transparent red overlay and trajectory grids."""
import numpy as np
import pytest
from PIL import Image

from ivt_lib.core import render

GRAY = (128, 128, 128)


def _gray(w=40, h=30, color=GRAY, mode="RGB"):
    return Image.new(mode, (w, h), color)


def _arr(im):
    return np.asarray(im.convert("RGB")).astype(int)


# ---------------------------------------------------------------------------------------------------------------
# draw_box
# ---------------------------------------------------------------------------------------------------------------


def test_draw_box_returns_new_rgb_image_of_same_size():
    im = _gray()
    out = render.draw_box(im, (10, 10, 20, 20))
    assert out is not im
    assert out.size == im.size
    assert out.mode == "RGB"


def test_draw_box_leaves_input_untouched():
    im = _gray()
    before = im.tobytes()
    render.draw_box(im, (10, 10, 20, 20))
    assert im.tobytes() == before
    assert im.mode == "RGB"


def test_draw_box_tints_inside_towards_red():
    im = _gray()
    a = _arr(render.draw_box(im, (10, 10, 30, 25)))
    r, g, b = a[17, 20]  # (row y=17, column x=20): interior, away from the outline
    assert r > GRAY[0] and g < GRAY[1] and b < GRAY[2]
    # alpha compositing of (255, 0, 0, 64) over gray 128
    alpha = render.OVERLAY_FILL_ALPHA / 255
    assert r == pytest.approx(255 * alpha + 128 * (1 - alpha), abs=1.5)
    assert g == pytest.approx(128 * (1 - alpha), abs=1.5)
    assert b == pytest.approx(128 * (1 - alpha), abs=1.5)
    # the whole interior (inside the outline) is tinted the same way
    inner = a[12:23, 12:28]
    assert np.all(inner == a[17, 20])


def test_draw_box_outline_is_stronger_than_fill():
    a = _arr(render.draw_box(_gray(), (10, 10, 30, 25)))
    edge, inner = a[17, 10], a[17, 20]
    assert edge[0] > inner[0] and edge[1] < inner[1]


def test_draw_box_leaves_outside_unchanged():
    im = _gray()
    a = _arr(render.draw_box(im, (10, 10, 30, 25)))
    orig = _arr(im)
    mask = np.zeros(a.shape[:2], bool)
    mask[10:25, 10:30] = True  # rows y1..y2-1, columns x1..x2-1: the box's pixels (no +1 convention)
    assert np.array_equal(a[~mask], orig[~mask])
    assert np.all(np.any(a[mask] != orig[mask], axis=1))  # every pixel of the box is changed
    # far-away pixels explicitly
    for x, y in [(0, 0), (39, 29), (0, 29), (39, 0), (35, 5)]:
        assert tuple(a[y, x]) == GRAY


def test_draw_box_right_and_bottom_edges_exclusive():
    a = _arr(render.draw_box(_gray(), (10, 10, 20, 20)))
    assert tuple(a[15, 19]) != GRAY and tuple(a[19, 15]) != GRAY  # last pixels inside
    assert tuple(a[15, 20]) == GRAY and tuple(a[20, 15]) == GRAY  # x2 / y2 themselves are outside
    assert tuple(a[15, 9]) == GRAY and tuple(a[9, 15]) == GRAY


def test_draw_box_none_draws_nothing():
    im = _gray()
    out = render.draw_box(im, None)
    assert out is not im
    assert out.mode == "RGB" and out.size == im.size
    assert out.tobytes() == im.tobytes()


@pytest.mark.parametrize("mode,color", [("L", 128), ("RGBA", (128, 128, 128, 255)), ("P", 0)])
def test_draw_box_converts_other_modes_to_rgb(mode, color):
    im = Image.new(mode, (20, 20), color)
    before = im.tobytes()
    out = render.draw_box(im, (5, 5, 15, 15))
    assert out.mode == "RGB" and out.size == (20, 20)
    assert im.tobytes() == before and im.mode == mode
    a = _arr(out)
    assert a[10, 10, 0] > a[10, 10, 1]  # red tint inside
    assert np.array_equal(a[0, 0], _arr(im)[0, 0])  # corner unchanged


def test_draw_box_custom_color():
    a = _arr(render.draw_box(_gray(), (10, 10, 30, 25), rgb=(0, 0, 255)))
    r, g, b = a[17, 20]
    assert b > GRAY[2] and r < GRAY[0]


def test_draw_box_partly_outside_image_does_not_raise():
    im = _gray()
    a = _arr(render.draw_box(im, (-10, -10, 5, 5)))
    assert tuple(a[2, 2]) != GRAY
    assert tuple(a[20, 20]) == GRAY
    a = _arr(render.draw_box(im, (35, 25, 100, 100)))
    assert tuple(a[28, 38]) != GRAY
    assert tuple(a[5, 5]) == GRAY


def test_draw_box_zero_width_box_stays_visible():
    a = _arr(render.draw_box(_gray(), (15, 5, 15, 25)))
    assert tuple(a[15, 15]) != GRAY
    assert tuple(a[15, 25]) == GRAY


# ---------------------------------------------------------------------------------------------------------------
# draw_boxes
# ---------------------------------------------------------------------------------------------------------------


def test_draw_boxes_outlines_and_scale():
    im = _gray(20, 10)
    out = render.draw_boxes(im, [((2, 2, 8, 8), (0, 255, 0)), (None, (255, 0, 0))], width=1, scale=3)
    assert out.size == (60, 30)
    a = _arr(out)
    assert tuple(a[6, 6]) == (0, 255, 0)  # top-left corner of the scaled box
    assert tuple(a[15, 15]) == GRAY  # interior is not filled
    assert tuple(a[0, 0]) == GRAY
    assert im.size == (20, 10) and tuple(_arr(im)[0, 0]) == GRAY


# ---------------------------------------------------------------------------------------------------------------
# trajectory_grid
# ---------------------------------------------------------------------------------------------------------------


def test_trajectory_grid_size_arithmetic():
    rows = [[_gray(10, 8) for _ in range(3)] for _ in range(2)]
    g = render.trajectory_grid(rows, pad=4)
    assert g.size == (3 * (10 + 4) + 4, 2 * (8 + 4) + 4)
    assert g.mode == "RGB"


def test_trajectory_grid_ragged_rows_and_sizes_use_max():
    rows = [[_gray(10, 8), _gray(12, 5)], [_gray(7, 9), _gray(3, 3), _gray(4, 4)]]
    g = render.trajectory_grid(rows, pad=2)
    assert g.size == (3 * (12 + 2) + 2, 2 * (9 + 2) + 2)


def test_trajectory_grid_placement_and_background():
    red, blue = Image.new("RGB", (5, 4), (200, 10, 10)), Image.new("RGB", (5, 4), (10, 10, 200))
    g = render.trajectory_grid([[red, blue], [blue, red]], pad=3, bg=(255, 255, 255))
    a = _arr(g)
    assert tuple(a[0, 0]) == (255, 255, 255)
    # cell (row i, column j) starts at x = pad + j * (w + pad), y = pad + i * (h + pad)
    assert tuple(a[3, 3]) == (200, 10, 10)
    assert tuple(a[3, 3 + 8]) == (10, 10, 200)
    assert tuple(a[3 + 7, 3]) == (10, 10, 200)
    assert tuple(a[3 + 7 + 3, 3 + 8 + 4]) == (200, 10, 10)
    assert tuple(a[3, 3 + 5]) == (255, 255, 255)  # the gap between columns


def test_trajectory_grid_converts_modes():
    g = render.trajectory_grid([[Image.new("L", (4, 4), 50)]], pad=1)
    assert g.mode == "RGB" and tuple(_arr(g)[1, 1]) == (50, 50, 50)


@pytest.mark.parametrize("rows", [[], [[]]])
def test_trajectory_grid_empty_raises(rows):
    with pytest.raises(ValueError, match="at least one"):
        render.trajectory_grid(rows)

"""Tests for ivt_lib.core.boxes: conversions, model frames, the validity rule, IoU (against torchvision), lerp."""
import ivt_lib  # noqa: F401  (must come before torchvision: installs the CPU compatibility shim)

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_iou as tv_box_iou

from ivt_lib.core import boxes as bx

# ---------------------------------------------------------------------------------------------------------------
# xywh <-> xyxy
# ---------------------------------------------------------------------------------------------------------------


def test_xywh_to_xyxy_known_values():
    assert bx.xywh_to_xyxy((10, 20, 30, 40)) == (10.0, 20.0, 40.0, 60.0)
    assert bx.xywh_to_xyxy([0.5, 1.5, 0, 0]) == (0.5, 1.5, 0.5, 1.5)


def test_xyxy_to_xywh_known_values():
    assert bx.xyxy_to_xywh((10, 20, 40, 60)) == (10.0, 20.0, 30.0, 40.0)
    # no +1 convention: a box from 3 to 3 has zero width
    assert bx.xyxy_to_xywh((3, 3, 3, 7)) == (3.0, 3.0, 0.0, 4.0)


def test_conversions_return_floats():
    out = bx.xywh_to_xyxy((1, 2, 3, 4))
    assert all(type(v) is float for v in out)
    out = bx.xyxy_to_xywh((1, 2, 3, 4))
    assert all(type(v) is float for v in out)


finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.tuples(finite, finite, st.floats(0, 1e4), st.floats(0, 1e4)))
def test_xywh_xyxy_round_trip(b):
    back = bx.xyxy_to_xywh(bx.xywh_to_xyxy(b))
    for got, want in zip(back, b):
        assert got == pytest.approx(want, abs=1e-9, rel=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# model frames
# ---------------------------------------------------------------------------------------------------------------


def test_to_model_frame_qwen3_known_values():
    # 640x480: x_rel = round(1000 * x / 640), y_rel = round(1000 * y / 480)
    assert bx.to_model_frame((64, 48, 320, 240), 640, 480, "qwen3") == (100, 100, 500, 500)
    assert bx.to_model_frame((0, 0, 640, 480), 640, 480) == (0, 0, 1000, 1000)  # qwen3 is the default
    out = bx.to_model_frame((1.0, 2.0, 3.0, 4.0), 640, 480)
    assert all(type(v) is int for v in out)


def test_to_model_frame_qwen25_known_values():
    # original 640x480, processor resized to 320x240: coordinates halve
    assert bx.to_model_frame((64, 48, 320, 240), 640, 480, "qwen25", resized=(320, 240)) == (32, 24, 160, 120)
    # without an explicit size: the stock Qwen2.5-VL processor resize (640x480 -> 644x476), not the original pixels
    assert bx.qwen25_resized_size(640, 480) == (644, 476)
    assert bx.to_model_frame((64, 48, 320, 240), 640, 480, "qwen25") == (round(64 * 644 / 640), round(48 * 476 / 480),
                                                                          round(320 * 644 / 640), round(240 * 476 / 480))


def test_from_model_frame_known_values():
    assert bx.from_model_frame((100, 100, 500, 500), 640, 480, "qwen3") == pytest.approx((64, 48, 320, 240))
    assert bx.from_model_frame((32, 24, 160, 120), 640, 480, "qwen25", resized=(320, 240)) == pytest.approx(
        (64, 48, 320, 240))
    # no validity rule: out-of-range model numbers stay out of range
    assert bx.from_model_frame((-10, 0, 1100, 1000), 1000, 500) == pytest.approx((-10, 0, 1100, 500))


@pytest.mark.parametrize("fn", [bx.to_model_frame, bx.from_model_frame])
def test_unknown_coord_format_raises(fn):
    with pytest.raises(ValueError, match="unknown coord format"):
        fn((0, 0, 1, 1), 10, 10, "qwen2")


def _random_pixel_boxes(n, w, h, seed):
    g = torch.Generator().manual_seed(seed)
    xs = torch.rand(n, 2, generator=g, dtype=torch.float64) * w
    ys = torch.rand(n, 2, generator=g, dtype=torch.float64) * h
    return [(min(x), min(y), max(x), max(y)) for x, y in zip(xs.tolist(), ys.tolist())]


@pytest.mark.parametrize("w,h", [(640, 480), (1000, 1000), (333, 1999), (37, 23), (4032, 3024)])
def test_qwen3_round_trip_within_rounding(w, h):
    tol_x, tol_y = 0.5 * w / 1000 + 1e-9, 0.5 * h / 1000 + 1e-9
    for b in _random_pixel_boxes(300, w, h, seed=w * 7 + h):
        m = bx.to_model_frame(b, w, h, "qwen3")
        assert all(0 <= v <= 1000 for v in m)
        back = bx.from_model_frame(m, w, h, "qwen3")
        assert abs(back[0] - b[0]) <= tol_x and abs(back[2] - b[2]) <= tol_x
        assert abs(back[1] - b[1]) <= tol_y and abs(back[3] - b[3]) <= tol_y


@pytest.mark.parametrize("w,h,rw,rh", [(640, 480, 644, 476), (1000, 750, 448, 336), (37, 23, 56, 28),
                                       (4032, 3024, 1288, 952)])
def test_qwen25_round_trip_within_rounding(w, h, rw, rh):
    # one resized pixel maps back to w/rw original pixels; rounding costs at most half of that
    tol_x, tol_y = 0.5 * w / rw + 1e-9, 0.5 * h / rh + 1e-9
    for b in _random_pixel_boxes(300, w, h, seed=rw * 3 + rh):
        m = bx.to_model_frame(b, w, h, "qwen25", resized=(rw, rh))
        assert all(0 <= v for v in m) and m[0] <= rw and m[2] <= rw and m[1] <= rh and m[3] <= rh
        back = bx.from_model_frame(m, w, h, "qwen25", resized=(rw, rh))
        assert abs(back[0] - b[0]) <= tol_x and abs(back[2] - b[2]) <= tol_x
        assert abs(back[1] - b[1]) <= tol_y and abs(back[3] - b[3]) <= tol_y


@pytest.mark.parametrize("w,h", [(640, 480), (333, 1999)])
def test_model_frame_integer_round_trip_qwen3(w, h):
    # model integers -> pixels -> model integers is exact (the pixel grid is finer than 1/1000 here)
    for m in [(0, 0, 1000, 1000), (1, 2, 999, 998), (123, 456, 789, 901), (500, 500, 500, 500)]:
        assert bx.to_model_frame(bx.from_model_frame(m, w, h), w, h) == m


def test_qwen3_matches_documented_formula_away_from_ties():
    # the module doc: x_rel = round(1000 * x / W). Away from exact .5 ties the two must agree exactly;
    # at exact ties the implementation (x * (1000 / W)) may differ by one because of float rounding.
    for w in (640, 481, 1333):
        for x in range(0, w + 1, 7):
            exact = 1000 * x / w
            got = bx.to_model_frame((x, 0, x, 0), w, 10)[0]
            if abs(exact - math.floor(exact) - 0.5) > 1e-6:
                assert got == round(exact)
            else:
                assert abs(got - exact) == 0.5


# ---------------------------------------------------------------------------------------------------------------
# sanitize: the validity rule
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    (float("nan"), 0, 10, 10), (0, float("nan"), 10, 10), (0, 0, float("inf"), 10), (0, 0, 10, float("-inf")),
    (float("nan"),) * 4,
])
def test_sanitize_non_finite_is_none(bad):
    assert bx.sanitize(bad, 100, 100) is None


@pytest.mark.parametrize("bad", [None, (1, 2, 3), (1, 2, 3, 4, 5), (), ("a", 1, 2, 3), (None, 1, 2, 3)])
def test_sanitize_malformed_is_none(bad):
    assert bx.sanitize(bad, 100, 100) is None


def test_sanitize_valid_box_unchanged_and_floats():
    out = bx.sanitize((10, 20, 30, 40), 100, 100)
    assert out == (10.0, 20.0, 30.0, 40.0)
    assert all(type(v) is float for v in out)


def test_sanitize_reorders_inverted_pairs():
    assert bx.sanitize((30, 40, 10, 20), 100, 100) == (10.0, 20.0, 30.0, 40.0)
    assert bx.sanitize((30, 20, 10, 40), 100, 100) == (10.0, 20.0, 30.0, 40.0)  # x only
    assert bx.sanitize((10, 40, 30, 20), 100, 100) == (10.0, 20.0, 30.0, 40.0)  # y only


def test_sanitize_clips_to_image():
    assert bx.sanitize((-5, -7, 120, 90), 100, 80) == (0.0, 0.0, 100.0, 80.0)
    assert bx.sanitize((50, 10, 150, 20), 100, 80) == (50.0, 10.0, 100.0, 20.0)


def test_sanitize_reorders_then_clips():
    # inverted AND outside: reorder first, then clip (clipping first would give a different box)
    assert bx.sanitize((150, 90, -10, 10), 100, 80) == (0.0, 10.0, 100.0, 80.0)


def test_sanitize_keeps_zero_area_results():
    # entirely outside the image: clipped to a zero-area box, kept (not None)
    out = bx.sanitize((120, 10, 150, 20), 100, 80)
    assert out == (100.0, 10.0, 100.0, 20.0)
    assert bx.area(out) == 0.0
    assert bx.is_degenerate(out, 100, 80)
    assert bx.sanitize((5, 5, 5, 5), 100, 80) == (5.0, 5.0, 5.0, 5.0)


def test_sanitize_accepts_tensor_and_list():
    assert bx.sanitize(torch.tensor([3.0, 4.0, 1.0, 2.0]), 10, 10) == (1.0, 2.0, 3.0, 4.0)
    assert bx.sanitize([1, 2, 3, 4], 10, 10) == (1.0, 2.0, 3.0, 4.0)


coord = st.floats(min_value=-1e5, max_value=1e5, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(st.tuples(coord, coord, coord, coord), st.integers(1, 5000), st.integers(1, 5000))
def test_sanitize_properties(b, w, h):
    out = bx.sanitize(b, w, h)
    assert out is not None
    x1, y1, x2, y2 = out
    assert 0.0 <= x1 <= x2 <= w
    assert 0.0 <= y1 <= y2 <= h
    assert bx.sanitize(out, w, h) == out  # idempotent


# ---------------------------------------------------------------------------------------------------------------
# area, lerp, is_degenerate
# ---------------------------------------------------------------------------------------------------------------


def test_area():
    assert bx.area((0, 0, 2, 3)) == 6
    assert bx.area((1, 1, 1, 5)) == 0
    assert bx.area((5, 5, 1, 1)) == 0  # inverted -> 0, never negative
    assert bx.area((5, 0, 1, 3)) == 0


def test_lerp_endpoints_and_midpoint():
    a, b = (0.0, 10.0, 20.0, 30.0), (10.0, 30.0, 20.0, 50.0)
    assert bx.lerp(a, b, 0.0) == a
    assert bx.lerp(a, b, 1.0) == b
    assert bx.lerp(a, b, 0.5) == (5.0, 20.0, 20.0, 40.0)
    assert bx.lerp(a, b, 0.25) == pytest.approx((2.5, 15.0, 20.0, 35.0))
    out = bx.lerp((0, 0, 1, 1), (2, 2, 3, 3), 0.5)
    assert isinstance(out, tuple) and len(out) == 4 and all(type(v) is float for v in out)


def test_lerp_extrapolates_linearly():
    assert bx.lerp((0, 0, 10, 10), (10, 10, 20, 20), 2.0) == (20.0, 20.0, 30.0, 30.0)


def test_is_degenerate():
    w, h = 100, 50
    assert not bx.is_degenerate(None, w, h)
    assert bx.is_degenerate((10, 10, 10, 20), w, h)  # zero width
    assert bx.is_degenerate((10, 10, 20, 10), w, h)  # zero height
    assert bx.is_degenerate((20, 20, 10, 10), w, h)  # inverted -> zero area
    assert bx.is_degenerate((0, 0, 100, 50), w, h)  # whole image
    assert not bx.is_degenerate((10, 10, 20, 20), w, h)
    # exactly 95% of the image counts as "whole image"; just under does not
    assert bx.is_degenerate((0, 0, 95, 50), w, h)
    assert not bx.is_degenerate((0, 0, 94.9, 50), w, h)
    assert not bx.is_degenerate((0, 0, 95, 50), w, h, full_frac=0.96)


# ---------------------------------------------------------------------------------------------------------------
# IoU
# ---------------------------------------------------------------------------------------------------------------


def test_iou_known_values():
    assert bx.iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert bx.iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert bx.iou((0, 0, 2, 2), (0, 0, 1, 2)) == pytest.approx(0.5)
    assert bx.iou((0, 0, 1, 1), (1, 0, 2, 1)) == 0.0  # touching edge
    assert bx.iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0  # disjoint
    assert bx.iou((3, 3, 3, 3), (3, 3, 3, 3)) == 0.0  # empty union
    assert bx.iou((0, 0, 4, 4), (1, 1, 1, 3)) == 0.0  # zero-area inside a box
    assert isinstance(bx.iou((0, 0, 1, 1), (0, 0, 1, 1)), float)


def test_iou_none_is_zero():
    assert bx.iou(None, (0, 0, 1, 1)) == 0.0
    assert bx.iou((0, 0, 1, 1), None) == 0.0
    assert bx.iou(None, None) == 0.0


def test_iou_symmetric():
    a, b = (0.5, 1.0, 7.0, 3.5), (2.0, 0.0, 9.0, 2.0)
    assert bx.iou(a, b) == bx.iou(b, a)
    assert 0.0 < bx.iou(a, b) < 1.0


def _random_boxes_with_degenerates(n, seed):
    """Mix of continuous boxes, integer-grid boxes (touching edges, coincidences), zero width/height, points,
    and far-away (disjoint) boxes. float64."""
    g = torch.Generator().manual_seed(seed)
    k = n // 6
    out = []
    # continuous
    p = torch.rand(k, 4, generator=g, dtype=torch.float64) * 100
    out.append(torch.cat([torch.minimum(p[:, :2], p[:, 2:]), torch.maximum(p[:, :2], p[:, 2:])], 1))
    # coarse integer grid: many shared edges, identical boxes and exact containment
    p = torch.randint(0, 8, (k, 4), generator=g).double() * 10
    out.append(torch.cat([torch.minimum(p[:, :2], p[:, 2:]), torch.maximum(p[:, :2], p[:, 2:])], 1))
    # zero width
    x = torch.rand(k, 1, generator=g, dtype=torch.float64) * 100
    y = torch.sort(torch.rand(k, 2, generator=g, dtype=torch.float64) * 100, 1).values
    out.append(torch.cat([x, y[:, :1], x, y[:, 1:]], 1))
    # zero height
    y = torch.rand(k, 1, generator=g, dtype=torch.float64) * 100
    x = torch.sort(torch.rand(k, 2, generator=g, dtype=torch.float64) * 100, 1).values
    out.append(torch.cat([x[:, :1], y, x[:, 1:], y], 1))
    # points (zero width and height), on the integer grid so that some coincide exactly
    q = torch.randint(0, 8, (k, 2), generator=g).double() * 10
    out.append(torch.cat([q, q], 1))
    # disjoint: far away from everything else
    p = 1000 + torch.rand(n - 5 * k, 4, generator=g, dtype=torch.float64) * 50
    out.append(torch.cat([torch.minimum(p[:, :2], p[:, 2:]), torch.maximum(p[:, :2], p[:, 2:])], 1))
    boxes = torch.cat(out, 0)
    return boxes[torch.randperm(len(boxes), generator=g)]


def test_iou_pairwise_matches_torchvision_reference():
    a = _random_boxes_with_degenerates(1200, seed=0)
    b = _random_boxes_with_degenerates(1500, seed=1)
    b = torch.cat([b, a[:300]], 0)  # identical boxes across the two sets
    ours = bx.iou_pairwise(a, b)
    ref = tv_box_iou(a, b)
    assert ours.shape == ref.shape == (1200, 1800)
    assert ours.dtype == torch.float64
    nan = torch.isnan(ref)
    # the test must actually exercise the empty-union case and the ordinary case
    assert nan.sum() > 100 and (~nan).sum() > 100_000
    assert torch.all(ours[nan] == 0.0)
    assert torch.all(torch.isfinite(ours))
    assert torch.max(torch.abs(ours[~nan] - ref[~nan])) <= 1e-6
    # coverage of the regimes we claim
    assert (ours == 0).sum() > 1000  # disjoint / degenerate
    assert ((ours > 0) & (ours < 1)).sum() > 1000  # partial overlap
    assert ours.min() >= 0.0 and ours.max() <= 1.0 + 1e-12


def test_iou_pairwise_identical_boxes_are_one_unless_empty():
    a = _random_boxes_with_degenerates(600, seed=2)
    d = torch.diagonal(bx.iou_pairwise(a, a))
    has_area = bx.iou_matched(a, a) > 0
    empty = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])) == 0
    assert torch.equal(has_area, ~empty)
    assert torch.allclose(d[~empty], torch.ones_like(d[~empty]))
    assert torch.all(d[empty] == 0)


def test_iou_matched_is_diagonal_of_pairwise():
    a = _random_boxes_with_degenerates(900, seed=3)
    b = _random_boxes_with_degenerates(900, seed=4)
    b[:100] = a[:100]  # some identical pairs
    m = bx.iou_matched(a, b)
    assert m.shape == (900,)
    assert torch.allclose(m, torch.diagonal(bx.iou_pairwise(a, b)), atol=0, rtol=1e-12)
    assert torch.allclose(m[:100][m[:100] > 0], torch.ones(int((m[:100] > 0).sum()), dtype=torch.float64))


def test_scalar_iou_agrees_with_pairwise():
    a = _random_boxes_with_degenerates(60, seed=5)
    b = _random_boxes_with_degenerates(60, seed=6)
    p = bx.iou_pairwise(a, b)
    for i in range(0, 60, 7):
        for j in range(0, 60, 5):
            assert bx.iou(tuple(a[i].tolist()), tuple(b[j].tolist())) == pytest.approx(float(p[i, j]), abs=1e-12)


def test_iou_pairwise_float32_empty_union_is_zero_not_nan():
    a = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    out = bx.iou_pairwise(a, a)
    assert not torch.isnan(out).any()
    assert out[0, 0] == 0 and out[1, 1] == 1 and out[0, 1] == 0

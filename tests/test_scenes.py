"""Tests for ivt_lib.corpora.scenes: the synthetic referring-expression scenes of the embedded tier.

The referring expression must pick exactly one object. ``matches`` checks that by construction, so this file also
re-resolves every expression with its own small resolver (built from ``scene.spec`` and the objects' attributes)
rather than trusting ``matches`` alone.
"""
import random

import numpy as np
import pytest

from ivt_lib.corpora import scenes
from ivt_lib.corpora.records import iter_split
from ivt_lib.corpora.scenes import BACKGROUND, COLOURS, FAMILIES, FAMILY_CONFIGS, SHAPES, generate_scene

N_SCENES = 300  # per family; generation is ~50 us a scene
SIZE_WORDS = ("small", "large")
SUPERLATIVE_WORDS = ("leftmost", "rightmost", "topmost", "bottommost")


def _scenes(family, n=N_SCENES, canvas=128, tag="t"):
    return [generate_scene(random.Random(f"{tag}-{family}-{k}"), family, canvas) for k in range(n)]


@pytest.fixture(scope="module", params=FAMILIES)
def family_scenes(request):
    return request.param, _scenes(request.param)


# ---------------------------------------------------------------------------------------------------------------
# An independent resolver (does not call scenes.matches / scenes.region_of)
# ---------------------------------------------------------------------------------------------------------------


def _third(v, canvas):
    """0, 1 or 2: which third of [0, canvas) the coordinate v falls in."""
    if v < canvas / 3:
        return 0
    if v < 2 * canvas / 3:
        return 1
    return 2


def _region(box, canvas):
    x1, y1, x2, y2 = box
    row = ("top", "middle", "bottom")[_third((y1 + y2) / 2, canvas)]
    col = ("left", "center", "right")[_third((x1 + x2) / 2, canvas)]
    return "center" if (row, col) == ("middle", "center") else f"{row} {col}"


def _resolve(spec, objects, canvas):
    """Indices of the objects the structured expression picks."""
    cand = []
    for i, o in enumerate(objects):
        if "shape" in spec and o.shape != spec["shape"]:
            continue
        if "colour" in spec and o.colour != spec["colour"]:
            continue
        if "size" in spec and o.size != spec["size"]:
            continue
        if "region" in spec and _region(o.box, canvas) != spec["region"]:
            continue
        cand.append(i)
    sup = spec.get("superlative")
    if sup and cand:
        def cx(i):
            return (objects[i].box[0] + objects[i].box[2]) / 2

        def cy(i):
            return (objects[i].box[1] + objects[i].box[3]) / 2

        key, best = {"leftmost": (cx, min), "rightmost": (cx, max),
                     "topmost": (cy, min), "bottommost": (cy, max)}[sup]
        extreme = best(key(i) for i in cand)
        cand = [i for i in cand if key(i) == extreme]
    return cand


def test_independent_resolver_sanity():
    """The test's own resolver picks what a human would on a hand-built scene."""
    Obj = scenes.Obj
    objs = [Obj("circle", "blue", (5.0, 5.0, 25.0, 25.0), "small"),
            Obj("circle", "blue", (90.0, 5.0, 120.0, 35.0), "large"),
            Obj("square", "green", (50.0, 90.0, 70.0, 110.0), "small")]
    assert _resolve({"shape": "circle", "colour": "blue"}, objs, 128) == [0, 1]
    assert _resolve({"shape": "circle", "colour": "blue", "superlative": "rightmost"}, objs, 128) == [1]
    assert _resolve({"shape": "circle", "superlative": "leftmost"}, objs, 128) == [0]
    assert _resolve({"superlative": "bottommost"}, objs, 128) == [2]
    assert _resolve({"size": "small", "region": "top left"}, objs, 128) == [0]
    assert _resolve({"region": "bottom center"}, objs, 128) == [2]
    assert _resolve({}, objs, 128) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------------------------
# Expressions resolve to exactly the target
# ---------------------------------------------------------------------------------------------------------------


def test_matches_returns_exactly_the_target(family_scenes):
    family, scs = family_scenes
    for s in scs:
        assert s.family == family
        assert scenes.matches(s) == [s.target], (s.expression, s.spec)


def test_independent_resolver_finds_exactly_the_target(family_scenes):
    family, scs = family_scenes
    for s in scs:
        assert 0 <= s.target < len(s.objects)
        assert _resolve(s.spec, s.objects, s.image.width) == [s.target], (family, s.expression, s.spec, s.objects)


def test_expression_text_states_the_spec(family_scenes):
    """The words of the expression are the spec's values (and no other attribute words), so resolving the spec
    resolves what the text says."""
    family, scs = family_scenes
    for s in scs:
        words = s.expression.split()
        assert words[0] == "the" and "  " not in s.expression, s.expression
        assert [w for w in words if w in COLOURS] == ([s.spec["colour"]] if "colour" in s.spec else []), s.expression
        assert [w for w in words if w in SIZE_WORDS] == ([s.spec["size"]] if "size" in s.spec else []), s.expression
        assert [w for w in words if w in SUPERLATIVE_WORDS] == (
            [s.spec["superlative"]] if "superlative" in s.spec else []), s.expression
        shape_words = [w for w in words if w in SHAPES]
        assert shape_words == ([s.spec["shape"]] if "shape" in s.spec else []), s.expression
        if "shape" not in s.spec:
            assert "shape" in words, s.expression  # generic noun
        if "region" in s.spec:
            assert s.expression.endswith(f"in the {s.spec['region']} of the image"), s.expression


def test_spec_values_are_the_targets_attributes(family_scenes):
    family, scs = family_scenes
    for s in scs:
        t = s.objects[s.target]
        for key in ("shape", "colour", "size"):
            if key in s.spec:
                assert s.spec[key] == getattr(t, key)
        if "region" in s.spec:
            assert s.spec["region"] == _region(t.box, s.image.width)


def test_refcocog_only_shape_expression_only_in_single_object_scenes():
    scs = _scenes("refcocog")
    only = [s for s in scs if s.expression == "the only shape"]
    assert only, "the 'only shape' variant never occurs"
    assert all(len(s.objects) == 1 and s.spec == {} for s in only)


def test_refadv_target_has_a_same_colour_and_shape_twin_in_most_scenes():
    scs = _scenes("refadv")
    twins = 0
    for s in scs:
        t = s.objects[s.target]
        assert "superlative" in s.spec and s.spec["shape"] == t.shape
        if any(i != s.target and o.shape == t.shape and o.colour == t.colour for i, o in enumerate(s.objects)):
            twins += 1
    assert twins >= 0.9 * len(scs), f"only {twins}/{len(scs)} refadv targets have a twin"


def test_refadv_extreme_is_unambiguous_by_a_margin():
    """Only position decides in refadv, and the runner-up is at least 8% of the canvas behind the target."""
    for s in _scenes("refadv"):
        c = s.image.width
        base = {k: v for k, v in s.spec.items() if k != "superlative"}
        cand = _resolve(base, s.objects, c)
        assert len(cand) >= 2, "refadv needs a distractor matching the attributes"
        axis = 0 if s.spec["superlative"] in ("leftmost", "rightmost") else 1
        centres = sorted(((s.objects[i].box[axis] + s.objects[i].box[axis + 2]) / 2, i) for i in cand)
        if s.spec["superlative"] in ("leftmost", "topmost"):
            (v0, i0), (v1, _) = centres[0], centres[1]
        else:
            (v0, i0), (v1, _) = centres[-1], centres[-2]
        assert i0 == s.target
        assert abs(v1 - v0) >= 0.08 * c


def test_refl4_expressions_have_size_colour_shape_and_region():
    for s in _scenes("refl4"):
        t = s.objects[s.target]
        words = s.expression.split()
        assert t.size in SIZE_WORDS and t.size in words, s.expression
        assert t.colour in words and t.shape in words, s.expression
        region = _region(t.box, s.image.width)
        assert f"in the {region} of the image" in s.expression, (s.expression, region)
        assert any(w in words for w in ("top", "middle", "bottom", "left", "right", "center")), s.expression
        assert set(s.spec) == {"size", "colour", "shape", "region"}


def test_refl4_size_words_match_drawn_sizes():
    small, large = [], []
    for s in _scenes("refl4"):
        for o in s.objects:
            side = o.box[2] - o.box[0]
            (small if o.size == "small" else large).append(side)
            assert o.size in SIZE_WORDS
    assert small and large
    assert max(small) < min(large), "a 'small' object is as large as a 'large' one"


# ---------------------------------------------------------------------------------------------------------------
# Geometry and pixels
# ---------------------------------------------------------------------------------------------------------------


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_objects_do_not_overlap(family_scenes):
    _, scs = family_scenes
    for s in scs:
        boxes = [o.box for o in s.objects]
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert not _overlap(boxes[i], boxes[j]), (boxes[i], boxes[j])


def test_boxes_inside_canvas_and_sizes_within_family_config(family_scenes):
    family, scs = family_scenes
    cfg = FAMILY_CONFIGS[family]
    for s in scs:
        c = s.image.width
        assert s.image.size == (c, c) == (128, 128)
        assert cfg.min_objects <= len(s.objects) <= cfg.max_objects
        for o in s.objects:
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 < x2 <= c and 0 <= y1 < y2 <= c, o.box
            assert x2 - x1 == y2 - y1
            assert round(cfg.min_size * c) <= x2 - x1 <= round(cfg.max_size * c)


def test_palette_has_no_red_dominant_colour():
    """No palette colour (nor the background) reads as red: its hue is >= 40 degrees from the overlay's red, or it
    is unsaturated. Yellow (hue ~52) and purple (hue ~273) pass; orange, pink or red would not."""
    import colorsys

    from ivt_lib.core.render import OVERLAY_RGB

    assert colorsys.rgb_to_hsv(*(v / 255 for v in OVERLAY_RGB))[0] == 0.0  # the overlay is pure red
    assert "red" not in COLOURS
    for name, rgb in {**COLOURS, "background": BACKGROUND}.items():
        h, s, _ = colorsys.rgb_to_hsv(*(v / 255 for v in rgb))
        hue_dist = min(h, 1 - h) * 360
        assert s < 0.25 or hue_dist >= 40, f"{name} {rgb} is red-dominant (hue {h * 360:.0f}, the overlay is red)"
        r, g, b = rgb
        assert not (r > 1.5 * g and r > 1.5 * b), f"{name} {rgb} is red-dominant"


def test_rendered_pixels_are_only_background_or_palette(family_scenes):
    """No anti-aliased or stray reddish pixels: every pixel is the background or a palette colour."""
    _, scs = family_scenes
    allowed = {BACKGROUND, *COLOURS.values()}
    for s in scs[:60]:
        assert s.image.mode == "RGB"
        px = {tuple(p) for p in np.asarray(s.image).reshape(-1, 3)}
        assert px <= allowed, px - allowed


def _pixel_box(arr, window=None):
    """xyxy (exclusive max) of the non-background pixels of arr, optionally within a window (x1, y1, x2, y2)."""
    ox = oy = 0
    if window is not None:
        x1, y1, x2, y2 = window
        arr, ox, oy = arr[y1:y2, x1:x2], x1, y1
    mask = np.any(arr != np.array(BACKGROUND, dtype=arr.dtype), axis=2)
    ys, xs = np.nonzero(mask)
    assert xs.size, "no object pixels"
    return (ox + xs.min(), oy + ys.min(), ox + xs.max() + 1, oy + ys.max() + 1)


def test_gt_box_matches_drawn_pixels_in_single_object_scenes():
    singles = [s for s in _scenes("refcocog", n=400, tag="single") if len(s.objects) == 1]
    assert len(singles) >= 30
    assert {s.objects[0].shape for s in singles} == set(SHAPES)
    for s in singles:
        got = _pixel_box(np.asarray(s.image))
        assert max(abs(g - b) for g, b in zip(got, s.bbox)) <= 1, (s.objects[0].shape, got, s.bbox)


def test_every_object_box_matches_its_drawn_pixels(family_scenes):
    """Objects keep >= 3 px apart, so a 2 px margin around each box holds only that object's pixels."""
    _, scs = family_scenes
    for s in scs[:100]:
        arr = np.asarray(s.image)
        c = s.image.width
        for o in s.objects:
            x1, y1, x2, y2 = (int(v) for v in o.box)
            window = (max(0, x1 - 2), max(0, y1 - 2), min(c, x2 + 2), min(c, y2 + 2))
            got = _pixel_box(arr, window)
            assert max(abs(g - b) for g, b in zip(got, o.box)) <= 1, (o, got)
            assert tuple(arr[(y1 + y2) // 2, (x1 + x2) // 2]) == COLOURS[o.colour]  # box centre is filled


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("canvas", [100, 127, 130, 48])
def test_canvas_not_multiple_of_32_raises(canvas):
    for family in FAMILIES:
        with pytest.raises(ValueError, match="multiple of 32"):
            generate_scene(random.Random(0), family, canvas)
    with pytest.raises(ValueError, match="multiple of 32"):
        next(iter(iter_split("test", 1, 0, canvas)))


def test_other_canvas_multiple_of_32_works_and_scales():
    for family in FAMILIES:
        s = generate_scene(random.Random(1), family, 192)
        assert s.image.size == (192, 192)
        assert all(0 <= v <= 192 for o in s.objects for v in o.box)
        assert scenes.matches(s) == [s.target] == _resolve(s.spec, s.objects, 192)


@pytest.mark.parametrize("family", ["refcoco", "", "RefAdv", "paper"])
def test_unknown_family_raises(family):
    with pytest.raises(ValueError, match="unknown family"):
        generate_scene(random.Random(0), family)


# ---------------------------------------------------------------------------------------------------------------
# attribute-contrast scenes (pretraining stream only)
# ---------------------------------------------------------------------------------------------------------------


def _contrast(n=200):
    return [scenes.generate_scene(random.Random(f"c-{i}"), "contrast") for i in range(n)]


def test_contrast_scenes_have_a_twin_differing_in_exactly_one_attribute():
    axes = {"colour": 0, "shape": 0, "size": 0, "position": 0}
    for s in _contrast():
        assert scenes.matches(s) == [s.target] and s.family == "contrast"
        t = s.objects[s.target]
        diffs = []
        for i, o in enumerate(s.objects):
            if i == s.target:
                continue
            d = [k for k in ("colour", "shape", "size") if getattr(o, k) != getattr(t, k)]
            diffs.append(d)
        # some object differs from the target in at most one attribute (the twin; position twins in none)
        assert min(len(d) for d in diffs) <= 1
        words = s.expression.split()
        assert t.colour in words and t.shape in words, "the expression names the target's colour and shape"
        if "small" in words or "large" in words:
            axes["size"] += 1
        elif s.spec.get("superlative"):
            axes["position"] += 1
        elif any(d == ["colour"] for d in diffs):
            axes["colour"] += 1
        else:
            axes["shape"] += 1
    assert all(v >= 20 for v in axes.values()), axes


def test_contrast_is_not_a_split_family():
    assert "contrast" not in scenes.FAMILIES
    recs = list(iter_split("test", 9, 0))
    assert {r["family"] for r in recs} == set(scenes.FAMILIES)

"""ivt_lib.analysis.probe: the random "wrong box", the presence probe (with a fake policy), failure anatomy, worst."""
import random

import numpy as np
import pytest

from ivt_lib.core import boxes as bx
from ivt_lib.analysis import probe
from ivt_lib.core.loop import Generation, StepRecord, Trajectory
from ivt_lib.core.parsing import format_box, parse_box


class FakePolicy:
    """Step 0 answers a fixed box; a refine step shifts the stated previous box right by ``shift`` (0-1000 units).

    Every call's images are recorded (copied to arrays) so tests can check what the model was shown."""

    def __init__(self, step0=(100, 100, 400, 400), shift=0):
        self.step0, self.shift = step0, shift
        self.calls: list[tuple[list, list]] = []
        self.arrays: list[list[np.ndarray]] = []

    def generate(self, messages, images):
        self.calls.append((messages, images))
        self.arrays.append([np.asarray(im.convert("RGB")).astype(int) for im in images])
        out = []
        for m in messages:
            prev = parse_box(m[0]["content"][1]["text"])
            if not prev.ok:
                out.append(Generation(format_box(self.step0), -0.5))
            else:
                x1, y1, x2, y2 = prev.box
                out.append(Generation(format_box((x1 + self.shift, y1, x2 + self.shift, y2)), -1.0))
        return out


# ---------------------------------------------------------------------------------------------------------------
# random_box
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w,h", [(128, 128), (200, 80), (33, 517)])
def test_random_box_inside_image_with_sides_15_to_50_percent(w, h):
    rng = random.Random(1)
    for _ in range(500):
        x1, y1, x2, y2 = probe.random_box(rng, w, h)
        assert 0 <= x1 < x2 <= w + 1e-9 and 0 <= y1 < y2 <= h + 1e-9
        assert 0.15 * w - 1e-9 <= x2 - x1 <= 0.5 * w + 1e-9
        assert 0.15 * h - 1e-9 <= y2 - y1 <= 0.5 * h + 1e-9


def test_random_box_is_seeded():
    a = [probe.random_box(random.Random("s"), 128, 128) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert probe.random_box(random.Random("t"), 128, 128) != a[0]


# ---------------------------------------------------------------------------------------------------------------
# presence probe
# ---------------------------------------------------------------------------------------------------------------

ARMS = ("own_box_drawn", "gt_box_drawn", "random_box_drawn", "own_box_not_drawn")


def _own_boxes(samples):
    # a wrong-ish own box per sample: the ground truth shifted right by 8 px (stays inside 128 px images)
    return [(b[0] + 8.0, b[1], min(b[2] + 8.0, s["image"].width), b[3]) for s, b in
            ((s, s["bbox"]) for s in samples)]


def test_presence_probe_arms_and_iou_before(test_samples):
    samples = test_samples[:5]
    own = _own_boxes(samples)
    pol = FakePolicy(shift=0)
    out = probe.presence_probe(pol, samples, own, seed=3)
    assert list(out) == list(ARMS)
    assert len(pol.calls) == 4 and all(len(c[0]) == 5 for c in pol.calls)  # one refine step per arm, batched
    for arm in ARMS:
        assert out[arm]["n"] == 5
        assert out[arm]["parse_rate_after"] == 1.0
    assert out["gt_box_drawn"]["iou_before"] == pytest.approx(1.0)
    assert out["gt_box_drawn"]["acc@0.5_before"] == 1.0
    want_own = np.mean([bx.iou(b, s["bbox"]) for b, s in zip(own, samples)])
    assert 0.2 < want_own < 0.95  # the own box is really wrong-ish, so the check below means something
    assert out["own_box_drawn"]["iou_before"] == pytest.approx(want_own)
    assert out["own_box_not_drawn"]["iou_before"] == pytest.approx(want_own)
    # the random arm uses the documented seeded stream
    rng = random.Random("probe-3")
    rand = [probe.random_box(rng, s["image"].width, s["image"].height) for s in samples]
    assert out["random_box_drawn"]["iou_before"] == pytest.approx(np.mean([bx.iou(r, s["bbox"])
                                                                            for r, s in zip(rand, samples)]))
    # an echoing policy leaves the box (up to the 0-1000 rounding) where it was
    for arm in ARMS:
        assert out[arm]["iou_after"] == pytest.approx(out[arm]["iou_before"], abs=0.02)
        assert out[arm]["unchanged"] == 1.0 and out[arm]["toward_truth"] == 0.0 and out[arm]["away_from_truth"] == 0.0


def test_presence_probe_draws_all_arms_but_one(test_samples):
    samples = test_samples[:4]
    pol = FakePolicy()
    probe.presence_probe(pol, samples, _own_boxes(samples))
    originals = [np.asarray(s["image"].convert("RGB")).astype(int) for s in samples]
    drawn, not_drawn = pol.arrays[:3], pol.arrays[3]
    for arm_imgs in drawn:
        for seen, orig in zip(arm_imgs, originals):
            assert seen.shape == orig.shape and np.abs(seen - orig).sum() > 0, "a drawn arm must show the box"
    for seen, orig in zip(not_drawn, originals):
        assert (seen == orig).all(), "the own_box_not_drawn arm must get the untouched image"
    # the not-drawn arm still states the own box in the text (only the drawing is removed)
    own_texts = [m[0]["content"][1]["text"] for m in pol.calls[0][0]]
    assert [m[0]["content"][1]["text"] for m in pol.calls[3][0]] == own_texts
    assert all(parse_box(t).ok for t in own_texts)


def test_presence_probe_movement_stats(test_samples):
    samples = test_samples[:3]
    out = probe.presence_probe(FakePolicy(shift=300), samples, _own_boxes(samples))
    g = out["gt_box_drawn"]
    assert g["iou_after"] < g["iou_before"] and g["away_from_truth"] == 1.0 and g["toward_truth"] == 0.0
    assert g["unchanged"] == 0.0 and g["mean_move"] > 0.3


# ---------------------------------------------------------------------------------------------------------------
# classify_failure / failure_anatomy
# ---------------------------------------------------------------------------------------------------------------

GT = (10.0, 10.0, 50.0, 50.0)
DIST = (70.0, 70.0, 110.0, 110.0)
SAMPLE = {"objects": [{"box": list(GT)}, {"box": list(DIST)}], "target": 0}


def st(box, parse_ok=True):
    return StepRecord(text="", box=box if parse_ok else None, iou=bx.iou(box, GT) if parse_ok else 0.0,
                      parse_ok=parse_ok, reason=None if parse_ok else "no_box")


def tr(*steps, sid="s", family="fam"):
    return Trajectory(sid, family, GT, 128, 128, list(steps))


def test_classify_not_degrading_is_none():
    assert probe.classify_failure(tr(st((20, 20, 60, 60)), st(GT)), SAMPLE) is None  # improved
    assert probe.classify_failure(tr(st(GT), st(GT)), SAMPLE) is None  # unchanged
    # a drop smaller than MOVE_EPS (0.01) is not a degradation
    small = tr(st(GT), StepRecord("", (10, 10, 50, 50.3), 0.995, True))
    assert probe.classify_failure(small, SAMPLE) is None


@pytest.mark.parametrize("last,kind", [
    (None, "parse_failure"),
    ((71.0, 71.0, 110.0, 110.0), "jump_to_distractor"),
    ((10.0, 10.0, 30.0, 30.0), "shrink"),          # area ratio 0.25 < 0.7
    ((0.0, 0.0, 60.0, 60.0), "grow"),              # area ratio 2.25 > 1/0.7
    ((20.0, 10.0, 60.0, 50.0), "drift"),           # same size, moved
    ((30.0, 30.0, 30.0, 50.0), "degenerate_box"),  # zero width: degenerate, not a shrink
])
def test_classify_each_kind(last, kind):
    t = tr(st(GT), st(last, parse_ok=last is not None))
    assert probe.classify_failure(t, SAMPLE) == kind


def test_classify_distractor_uses_target_index_and_needs_objects():
    jump = tr(st(GT), st((71.0, 71.0, 110.0, 110.0)))
    # the distractor listed first, the target second: still a jump
    swapped = {"objects": [{"box": list(DIST)}, {"box": list(GT)}], "target": 1}
    assert probe.classify_failure(jump, swapped) == "jump_to_distractor"
    # if the object it lands on is the declared target, it is not a distractor (and the size is unchanged: drift)
    declared = {"objects": [{"box": list(DIST)}], "target": 0}
    assert probe.classify_failure(jump, declared) == "drift"
    # without objects there is nothing to jump to
    assert probe.classify_failure(jump, {}) == "drift"


def test_classify_ratio_parameter():
    t = tr(st(GT), st((10.0, 10.0, 45.0, 45.0)))  # area ratio 1225/1600 = 0.77
    assert probe.classify_failure(t, SAMPLE) == "drift"
    assert probe.classify_failure(t, SAMPLE, ratio=0.8) == "shrink"


def test_classify_uses_last_step_not_intermediate():
    t = tr(st(GT), st(None, parse_ok=False), st((20.0, 10.0, 60.0, 50.0)))
    assert probe.classify_failure(t, SAMPLE) == "drift"


def test_failure_anatomy_counts():
    trajs = [tr(st(GT), st(None, parse_ok=False)), tr(st(GT), st((10.0, 10.0, 30.0, 30.0))),
             tr(st(GT), st((10.0, 10.0, 30.0, 30.0))), tr(st(GT), st((20.0, 10.0, 60.0, 50.0))),
             tr(st((20.0, 20.0, 60.0, 60.0)), st(GT)), tr(st(GT), st(GT))]
    out = probe.failure_anatomy(trajs, [SAMPLE] * len(trajs))
    assert out["n"] == 6 and out["n_degrading"] == 4
    assert out["counts"] == {"drift": 1, "shrink": 2, "grow": 0, "jump_to_distractor": 0, "degenerate_box": 0,
                             "parse_failure": 1}
    assert out["shares_of_degrading"]["shrink"] == pytest.approx(0.5)
    assert out["shares_of_degrading"]["grow"] == 0.0
    assert sum(out["shares_of_degrading"].values()) == pytest.approx(1.0)


def test_failure_anatomy_no_degradation():
    out = probe.failure_anatomy([tr(st(GT), st(GT))], [SAMPLE])
    assert out["n_degrading"] == 0 and all(v == 0.0 for v in out["shares_of_degrading"].values())


# ---------------------------------------------------------------------------------------------------------------
# worst
# ---------------------------------------------------------------------------------------------------------------


def _iou_traj(ious, sid):
    return Trajectory(sid, "f", GT, 128, 128, [StepRecord(str(i), GT, v, True) for i, v in enumerate(ious)])


def test_worst_orders_by_largest_drop():
    trajs = [_iou_traj(v, f"s{i}") for i, v in enumerate(
        [[0.9, 0.8, 0.7], [0.9, 0.9, 0.1], [0.2, 0.5, 0.9], [0.8, 0.1, 0.4], [0.5, 0.5, 0.5]])]
    # drops (last - first): -0.2, -0.8, +0.7, -0.4, 0.0
    assert probe.worst(trajs) == [1, 3, 0, 4, 2]
    assert probe.worst(trajs, k=2) == [1, 3]
    assert all(isinstance(i, int) for i in probe.worst(trajs))


def test_worst_ties_keep_input_order():
    trajs = [_iou_traj([0.5, 0.2], f"s{i}") for i in range(4)]
    assert probe.worst(trajs, k=3) == [0, 1, 2]


def test_selection_anatomy_tells_wrong_object_from_imprecise_box():
    from ivt_lib.core.loop import StepRecord, Trajectory
    from ivt_lib.analysis.probe import selection_anatomy

    a, b, c = (0, 0, 10, 10), (20, 20, 30, 30), (40, 0, 50, 10)
    samples = [{"family": "f", "objects": [{"box": a}, {"box": b}], "target": 0},           # picks the target
               {"family": "f", "objects": [{"box": a}, {"box": b}], "target": 0},           # picks the distractor
               {"family": "f", "objects": [{"box": a}, {"box": b}, {"box": c}], "target": 2},  # lands on nothing
               {"family": "f", "objects": [{"box": a}], "target": 0},                       # parse failure
               {"family": "real", "bbox": a}]                                               # no object list: skipped

    def tr(box, gt, fam="f"):
        iou = __import__("ivt_lib.core.boxes", fromlist=["iou"]).iou(box, gt) if box else 0.0
        return Trajectory("x", fam, gt, 64, 64, [StepRecord("", box, iou, box is not None)])

    trajs = [tr(a, a), tr(b, a), tr((30, 30, 38, 38), c), tr(None, a), tr(a, a, "real")]
    out = selection_anatomy(trajs, samples)
    assert set(out) == {"f"} and out["f"]["n"] == 4
    assert out["f"]["picked"] == {"target": 0.25, "distractor": 0.25, "no_object": 0.25, "parse_failure": 0.25}
    assert out["f"]["acc_by_objects"] == {"1": {"n": 1, "acc@0.5": 0.0, "chance": 1.0},
                                          "2": {"n": 2, "acc@0.5": 0.5, "chance": 0.5},
                                          "3": {"n": 1, "acc@0.5": 0.0, "chance": 1 / 3}}
    assert selection_anatomy(trajs[4:], samples[4:]) == {}


# ---------------------------------------------------------------------------------------------------------------
# drop drivers
# ---------------------------------------------------------------------------------------------------------------


def test_drop_driver_arms_show_what_they_say(test_samples):
    samples = test_samples[:4]
    pol = FakePolicy(shift=0)
    out = probe.drop_drivers(pol, samples, _own_boxes(samples))
    arms = list(probe.DROP_DRIVER_ARMS)
    assert list(out) == arms and len(pol.calls) == len(arms)
    originals = [np.asarray(s["image"].convert("RGB")).astype(int) for s in samples]
    seen = dict(zip(arms, pol.arrays))
    texts = {a: [m[0]["content"][1]["text"] for m in c[0]] for a, c in zip(arms, pol.calls)}
    naive, outline, light = (seen[a] for a in arms[0:1] + arms[2:4])
    for i, orig in enumerate(originals):
        assert (seen["stated in text only (not drawn)"][i] == orig).all()
        assert (seen["regrounding_control (not drawn, grounding prompt)"][i] == orig).all()
        # how much red each overlay adds: the fill > the lighter fill > the outline alone (> 0)
        red = [np.abs(x[i] - orig).sum() for x in (naive, light, outline)]
        assert red[0] > red[1] > red[2] > 0
        assert (seen["drawn, grounding prompt (a format the base knows)"][i] == naive[i]).all()
    assert all("Refinement step" in t for t in texts[arms[0]])
    assert all(t.startswith("Locate") and "Refinement" not in t for t in texts[arms[4]] + texts[arms[5]])
    # the grounding prompts carry no previous box: the fake policy answers its step-0 box
    assert out[arms[5]]["mcnemar_vs_step0"]["gained"] + out[arms[5]]["mcnemar_vs_step0"]["lost"] >= 0
    for v in out.values():
        assert v["n"] == 4 and 0.0 <= v["acc@0.5_after"] <= 1.0 and v["mcnemar_vs_step0"]["p"] <= 1.0
        assert {"acc@0.5_after_colour_named", "acc@0.5_after_no_colour_named"} <= set(v)


def test_single_shot_and_object_count_rows(test_samples):
    from ivt_lib.core.loop import run_loop

    samples = test_samples[:9]
    trajs = run_loop(FakePolicy(), samples, T=0, show_progress=False)
    rep = probe.single_shot(trajs, samples)
    assert rep["overall"]["n"] == 9 and set(rep["by_family"]) == {s["family"] for s in samples}
    rows = probe.object_count_rows({"b": rep})
    assert sum(r["n"] for r in rows) == 9
    for r in rows:
        assert r["chance"] == pytest.approx(1 / r["objects"])
        assert r["above_chance_pp"] == pytest.approx(100 * (r["acc@0.5"] - r["chance"]))
    assert all(tuple(r) == probe.OBJECT_COUNT_COLUMNS for r in rows)


def test_object_count_table_is_indexable_on_real_data_without_object_lists(test_samples):
    """Regression: real benchmarks list no objects, so the rows are empty; notebook 00 must still index the table
    (the paper tiers failed with KeyError on ['base', 'family', 'objects'])."""
    import pandas as pd
    from ivt_lib.core.loop import run_loop

    samples = [{k: v for k, v in s.items() if k != "objects"} for s in test_samples[:3]]
    rep = probe.single_shot(run_loop(FakePolicy(), samples, T=0, show_progress=False), samples)
    rows = probe.object_count_rows({"b": rep})
    assert rows == []
    table = pd.DataFrame(rows, columns=probe.OBJECT_COUNT_COLUMNS).set_index(["base", "family", "objects"])
    assert table.empty and list(table.columns) == ["n", "acc@0.5", "chance", "above_chance_pp"]


def test_drop_driver_summary_compares_each_arm_with_the_naive_one(test_samples):
    samples = test_samples[:4]
    out = probe.drop_drivers(FakePolicy(shift=0), samples, _own_boxes(samples))
    naive = next(iter(probe.DROP_DRIVER_ARMS))
    assert out[naive]["vs_naive"]["d_acc@0.5"] == 0.0 and out[naive]["vs_naive"]["p"] == 1.0
    lines = probe.drop_driver_summary(out)
    assert len(lines) == len(out) and all("vs the naive arm" in ln for ln in lines)
    assert "no difference" in lines[0]


def test_word_binding_scores_the_named_attribute_against_chance():
    from ivt_lib.core.loop import StepRecord, Trajectory
    from ivt_lib.analysis.probe import word_binding, word_binding_rows

    a, b, c = (0, 0, 10, 10), (20, 20, 30, 30), (40, 0, 50, 10)
    objs = [{"box": a, "colour": "blue", "shape": "circle"}, {"box": b, "colour": "green", "shape": "circle"},
            {"box": c, "colour": "green", "shape": "square"}]

    def sample(expr):
        return {"family": "f", "objects": objs, "target": 0, "expression": expr}

    def tr(box):
        return Trajectory("x", "f", a, 64, 64, [StepRecord("", box, 0.0, box is not None)])

    # 'the blue shape' answered on the blue object (honoured) and on a green one (not); 'the circle' on the blue
    # circle and on the green circle (both honoured); a box on no object and a parse failure are left out
    samples = [sample("the blue shape")] * 2 + [sample("the circle")] * 2 + [sample("the blue circle")] * 2
    trajs = [tr(a), tr(c), tr(a), tr(b), tr((55, 55, 60, 60)), tr(None)]
    out = word_binding(trajs, samples)["f"]
    assert out["colour"]["n"] == 2 and out["colour"]["honoured"] == 0.5
    assert out["colour"]["chance"] == pytest.approx(1 / 3) and not out["colour"]["bound"]
    assert out["shape"]["n"] == 2 and out["shape"]["honoured"] == 1.0
    assert out["shape"]["chance"] == pytest.approx(2 / 3) and out["shape"]["bound"]  # +33 pp, constant: CI is a point
    rows = word_binding_rows({"base": {"word_binding": {"f": out}}})
    assert [r["word"] for r in rows] == ["colour", "shape"] and rows[1]["bound"] == "yes"
    one = {"family": "f", "objects": objs[:1], "target": 0, "expression": "the blue circle"}
    assert word_binding([tr(a)], [one]) == {}  # a one-object scene says nothing about binding


def test_pick_transitions_follow_the_box_from_object_to_object():
    from ivt_lib.core.loop import StepRecord, Trajectory

    a, b = (0, 0, 10, 10), (20, 20, 30, 30)
    two = {"family": "f", "objects": [{"box": a}, {"box": b}], "target": 0}
    one = {"family": "f", "objects": [{"box": a}], "target": 0}

    def tr(sid, *boxes):
        return Trajectory(sid, "f", a, 64, 64, [StepRecord("", x, 0.0, x is not None) for x in boxes])

    trajs = [tr("keep", a, a, a), tr("leave", a, a, b), tr("drift", a, (40, 40, 60, 60)), tr("fix", b, a),
             tr("broken", b, None), tr("single", a, b)]
    samples = [two, two, two, two, two, one]
    t = probe.pick_transitions(trajs, samples)
    assert t["counts"]["target"] == {"target": 1, "distractor": 1, "no_object": 1, "parse_failure": 0}
    assert t["counts"]["distractor"] == {"target": 1, "distractor": 0, "no_object": 0, "parse_failure": 1}
    assert t["shares"]["distractor"]["target"] == 0.5 and t["shares"]["no_object"]["target"] == 0.0  # empty row
    at1 = probe.pick_transitions(trajs, samples, end=1)["counts"]["target"]  # step 1, not the last
    assert at1 == {"target": 2, "distractor": 0, "no_object": 1, "parse_failure": 0}
    rows = probe.pick_transition_rows({"x": trajs[:5], "single shot": [tr("s", a)]},
                                      {"keep": two, "leave": two, "drift": two, "fix": two, "broken": two, "s": two})
    assert [r["configuration"] for r in rows] == ["x"]
    assert rows[0]["starts on target"] == 3 and rows[0]["distractor -> target %"] == 50.0

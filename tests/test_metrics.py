"""Tests for ivt_lib.core.metrics on hand-built trajectories (no model)."""
import math

import pytest

from ivt_lib.core import metrics as mt
from ivt_lib.core.boxes import iou
from ivt_lib.core.loop import StepRecord, Trajectory

W, H = 100, 100
GT = (10.0, 10.0, 50.0, 50.0)


def step(iou_value, box=(10.0, 10.0, 50.0, 50.0), parse_ok=True, logprob=float("nan")):
    return StepRecord(text="", box=box if parse_ok else None, iou=iou_value, parse_ok=parse_ok,
                      reason=None if parse_ok else "no_box", mean_logprob=logprob)


def traj(ious=None, steps=None, family="fam", sid="s", w=W, h=H):
    if steps is None:
        steps = [step(v) for v in ious]
    return Trajectory(sample_id=sid, family=family, gt=GT, width=w, height=h, steps=steps)


# ---------------------------------------------------------------------------------------------------------------
# summarize
# ---------------------------------------------------------------------------------------------------------------


def test_summarize_hand_computed():
    out = mt.summarize([0.95, 0.75, 0.55, 0.3, 0.0], parse_ok=[True, True, True, True, False],
                       degenerate=[False, False, False, True, False])
    assert out["acc@0.5"] == pytest.approx(3 / 5)
    assert out["acc@0.7"] == pytest.approx(2 / 5)
    assert out["acc@0.9"] == pytest.approx(1 / 5)
    assert out["mean_iou"] == pytest.approx(2.55 / 5)
    assert out["parse_rate"] == pytest.approx(0.8)
    assert out["degenerate_rate"] == pytest.approx(0.2)
    assert out["n"] == 5 and isinstance(out["n"], int)


def test_summarize_thresholds_are_inclusive():
    out = mt.summarize([0.5, 0.7, 0.9, 0.4999999])
    assert out["acc@0.5"] == pytest.approx(3 / 4)
    assert out["acc@0.7"] == pytest.approx(2 / 4)
    assert out["acc@0.9"] == pytest.approx(1 / 4)


def test_summarize_defaults():
    out = mt.summarize([1.0, 0.0])
    assert out["parse_rate"] == 1.0
    assert "degenerate_rate" not in out
    assert out["mean_iou"] == 0.5 and out["n"] == 2


def test_summarize_empty_raises():
    with pytest.raises(ValueError):
        mt.summarize([])


# ---------------------------------------------------------------------------------------------------------------
# per-step metrics
# ---------------------------------------------------------------------------------------------------------------


def _three_trajs():
    a = traj(steps=[step(0.6, box=(10, 10, 40, 40)), step(0.8, box=(10, 10, 45, 45)), step(0.95)])
    # step 0: parse failure; step 1: zero-area box (degenerate); step 2: whole-image box (degenerate)
    b = traj(steps=[step(0.0, parse_ok=False), step(0.0, box=(20, 20, 20, 30)), step(0.16, box=(0, 0, 100, 100))])
    c = traj(steps=[step(0.75, box=(12, 12, 50, 50)), step(0.72, box=(12, 12, 52, 50)), step(0.5, box=(5, 5, 50, 50))])
    return [a, b, c]


def test_step_metrics_hand_computed():
    trajs = _three_trajs()
    s0 = mt.step_metrics(trajs, 0)
    assert s0["acc@0.5"] == pytest.approx(2 / 3)
    assert s0["acc@0.7"] == pytest.approx(1 / 3)
    assert s0["acc@0.9"] == 0.0
    assert s0["mean_iou"] == pytest.approx((0.6 + 0.0 + 0.75) / 3)
    assert s0["parse_rate"] == pytest.approx(2 / 3)
    assert s0["degenerate_rate"] == 0.0  # a parse failure is not a degenerate box
    assert s0["n"] == 3

    s1 = mt.step_metrics(trajs, 1)
    assert s1["acc@0.7"] == pytest.approx(2 / 3)
    assert s1["parse_rate"] == 1.0
    assert s1["degenerate_rate"] == pytest.approx(1 / 3)

    s2 = mt.step_metrics(trajs, 2)
    assert s2["acc@0.9"] == pytest.approx(1 / 3)
    assert s2["acc@0.5"] == pytest.approx(2 / 3)
    assert s2["degenerate_rate"] == pytest.approx(1 / 3)


def test_per_step_is_step_metrics_for_every_step():
    trajs = _three_trajs()
    ps = mt.per_step(trajs)
    assert len(ps) == 3
    for t in range(3):
        assert ps[t] == mt.step_metrics(trajs, t)
    assert [round(d["mean_iou"], 6) for d in ps] == [round((0.6 + 0.75) / 3, 6), round((0.8 + 0.72) / 3, 6),
                                                      round((0.95 + 0.16 + 0.5) / 3, 6)]


def test_step_metrics_uses_each_trajectory_image_size():
    # the same box is the whole image for a 40x40 image but small in a 400x400 one
    box = (0.0, 0.0, 40.0, 40.0)
    small = traj(steps=[step(0.5, box=box)], w=40, h=40)
    large = traj(steps=[step(0.5, box=box)], w=400, h=400)
    assert mt.step_metrics([small], 0)["degenerate_rate"] == 1.0
    assert mt.step_metrics([large], 0)["degenerate_rate"] == 0.0


# ---------------------------------------------------------------------------------------------------------------
# selection rules
# ---------------------------------------------------------------------------------------------------------------


def test_oracle_rule_picks_max_iou_step():
    assert mt.oracle_rule(traj([0.2, 0.8, 0.5])) == 1
    assert mt.oracle_rule(traj([0.9, 0.1, 0.5])) == 0
    assert mt.oracle_rule(traj([0.1, 0.2, 0.3])) == 2
    assert mt.oracle_rule(traj([0.4, 0.7, 0.7])) == 1  # ties: the earliest step


def test_select_with_oracle_and_last_hand_computed():
    trajs = [traj([0.2, 0.8, 0.5]), traj([0.9, 0.1, 0.5]), traj([0.1, 0.2, 0.3])]
    o = mt.select(trajs, mt.oracle_rule)
    assert o["mean_iou"] == pytest.approx((0.8 + 0.9 + 0.3) / 3)
    assert o["acc@0.5"] == pytest.approx(2 / 3)
    assert o["acc@0.9"] == pytest.approx(1 / 3)
    assert o["mean_passes"] == pytest.approx((2 + 1 + 3) / 3)  # what the pick alone would cost
    assert mt.select(trajs, mt.oracle_rule, runs_all_steps=True)["mean_passes"] == 3  # what the oracle really runs
    assert o["n"] == 3
    last = mt.select(trajs, lambda tr: len(tr.steps) - 1)
    assert last["mean_iou"] == pytest.approx((0.5 + 0.5 + 0.3) / 3)
    assert last["mean_passes"] == 3.0


def test_select_counts_parse_failures():
    trajs = [traj(steps=[step(0.7), step(0.0, parse_ok=False)]), traj(steps=[step(0.6), step(0.9)])]
    out = mt.select(trajs, lambda tr: len(tr.steps) - 1)
    assert out["parse_rate"] == 0.5
    assert out["mean_iou"] == pytest.approx(0.45)


def test_still_rule_stops_at_first_small_move():
    b0, b1, b2, b3 = (0, 0, 10, 10), (0, 0, 10, 12), (0, 0, 10, 12.1), (0, 0, 10, 12.1)
    # moves: 1 - IoU(b0, b1) = 1 - 100/120 = 0.1667; 1 - IoU(b1, b2) = 1 - 120/121 = 0.0083; then 0
    assert 1 - iou(b0, b1) == pytest.approx(1 / 6)
    assert 1 - iou(b1, b2) == pytest.approx(1 / 121)
    tr = traj(steps=[step(0.1, box=b0), step(0.2, box=b1), step(0.3, box=b2), step(0.4, box=b3)])
    assert mt.still_rule(0.05)(tr) == 2  # first step whose move is < 0.05 (not the later zero move)
    assert mt.still_rule(0.2)(tr) == 1
    assert mt.still_rule(1 / 6 - 1e-9)(tr) == 2  # the 1/6 move is not < eps
    assert mt.still_rule(0.005)(tr) == 3  # only the zero move qualifies
    assert mt.still_rule(0.0)(tr) == 3  # nothing is ever still: last step


def test_still_rule_never_still_returns_last():
    tr = traj(steps=[step(0.1, box=(0, 0, 10, 10)), step(0.2, box=(20, 20, 30, 30)), step(0.3, box=(40, 40, 50, 50))])
    assert mt.still_rule(0.05)(tr) == 2


def test_still_rule_skips_parse_failures():
    same = (0, 0, 10, 10)
    # the boxes at steps 0 and 2 are identical, but step 1 failed: neither pair has two boxes
    tr = traj(steps=[step(0.1, box=same), step(0.0, parse_ok=False), step(0.3, box=same), step(0.2, box=(0, 0, 50, 50))])
    assert mt.still_rule(0.05)(tr) == 3
    tr = traj(steps=[step(0.1, box=same), step(0.0, parse_ok=False), step(0.3, box=same), step(0.3, box=same)])
    assert mt.still_rule(0.05)(tr) == 3


def test_still_rule_single_step():
    assert mt.still_rule()(traj([0.5])) == 0


def test_confidence_rule_picks_highest_logprob():
    tr = traj(steps=[step(0.1, logprob=-1.0), step(0.2, logprob=-0.2), step(0.3, logprob=-0.5)])
    assert mt.confidence_rule(tr) == 1


def test_confidence_rule_ignores_parse_failures_and_nan():
    tr = traj(steps=[step(0.1, logprob=-1.0), step(0.0, parse_ok=False, logprob=-0.01), step(0.3, logprob=-0.5),
                     step(0.4, logprob=float("nan"))])
    assert mt.confidence_rule(tr) == 2


def test_confidence_rule_all_failures_falls_back_to_step0():
    tr = traj(steps=[step(0.0, parse_ok=False, logprob=-0.1), step(0.0, parse_ok=False, logprob=-0.05)])
    assert mt.confidence_rule(tr) == 0


# ---------------------------------------------------------------------------------------------------------------
# stability
# ---------------------------------------------------------------------------------------------------------------


def test_stability_hand_computed():
    trajs = [
        traj([0.5, 0.7, 0.6, 0.8]),  # diffs +0.2 -0.1 +0.2; end +0.3  -> improve
        traj([0.9, 0.6, 0.3, 0.0]),  # diffs -0.3 -0.3 -0.3; end -0.9  -> degrade
        traj([0.4, 0.4, 0.405, 0.405]),  # diffs 0 +0.005 0; end +0.005  -> stay
        traj([0.6, 0.65, 0.6, 0.595]),  # diffs +0.05 -0.05 -0.005; end -0.005  -> stay
    ]
    s = mt.stability(trajs)
    # degradation: mean over 4 samples x 3 steps of max(0, IoU(t-1) - IoU(t))
    assert s["degradation"] == pytest.approx((0.1 + 0.9 + 0.0 + 0.055) / 12)
    assert s["mean_delta_iou"] == pytest.approx((0.3 - 0.9 + 0.005 - 0.005) / 12)
    assert s["improve"] == pytest.approx(0.25)
    assert s["degrade"] == pytest.approx(0.25)
    assert s["stay"] == pytest.approx(0.5)


def test_stability_threshold_0_01():
    trajs = [traj([0.3, 0.32]), traj([0.3, 0.28]), traj([0.3, 0.309]), traj([0.3, 0.291]), traj([0.3, 0.3])]
    s = mt.stability(trajs)
    assert s["improve"] == pytest.approx(1 / 5)
    assert s["degrade"] == pytest.approx(1 / 5)
    assert s["stay"] == pytest.approx(3 / 5)
    assert s["improve"] + s["degrade"] + s["stay"] == pytest.approx(1.0)
    assert s["degradation"] == pytest.approx((0.02 + 0.009) / 5)


def test_stability_compares_last_with_first_not_intermediate():
    # big dip in the middle but back to where it started: degradation > 0, yet "stay"
    s = mt.stability([traj([0.8, 0.2, 0.8])])
    assert s["degradation"] == pytest.approx(0.6 / 2)
    assert s["mean_delta_iou"] == pytest.approx(0.0)
    assert s["stay"] == 1.0 and s["improve"] == 0.0 and s["degrade"] == 0.0


def test_stability_single_step():
    assert mt.stability([traj([0.5]), traj([0.7])]) == {"degradation": 0.0, "mean_delta_iou": 0.0, "improve": 0.0,
                                                         "degrade": 0.0, "stay": 1.0, "n": 2}


def test_stability_bands_boundaries_count_as_moves():
    # deltas: +0.01, -0.01, +0.05, -0.05, +0.10, -0.10 (exactly on each band, as decimals), 0
    trajs = [traj([0.30, 0.31]), traj([0.30, 0.29]), traj([0.30, 0.35]), traj([0.30, 0.25]),
             traj([0.30, 0.40]), traj([0.30, 0.20]), traj([0.30, 0.30])]
    s = mt.stability_bands(trajs)
    assert list(s) == ["0.01", "0.05", "0.1"]
    assert s["0.01"]["improve"] == pytest.approx(3 / 7) and s["0.01"]["degrade"] == pytest.approx(3 / 7)
    assert s["0.05"]["improve"] == pytest.approx(2 / 7) and s["0.05"]["degrade"] == pytest.approx(2 / 7)
    assert s["0.1"]["improve"] == pytest.approx(1 / 7) and s["0.1"]["degrade"] == pytest.approx(1 / 7)
    assert [s[k]["stay"] for k in s] == pytest.approx([1 / 7, 3 / 7, 5 / 7])
    assert all(s[k]["n"] == 7 for k in s)
    assert s["0.01"]["stay"] == pytest.approx(mt.stability(trajs)["stay"])  # the 0.01 band is stability()


def test_stability_bands_just_inside_the_band_is_stay():
    s = mt.stability_bands([traj([0.30, 0.30 + 0.0499]), traj([0.30, 0.30 - 0.0499])], bands=(0.05,))
    assert s["0.05"]["stay"] == 1.0 and s["0.05"]["improve"] == 0.0 and s["0.05"]["degrade"] == 0.0


def test_stability_bands_splits_stay_by_step0_iou():
    trajs = [traj([0.9, 0.9]),    # stay, good
             traj([0.5, 0.52]),   # stay at 0.05 (good: 0.5 is inclusive), improve at 0.01
             traj([0.2, 0.2]),    # stay, bad
             traj([0.49, 0.46]),  # stay at 0.05 (bad), degrade at 0.01
             traj([0.1, 0.8])]    # improve everywhere: never in the split
    s = mt.stability_bands(trajs, bands=(0.01, 0.05))
    assert s["0.01"]["kept_good"] == pytest.approx(1 / 5) and s["0.01"]["stayed_bad"] == pytest.approx(1 / 5)
    assert s["0.05"]["kept_good"] == pytest.approx(2 / 5) and s["0.05"]["stayed_bad"] == pytest.approx(2 / 5)
    assert mt.stability_bands(trajs, bands=(0.05,), good_iou=0.95)["0.05"]["kept_good"] == 0.0
    for b in s.values():
        assert b["improve"] + b["degrade"] + b["stay"] == pytest.approx(1.0)
        assert b["kept_good"] + b["stayed_bad"] == pytest.approx(b["stay"])


def test_stability_bands_last_vs_first_single_step_and_errors():
    s = mt.stability_bands([traj([0.8, 0.2, 0.8]), traj([0.3, 0.0, 0.3])])
    assert all(b["stay"] == 1.0 for b in s.values())  # intermediate dips do not count
    one = mt.stability_bands([traj([0.7]), traj([0.2])])
    assert all(b["stay"] == 1.0 and b["kept_good"] == 0.5 and b["stayed_bad"] == 0.5 for b in one.values())
    with pytest.raises(ValueError):
        mt.stability_bands([])
    with pytest.raises(ValueError):
        mt.stability_bands([traj([0.1, 0.2]), traj([0.1])])
    with pytest.raises(ValueError):
        mt.stability_bands([traj([0.1, 0.2])], bands=(0.0,))


# ---------------------------------------------------------------------------------------------------------------
# by_family and report
# ---------------------------------------------------------------------------------------------------------------


def test_by_family():
    trajs = [traj([0.9, 0.1], family="b"), traj([0.2, 0.8], family="a"), traj([0.6, 0.6], family="a")]
    out = mt.by_family(trajs, 0)
    assert list(out) == ["a", "b"]
    assert out["a"]["n"] == 2 and out["a"]["mean_iou"] == pytest.approx(0.4)
    assert out["b"]["n"] == 1 and out["b"]["acc@0.9"] == 1.0
    assert mt.by_family(trajs, 1)["a"]["mean_iou"] == pytest.approx(0.7)


def test_report_structure_and_values():
    trajs = [traj([0.2, 0.8, 0.5], family="x"), traj([0.9, 0.1, 0.5], family="y")]
    r = mt.report(trajs)
    assert set(r) == {"per_step", "step0", "last", "oracle_best_step (uses GT)", "stop_when_still", "confidence",
                      "stability", "stability_bands", "by_family_step0", "by_family_last"}
    assert len(r["per_step"]) == 3
    assert r["step0"]["mean_iou"] == pytest.approx(0.55)
    assert r["last"]["mean_iou"] == pytest.approx(0.5)
    assert r["oracle_best_step (uses GT)"]["mean_iou"] == pytest.approx(0.85)
    # every box is identical (the default step box), so stop-when-still stops at step 1
    assert r["stop_when_still"]["mean_passes"] == 2.0
    assert r["stop_when_still"]["mean_iou"] == pytest.approx((0.8 + 0.1) / 2)
    # all log-probs NaN: confidence falls back to step 0
    assert r["confidence"]["mean_iou"] == pytest.approx(0.55)
    assert math.isclose(r["stability"]["degradation"], (0.3 + 0.8 + 0.0 + 0.0) / 4)
    assert set(r["by_family_step0"]) == {"x", "y"}
    assert r["stability_bands"] == mt.stability_bands(trajs)
    assert r["stability_bands"]["0.01"]["stay"] == r["stability"]["stay"] == 0.0

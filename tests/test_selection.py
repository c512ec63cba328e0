"""Equal-compute baselines and the label-free rules fitted on validation (move gate, logistic verifier)."""
import numpy as np
import pytest

from ivt_lib.analysis import selection as sel
from ivt_lib.core.loop import StepRecord, Trajectory

GT = (10.0, 10.0, 50.0, 50.0)


def _box_with_iou_x(shift):
    return (10.0 + shift, 10.0, 50.0 + shift, 50.0)


def tr(boxes, lps=None, sid="s"):
    from ivt_lib.core import boxes as bx

    lps = lps or [-0.5] * len(boxes)
    steps = [StepRecord("", b, bx.iou(b, GT) if b else 0.0, b is not None, None, lp, min_logprob=lp - 1)
             for b, lp in zip(boxes, lps)]
    return Trajectory(sid, "f", GT, 128, 128, steps)


def test_move_gate_choice_and_fit():
    still = tr([GT, GT, GT])                                   # never moved: gate keeps step 0 for any tau
    fixed = tr([_box_with_iou_x(30), _box_with_iou_x(30), GT])  # a big correct move at the last step
    broke = tr([GT, GT, _box_with_iou_x(15)])                  # a smaller harmful move (moved 0.55, IoU 0.45)
    assert sel.gate_choice([still, fixed, broke], 0.6) == [0, 2, 0]
    assert sel.gate_choice([still, fixed, broke], 0.0) == [0, 2, 2]  # a box that did not move is step 0 anyway
    rule = sel.fit_move_gate([still, fixed, broke])
    # the best tau takes the big move and refuses the small one: all three right
    assert rule["val_acc@0.5"] == 1.0 and rule["val_acc@0.5_step0"] == pytest.approx(2 / 3)
    assert 0.54 < rule["tau"] < 0.86
    assert sel.fit_move_gate([still])["tau"] == 1.0, "ties go to the larger tau (fewer refined answers)"


def test_verifier_learns_a_feature_that_predicts_correctness():
    rng = np.random.default_rng(0)
    val = []
    for i in range(60):  # right steps have a high log-prob, wrong ones a low one
        shifts = rng.choice([0.0, 35.0], size=3)
        val.append(tr([_box_with_iou_x(s) for s in shifts], [(-0.1 if s == 0 else -2.0) for s in shifts], sid=str(i)))
    rule = sel.fit_verifier(val)
    assert rule["features"] == list(sel.FEATURES) and len(rule["coef"]) == len(sel.FEATURES)
    assert rule["coef"][sel.FEATURES.index("mean_logprob")] > 0
    picks = sel.verifier_choice(val, rule)
    oracle = np.mean([max(t.ious) >= 0.5 for t in val])
    assert rule["val_acc@0.5"] == pytest.approx(np.mean(np.asarray(sel.pick(val, picks)) >= 0.5))
    assert rule["val_acc@0.5"] == pytest.approx(oracle)
    with pytest.raises(ValueError, match="same label"):
        sel.fit_verifier([tr([GT, GT])])


def test_features_handle_parse_failures_and_nan():
    t = tr([GT, None, GT], [-0.2, float("nan"), float("nan")])
    f = sel.step_features(t)
    assert f.shape == (3, len(sel.FEATURES)) and np.isfinite(f).all()
    assert f[1, sel.FEATURES.index("parse_ok")] == 0.0


def test_medoid_and_sampled_baselines():
    a, b, far = GT, _box_with_iou_x(2), _box_with_iou_x(60)
    assert sel.medoid([far, a, b]) in (1, 2)
    assert sel.medoid([None, None]) is None and sel.medoid([None, far]) == 1
    runs = [[tr([far])], [tr([a])], [tr([b])]]
    out = sel.sampled_baselines(runs)
    assert out["best-of-N ORACLE (uses GT)"] == [1.0]
    assert out["self-consistency (label-free)"][0] > 0.9
    with pytest.raises(ValueError, match="same samples"):
        sel.sampled_baselines([[tr([a])], []])

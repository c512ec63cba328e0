"""ivt_lib.analysis.evaluation on hand-built trajectories written to disk under the configuration file names."""
import math

import numpy as np
import pytest

from ivt_lib.analysis import evaluation as ev
from ivt_lib.core.trajectory import save_trajectories
from ivt_lib.core.loop import StepRecord, Trajectory

W = H = 128
GT = (10.0, 10.0, 50.0, 50.0)
NAN = float("nan")


def st(iou, dx=0.0, parse_ok=True, lp=NAN, stopped=False):
    """A step whose box is the GT shifted by ``dx`` (so distinct dx values = a box that moved)."""
    box = (10.0 + dx, 10.0, 50.0 + dx, 50.0) if parse_ok else None
    return StepRecord(text=f"step iou {iou}", box=box, iou=iou if parse_ok else 0.0, parse_ok=parse_ok,
                      reason=None if parse_ok else "no_box", mean_logprob=lp, stopped=stopped)


def traj(sid, family, steps):
    return Trajectory(sid, family, GT, W, H, steps)


def naive_trajs():
    """T=2. IoU per step: a [.9 .6 .4], b [.3 .7 .8], c [.6 .6 .6] (box still), d [fail .5 .2]."""
    return [
        traj("a", "fam1", [st(0.9, 0, lp=-0.1), st(0.6, 5, lp=-0.5), st(0.4, 10, lp=-0.9)]),
        traj("b", "fam1", [st(0.3, 20, lp=-0.8), st(0.7, 12, lp=-0.4), st(0.8, 3, lp=-0.2)]),
        traj("c", "fam2", [st(0.6, 7, lp=-0.3), st(0.6, 7, lp=-0.3), st(0.6, 7, lp=-0.3)]),
        traj("d", "fam2", [st(0.0, parse_ok=False, lp=-2.0), st(0.5, 9, lp=-0.6), st(0.2, 25, lp=-0.7)]),
    ]


def single_trajs():
    """T=0: one step each."""
    return [traj("a", "fam1", [st(0.8, lp=-0.2)]), traj("b", "fam1", [st(0.4, lp=-0.5)]),
            traj("c", "fam2", [st(0.95, lp=-0.1)])]


def sft_trajs():
    """T=2, mostly stable."""
    return [traj(s, f, [st(v0, 1), st(v1, 2), st(v2, 3)]) for s, f, (v0, v1, v2) in
            [("a", "fam1", (0.7, 0.75, 0.8)), ("b", "fam2", (0.5, 0.55, 0.45)), ("c", "fam2", (0.2, 0.3, 0.6))]]


@pytest.fixture()
def traj_dir(tmp_path):
    save_trajectories(tmp_path / ev.CONFIG_FILES["base, single shot"], single_trajs())
    save_trajectories(tmp_path / ev.CONFIG_FILES["base + naive iteration"], naive_trajs())
    save_trajectories(tmp_path / ev.CONFIG_FILES["SFT + IVT"], sft_trajs())
    save_trajectories(tmp_path / "unrelated.jsonl", single_trajs())  # not a configuration file: ignored
    return tmp_path


@pytest.fixture()
def configs(traj_dir):
    return ev.load_configs(traj_dir)


def _rows(rows, name):
    return {r["selection"]: r for r in rows if r["configuration"] == name}


# ---------------------------------------------------------------------------------------------------------------
# load_configs
# ---------------------------------------------------------------------------------------------------------------


def test_load_configs_skips_missing(configs, traj_dir):
    assert list(configs) == ["base, single shot", "base + naive iteration", "SFT + IVT"]  # CONFIG_FILES order
    assert [t.ious for t in configs["base + naive iteration"]] == [t.ious for t in naive_trajs()]
    assert configs["base, single shot"][2].family == "fam2"
    assert ev.load_configs(traj_dir / "no_such_folder") == {}


def test_load_configs_round_trips_nan_logprob_and_parse_failure(configs):
    d = configs["base + naive iteration"][3]
    assert d.steps[0].box is None and not d.steps[0].parse_ok and d.steps[0].mean_logprob == -2.0
    assert isinstance(d.steps[1].box, tuple)
    assert math.isnan(configs["SFT + IVT"][0].steps[0].mean_logprob)


# ---------------------------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------------------------

ITERATIVE_SELECTIONS = ["step 0", "last step (T=2)", "ORACLE best step (uses GT)", "stop-when-still (label-free)",
                        "confidence (label-free)"]


def test_table_rows_per_configuration_and_selection(configs):
    rows = ev.table(configs)
    assert len(rows) == 1 + 5 + 5
    assert [r["configuration"] for r in rows][:2] == ["base, single shot", "base + naive iteration"]
    single = _rows(rows, "base, single shot")
    assert list(single) == ["step 0"]  # T=0: only step 0
    assert "degradation" not in single["step 0"] and single["step 0"]["passes"] == 1.0
    assert single["step 0"]["mean_iou"] == pytest.approx((0.8 + 0.4 + 0.95) / 3)
    assert single["step 0"]["acc@0.5"] == pytest.approx(2 / 3)
    for name in ("base + naive iteration", "SFT + IVT"):
        assert list(_rows(rows, name)) == ITERATIVE_SELECTIONS


def test_table_values_for_the_naive_config(configs):
    r = _rows(ev.table(configs), "base + naive iteration")
    assert r["step 0"]["mean_iou"] == pytest.approx((0.9 + 0.3 + 0.6 + 0.0) / 4)
    assert r["step 0"]["parse_rate"] == pytest.approx(0.75)
    assert r["step 0"]["acc@0.5"] == pytest.approx(0.5)
    assert r["last step (T=2)"]["mean_iou"] == pytest.approx((0.4 + 0.8 + 0.6 + 0.2) / 4)
    assert r["ORACLE best step (uses GT)"]["mean_iou"] == pytest.approx((0.9 + 0.8 + 0.6 + 0.5) / 4)
    # confidence picks steps 0, 2, 0 (first of equal maxima), 1 -> IoUs .9 .8 .6 .5; it must run all 3 steps to compare
    assert r["confidence (label-free)"]["mean_iou"] == pytest.approx((0.9 + 0.8 + 0.6 + 0.5) / 4)
    assert r["confidence (label-free)"]["passes"] == 3
    # stop-when-still: only c stands still (at step 1); the rest run to the end
    assert r["stop-when-still (label-free)"]["passes"] == pytest.approx((3 + 3 + 2 + 3) / 4)
    assert r["stop-when-still (label-free)"]["mean_iou"] == pytest.approx((0.4 + 0.8 + 0.6 + 0.2) / 4)
    # the passes column: 1 for step 0, T + 1 for the last step and for rules that compare every step (true compute)
    assert r["step 0"]["passes"] == 1.0 and r["last step (T=2)"]["passes"] == 3
    assert r["ORACLE best step (uses GT)"]["passes"] == 3
    # stability columns on every row of an iterative configuration
    for row in r.values():
        # T vs 0: a degrades, b and d (a parse failure at step 0 counts as IoU 0) improve, c stays
        assert row["improve"] == pytest.approx(0.5) and row["degrade"] == pytest.approx(0.25)
        assert row["stay"] == pytest.approx(0.25)
        assert row["degradation"] == pytest.approx((0 + 0.3 + 0.2 + 0 + 0 + 0 + 0 + 0.3) / 8)


def test_table_oracle_is_an_upper_bound(configs):
    rows = ev.table(configs)
    for name in ("base + naive iteration", "SFT + IVT"):
        r = _rows(rows, name)
        oracle = r["ORACLE best step (uses GT)"]["mean_iou"]
        assert all(oracle >= row["mean_iou"] - 1e-12 for row in r.values())
        assert oracle > r["last step (T=2)"]["mean_iou"] + 0.01 and oracle > r["step 0"]["mean_iou"] + 0.01


# ---------------------------------------------------------------------------------------------------------------
# per_family / confidence_correlation / hard_cases
# ---------------------------------------------------------------------------------------------------------------


def test_per_family(configs):
    out = ev.per_family(configs)
    naive = {r["family"]: r for r in out if r["configuration"] == "base + naive iteration"}
    assert set(naive) == {"fam1", "fam2"}
    assert naive["fam1"]["acc@0.5 step 0"] == pytest.approx(0.5)      # .9 .3
    assert naive["fam1"]["acc@0.5 last"] == pytest.approx(0.5)        # .4 .8
    assert naive["fam2"]["acc@0.5 step 0"] == pytest.approx(0.5)      # .6 fail
    assert naive["fam2"]["acc@0.5 last"] == pytest.approx(0.5)        # .6 .2
    assert naive["fam2"]["mean_iou last"] == pytest.approx(0.4) and naive["fam2"]["n"] == 2
    single = {r["family"]: r for r in out if r["configuration"] == "base, single shot"}
    # T=0: step 0 is also the last step
    assert single["fam1"]["acc@0.5 step 0"] == single["fam1"]["acc@0.5 last"] == pytest.approx(0.5)
    assert single["fam2"]["n"] == 1 and single["fam2"]["mean_iou last"] == pytest.approx(0.95)
    sft = {r["family"]: r for r in out if r["configuration"] == "SFT + IVT"}
    assert sft["fam2"]["acc@0.5 step 0"] == pytest.approx(0.5) and sft["fam2"]["acc@0.5 last"] == pytest.approx(0.5)
    assert len(out) == 6


def test_confidence_correlation_positive():
    lp = [-3.0, -2.0, -1.0, -0.5, -0.2]
    ious = [0.1, 0.3, 0.55, 0.8, 0.9]
    trajs = [traj("x", "f", [st(ious[0], lp=lp[0]), st(ious[1], lp=lp[1]), st(ious[2], lp=lp[2])]),
             traj("y", "f", [st(ious[3], lp=lp[3]), st(ious[4], lp=lp[4]),
                             # excluded: a parse failure, a NaN confidence, a step frozen by the stopping rule
                             st(0.0, parse_ok=False, lp=5.0)]),
             traj("z", "f", [st(0.0, lp=NAN), st(0.05, lp=9.0, stopped=True), st(0.02, lp=8.0, stopped=True)])]
    out = ev.confidence_correlation(trajs)
    assert out["n"] == 5
    assert out["r_iou"] == pytest.approx(np.corrcoef(lp, ious)[0, 1]) and out["r_iou"] > 0.9
    correct = [v >= 0.5 for v in ious]
    assert out["r_correct"] == pytest.approx(np.corrcoef(lp, correct)[0, 1]) and out["r_correct"] > 0.7


def test_confidence_correlation_negative_sign():
    trajs = [traj("x", "f", [st(0.9, lp=-3.0), st(0.5, lp=-1.0), st(0.1, lp=-0.1)])]
    assert ev.confidence_correlation(trajs)["r_iou"] < -0.9


def test_confidence_correlation_nan_cases():
    two = ev.confidence_correlation([traj("x", "f", [st(0.2, lp=-1.0), st(0.8, lp=-0.5)])])
    assert two["n"] == 2 and math.isnan(two["r_iou"]) and math.isnan(two["r_correct"])
    flat = ev.confidence_correlation([traj("x", "f", [st(v, lp=-1.0) for v in (0.1, 0.5, 0.9)])])
    assert flat["n"] == 3 and math.isnan(flat["r_iou"])  # constant confidence: undefined
    all_right = ev.confidence_correlation([traj("x", "f", [st(v, lp=l) for v, l in ((0.6, -2), (0.7, -1), (0.9, 0))])])
    assert all_right["r_iou"] > 0.9 and math.isnan(all_right["r_correct"])  # correctness is constant


def test_hard_cases(configs):
    h = ev.hard_cases(configs["base + naive iteration"])
    assert h["n"] == 2  # b (0.3) and d (parse failure)
    assert h["mean_iou_step0"] == pytest.approx(0.15)
    assert h["mean_iou_last"] == pytest.approx(0.5)
    assert h["mean_iou_oracle (uses GT)"] == pytest.approx(0.65)
    assert h["acc@0.5_last"] == pytest.approx(0.5)
    assert ev.hard_cases(configs["base + naive iteration"], threshold=0.95)["n"] == 4
    assert ev.hard_cases(configs["base + naive iteration"], threshold=0.0) == {"n": 0}


# ---------------------------------------------------------------------------------------------------------------
# compute_curve / versus_paper
# ---------------------------------------------------------------------------------------------------------------


def test_versus_paper(configs):
    rows = ev.table(configs)
    out = ev.versus_paper(rows)
    assert [r["configuration"] for r in out] == ["base, single shot", "base + naive iteration", "SFT + IVT"]
    by = {r["configuration"]: r for r in out}
    assert by["base, single shot"]["ours: selection"] == "step 0"
    assert by["base + naive iteration"]["ours: selection"] == "last step (T=2)"
    assert by["base + naive iteration"]["ours mean_iou"] == pytest.approx(0.5)
    assert by["base + naive iteration"]["ours acc@0.5"] == pytest.approx(0.5)
    assert by["SFT + IVT"]["ours mean_iou"] == pytest.approx((0.8 + 0.45 + 0.6) / 3)
    for name, r in by.items():
        assert r["paper acc@0.5"] == ev.PAPER[name]["acc@0.5"]
        assert r["paper mean_iou"] == ev.PAPER[name]["mean_iou"]
    assert ev.versus_paper([]) == []

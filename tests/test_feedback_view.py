"""The IVT chain in a feedback view (ivt_lib.reproduction.feedback_view) and its summary (feedback_summary)."""
from __future__ import annotations

import pytest

from ivt_lib.configs import load_tier, stage_config
from ivt_lib.core.feedback import ViewSettings
from ivt_lib.core.trajectory import StepRecord, Trajectory
from ivt_lib.reproduction import feedback_summary, feedback_view

ZOOM = ViewSettings("zoom", 0.25, 128)


def test_params_put_every_output_in_the_views_folder_of_the_tier_and_validate():
    vd = feedback_summary.view_dir("smoke", ZOOM)
    assert vd.parts[-2:] == ("smoke", "view_zoom")
    p2 = feedback_view.params("smoke", ZOOM, "02_teacher_data_synthesis")
    assert p2["traces_dir"].endswith("view_zoom/traces") and p2["feedback"] == "zoom" and p2["zoom_margin"] == 0.25
    for seed in (0, 1):
        for stem in feedback_view.STEMS:
            p = feedback_view.params("smoke", ZOOM, stem, seed)
            assert p["runs_dir"].endswith(f"view_zoom/seed_{seed}") and p["seed"] == seed
            cfg = stage_config("smoke", stem, p)  # the tier's own folders, valid values
            assert cfg.view() == ZOOM
    # the labelled extra rows are trained at seed 0 only; the main rows at every seed
    assert feedback_view.params("smoke", ZOOM, "03_sft", 0)["recipe_ours"] is True
    assert feedback_view.params("smoke", ZOOM, "03_sft", 2)["recipe_ours"] is False
    assert feedback_view.params("smoke", ZOOM, "04_grpo", 2)["refine_credit_ablation"] is False
    assert feedback_view.params("smoke", ZOOM, "04_grpo", 0)["single_step"] is False
    assert feedback_view.params("smoke", ZOOM, "03_sft", 1)["traces_dir"] == p2["traces_dir"]  # one set of traces
    # the paper's jittered-GT ablation: its traces built once, trained at every seed; left out on request
    assert p2["ablation_jittered"] is True and feedback_view.params("smoke", ZOOM, "03_sft", 2)["ablation_jittered"]
    assert not feedback_view.params("smoke", ZOOM, "03_sft", 2, jittered_gt=False)["ablation_jittered"]
    assert not feedback_view.params("smoke", ZOOM, "02_teacher_data_synthesis", jittered_gt=False)["ablation_jittered"]
    with pytest.raises(ValueError, match="reruns"):
        feedback_view.params("smoke", ZOOM, "05_evaluation")
    assert load_tier("smoke")["03_sft"].get("feedback", "overlay") == "overlay"  # the tier's own rows stay overlay


def traj(sid: str, ious: list[float]) -> Trajectory:
    return Trajectory(sid, "f", (0, 0, 10, 10), 10, 10,
                      [StepRecord("", (0, 0, 10, 10), v, True, mean_logprob=-float(i)) for i, v in enumerate(ious)])


def test_config_result_pairs_every_rule_with_base_and_reports_the_bands():
    base = [traj(str(i), [0.9 if i % 2 else 0.2]) for i in range(40)]
    cfg = [traj(str(i), [0.9 if i % 2 else 0.2, 0.95 if i % 2 else 0.6, 0.95 if i % 2 else 0.6]) for i in range(40)]
    r = feedback_summary.config_result(cfg, base, 0.05)
    assert set(r["rules"]) >= {"step 0", "last step", "ORACLE best step (uses GT)", "stop-when-still (label-free)"}
    last = r["rules"]["last step"]
    assert last["d_acc@0.5"] == pytest.approx(0.5) and last["p"] < 0.05  # 20 misses fixed, none lost
    assert r["rules"]["step 0"]["d_acc@0.5"] == 0.0
    assert set(r["stability_bands"]) == {"0.01", "0.05", "0.1"}
    assert r["stability_bands"]["0.1"]["improve"] == pytest.approx(0.5)
    assert (r["step0_vs_base"]["lost"], r["step0_vs_base"]["won"]) == (0, 0)  # step 0 is base's own answer
    out = {"view": {"feedback": "zoom"}, "configurations": {"SFT + IVT": {"per_seed": {0: r}}},
           "overlay_step0_vs_base": {"SFT + IVT": {1: {**r["step0_vs_base"], "lost": 3, "net": -3}}}}
    lines = feedback_summary.step0_table(out)
    assert "| SFT + IVT, zoom | 0 | 40 | 0 | 0 | +0 |" in "\n".join(lines)
    assert "| SFT + IVT, overlay | 1 | 40 | 3 | 0 | -3 |" in "\n".join(lines)
    assert feedback_summary.step0_table({"view": {"feedback": "zoom"}, "configurations": {}}) == []


def test_across_seeds_counts_significant_seeds_and_gives_mean_and_sd():
    base = [traj(str(i), [0.9 if i % 2 else 0.2]) for i in range(40)]
    good = [traj(str(i), [0.9 if i % 2 else 0.2, 0.9, 0.9]) for i in range(40)]
    same = [traj(str(i), [0.9 if i % 2 else 0.2] * 3) for i in range(40)]
    per = {0: feedback_summary.config_result(good, base, 0.05), 1: feedback_summary.config_result(same, base, 0.05)}
    a = feedback_summary.across(per)
    assert a["last step"]["seeds_better_p<0.05"] == 1 and a["last step"]["seeds_worse_p<0.05"] == 0
    assert a["last step"]["d_acc@0.5"]["mean"] == pytest.approx(0.25) and a["last step"]["d_acc@0.5"]["sd"] > 0
    assert a["last vs own step 0: seeds significantly below"] == 0

"""GRPO rollout temperature / learning-rate sweep: arms parse, train from the SFT model, are evaluated on
validation against the SFT start (paired), and a finished arm is loaded rather than retrained."""
import json

import pytest

from ivt_lib import configs
from ivt_lib.reproduction import grpo_sweep


def test_parse_arm_casts_values_and_rejects_malformed_arms():
    assert grpo_sweep.parse_arm("hot=temperature:1.5,iterations:40,credit:refine") == (
        "hot", {"temperature": 1.5, "iterations": 40, "credit": "refine"})
    for bad in ("no_equals", "name=", "=temperature:1", "x=temperature"):
        with pytest.raises(ValueError):
            grpo_sweep.parse_arm(bad)


def test_runs_dir_in_an_override_is_the_tiers():
    assert grpo_sweep.resolve({"sft_model": grpo_sweep.OURS_SFT, "temperature": 0.5}, "runs/x") == {
        "sft_model": "runs/x/sft/ours/merged", "temperature": 0.5}


def test_arm_folders_are_distinct_for_the_built_in_arms():
    assert len({grpo_sweep.arm_dir(n) for n in grpo_sweep.ARMS}) == len(grpo_sweep.ARMS)
    assert grpo_sweep.arm_dir("temp 0.5, lr 2e-3") == "temp_0.5_lr_2e-3"


def test_invalid_arm_fails_before_any_training(tmp_path):
    where = {"runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")}
    with pytest.raises(configs.ConfigError, match="temperature"):
        grpo_sweep.sweep("smoke", {"cold": {"temperature": 0.0}}, 4, where)
    assert not (tmp_path / "runs").exists()


def test_sweep_trains_each_arm_and_compares_it_with_the_sft_start(smoke_chain):
    root, errors = smoke_chain
    if errors:
        pytest.skip(f"the smoke chain failed first: {sorted(errors)}")
    where = {k: str(root / k) for k in ("runs_dir", "results_dir", "figures_dir")}
    arms = {"hot": {"temperature": 1.5, "iterations": 1}, "fast": {"learning_rate": 0.05, "iterations": 1}}
    res = grpo_sweep.sweep("smoke", arms, 6, where)
    assert res["n_val"] == 6 and list(res["arms"]) == ["hot", "fast"]
    for name, a in res["arms"].items():
        assert a["overrides"] == arms[name] and len(a["training_log"]) == 1
        assert a["vs_sft_start"]["n"] == 6 and "last_ious" not in a
        assert set(a["stability"]) >= {"degradation", "improve", "degrade", "stay"}
    saved = root / "runs_dir" / "grpo_sweep" / "fast" / "eval.json"
    cached = json.loads(saved.read_text())
    cached["train_seconds"] = -1.0  # a marker: a rerun must load this file, not retrain
    saved.write_text(json.dumps(cached))
    again = grpo_sweep.sweep("smoke", {"fast": arms["fast"]}, 6, where)
    assert again["arms"]["fast"]["train_seconds"] == -1.0
    with pytest.raises(ValueError, match="holds a run with overrides"):  # same folder, other setting: never mixed up
        grpo_sweep.sweep("smoke", {"fast": {"learning_rate": 0.01, "iterations": 1}}, 6, where)
    lines = grpo_sweep.table(res)
    assert lines[2].startswith("| SFT start (no GRPO): `") and len(lines) == 5
    assert lines[3].startswith("| hot |") and ("no difference" in lines[3] or "sig." in lines[3])

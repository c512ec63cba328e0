"""Longer GRPO validation curves: a finished smoke run is continued on a copy, on validation only."""
import hashlib

import pytest

from ivt_lib.analysis import grpo_curve


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_finished_grpo_run_is_continued_on_a_copy(smoke_chain):
    root, errors = smoke_chain
    if errors:
        pytest.skip(f"the smoke chain failed first: {sorted(errors)}")
    where = {k: str(root / k) for k in ("runs_dir", "results_dir", "figures_dir")}
    original = root / "runs_dir" / "grpo" / "checkpoint" / "adapter_model.safetensors"
    before = _sha(original)
    out = grpo_curve.extend("smoke", 0, 4, where)  # the smoke tier trains 2 updates, validating after each
    assert [e["iteration"] for e in out["training_log"] if "val" in e] == [1, 2, 3, 4]
    assert [e["iteration"] for e in out["training_log"]] == [1, 2, 3, 4]  # 1-2 carried over from the original
    assert out["degradation_trend"]["points"] == 5  # the SFT start, then 4 validations
    assert _sha(original) == before  # notebook 04's run is untouched
    copy = root / "runs_dir" / "grpo_curve" / "seed_0" / "checkpoint" / "adapter_model.safetensors"
    assert _sha(copy) != before  # the copy took 2 more updates
    extended = _sha(copy)
    again = grpo_curve.extend("smoke", 0, 4, where)  # finished: resumed, no further updates
    assert again["training_log"] == out["training_log"] and _sha(copy) == extended
    with pytest.raises(FileNotFoundError, match="seed 5: no finished GRPO checkpoint"):
        grpo_curve.extend("smoke", 5, 4, where)


def test_table_samples_the_curve_and_shows_the_trend():
    v = lambda d: {"degradation": d, "last_acc@0.5": 0.5}  # noqa: E731
    log = [{"iteration": i, **({"val": v(0.1 - i / 2000)} if i % 10 == 0 else {})} for i in range(1, 81)]
    seed = {"val0": v(0.1), "training_log": log, "degradation_trend": {"first_quarter": 0.1, "last_quarter": 0.065}}
    lines = grpo_curve.table({"seeds": {"0": seed, "1": {**seed, "training_log": log[:30]}}})
    assert lines[0] == "| seed | start | 40 | 80 | first → last quarter |"
    assert lines[2] == "| 0 | 0.100 / 50.0 | 0.080 / 50.0 | 0.060 / 50.0 | 0.100 → 0.065 |"
    assert lines[3].startswith("| 1 | 0.100 / 50.0 | – | – |")  # a shorter curve: no value there

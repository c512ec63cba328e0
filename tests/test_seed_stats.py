"""Per-seed paired contrasts between configurations and the hard-case gain, on trajectories made here."""
import pytest

from ivt_lib.core import trajectory
from ivt_lib.analysis import seed_stats
from ivt_lib.core.loop import StepRecord, Trajectory


def _trajs(ious: list[list[float]]) -> list[Trajectory]:
    return [Trajectory(f"s{i}", "refl4", (0, 0, 10, 10), 64, 64,
                       [StepRecord("x", (0, 0, 10, 10), v, True) for v in row]) for i, row in enumerate(ious)]


def test_hard_gain_uses_only_the_hard_cases_and_its_ci_brackets_the_gain():
    trajs = _trajs([[0.1, 0.4], [0.2, 0.6], [0.3, 0.3], [0.9, 0.1]])  # the last is easy: its loss is not counted
    h = seed_stats.hard_gain(trajs)
    assert h["n"] == 3 and h["mean_iou_step0"] == pytest.approx(0.2) and h["gain"] == pytest.approx(0.7 / 3)
    assert h["ci_gain"][0] <= h["gain"] <= h["ci_gain"][1]
    assert seed_stats.hard_gain(_trajs([[0.9, 0.9]])) == {"n": 0}


def test_per_seed_contrasts_rows_trained_with_the_same_seed(tmp_path):
    n = 60
    sft = _trajs([[0.6, 0.3 if i % 2 else 0.7] for i in range(n)])     # half of the last steps wrong
    grpo = _trajs([[0.6, 0.7] for _ in range(n)])                      # every last step right
    for seed, folder in ((0, tmp_path / "trajectories"), (1, tmp_path / "seed_1" / "trajectories")):
        trajectory.save_trajectories(folder / "sft.jsonl", sft)
        trajectory.save_trajectories(folder / "grpo.jsonl", grpo if seed == 0 else sft)
    ps = seed_stats.per_seed(tmp_path, [1, 2])  # seed 2 has no folder: left out
    assert set(ps) == {0, 1}
    key = "SFT + GRPO + IVT vs SFT + IVT, last step"
    assert set(ps[0]["contrasts"]) == {key}  # the extra rows' files are absent
    assert ps[0]["contrasts"][key]["d_acc@0.5"] == pytest.approx(0.5) and ps[0]["contrasts"][key]["significant"]
    assert ps[1]["contrasts"][key]["d_acc@0.5"] == 0 and not ps[1]["contrasts"][key]["significant"]
    lines = seed_stats.contrast_table(ps)
    assert lines[2].startswith("| 0 | +50.0 [") and lines[3].endswith("no difference |")
    hard = seed_stats.hard_table(ps)
    assert len(hard) == 2  # no hard cases (every step 0 is 0.6): header only


def test_trajectories_of_different_lengths_are_refused(tmp_path):
    trajectory.save_trajectories(tmp_path / "trajectories" / "sft.jsonl", _trajs([[0.1, 0.2]] * 3))
    trajectory.save_trajectories(tmp_path / "trajectories" / "grpo.jsonl", _trajs([[0.1, 0.2]] * 2))
    with pytest.raises(ValueError, match="seed 0: trajectories of different lengths"):
        seed_stats.per_seed(tmp_path, [])


def _grpo(curve: list[float]) -> dict:
    """A GRPO result whose validation curve is ``curve``: the start, then one validation every 10 updates."""
    return {"val0": {"degradation": curve[0]},
            "training_log": [{"iteration": 10 * i, "val": {"degradation": v}} for i, v in enumerate(curve[1:], 1)]}


def test_validation_curves_need_a_fall_larger_than_its_seed_spread():
    falling = {s: {"SFT + GRPO + IVT": _grpo([0.10, 0.10, 0.08, 0.06 + s / 1000, 0.05])} for s in range(3)}
    c = seed_stats.validation_curves(falling)["SFT + GRPO + IVT"]
    assert set(c["per_seed"]) == {0, 1, 2} and c["fall_mean"] == pytest.approx(0.05, abs=1e-3) and c["learning"]
    noisy = {0: {"SFT + GRPO + IVT": _grpo([0.10, 0.05])}, 1: {"SFT + GRPO + IVT": _grpo([0.10, 0.15])}}
    c = seed_stats.validation_curves(noisy)["SFT + GRPO + IVT"]
    assert c["fall_mean"] == pytest.approx(0.0) and c["learning"] is False
    one = seed_stats.validation_curves({0: {"SFT + GRPO + IVT": _grpo([0.1, 0.05])}})["SFT + GRPO + IVT"]
    assert one["learning"] is None and one["fall_sd"] is None
    lines = seed_stats.validation_table({"SFT + GRPO + IVT": c})
    assert "no (fall within the seed spread)" in lines[2]
    assert seed_stats.validation_curves({0: {"SFT + IVT": {}}}) == {}  # no GRPO row: nothing


def test_stability_bands_per_seed_and_their_table(tmp_path):
    """Each seed's rows carry improve/degrade/stay at the three dead bands; the table gives mean ± sd over seeds."""
    # 4 samples: +0.2 (improves at every band), -0.03 (degrades only at 0.01), 0 from a good start, 0 from a bad one
    rows = [[0.5, 0.7], [0.6, 0.57], [0.8, 0.8], [0.1, 0.1]]
    for folder in (tmp_path / "trajectories", tmp_path / "seed_1" / "trajectories"):
        trajectory.save_trajectories(folder / "sft.jsonl", _trajs(rows))
    ps = seed_stats.per_seed(tmp_path, [1])
    b = ps[1]["stability_bands"]["SFT + IVT"]
    assert b["0.01"]["degrade"] == pytest.approx(0.25) and b["0.05"]["degrade"] == 0
    assert b["0.05"]["kept_good"] == pytest.approx(0.5) and b["0.05"]["stayed_bad"] == pytest.approx(0.25)
    lines = seed_stats.bands_table(ps)
    assert len(lines) == 2 + 3 and "| SFT + IVT | 0, 1 | 0.05 | 25.0 ± 0.0 | 0.0 ± 0.0 | 75.0 ± 0.0 | 50.0 ± 0.0 |" in lines[3]

"""Step-0 answers changed against base single shot (ivt_lib.analysis.step0_changes)."""
import pytest

from ivt_lib.analysis import step0_changes as sc
from ivt_lib.core.trajectory import StepRecord, Trajectory


def traj(sid: str, iou0: float) -> Trajectory:
    return Trajectory(sid, "f", (0, 0, 10, 10), 10, 10, [StepRecord("", (0, 0, 10, 10), iou0, True)])


def test_counts_lost_and_won_answers_and_splits_them_by_iou():
    base = [traj("a", 0.9), traj("b", 0.8), traj("c", 0.7), traj("d", 0.1), traj("e", 0.0), traj("f", 0.6)]
    model = [traj("a", 0.0), traj("b", 0.2), traj("c", 0.45), traj("d", 0.9), traj("e", 0.3), traj("f", 0.6),
             traj("x", 0.0)]  # x: not in base, left out
    c = sc.step0_changes(base, model)
    assert (c["n"], c["lost"], c["won"], c["net"]) == (6, 3, 1, -2)
    assert list(c["lost_by_model_iou"].values()) == [1, 1, 1]  # another object, partial, near miss
    assert list(c["won_by_base_iou"].values()) == [0, 1, 0]  # base's 0.1 was a partial overlap
    lines = sc.table([("SFT", "0", c)])
    assert lines[2] == "| SFT | 0 | 6 | 3 | 1 | -2 | 1 | 1 | 1 |" and len(lines[0].split("|")) == len(lines[1].split("|"))


def test_no_shared_sample_is_an_error():
    with pytest.raises(ValueError, match="share no sample"):
        sc.step0_changes([traj("a", 1.0)], [traj("b", 1.0)])

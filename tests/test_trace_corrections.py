"""Correction sizes of SFT traces (ivt_lib.analysis.trace_corrections), on trace rows made here."""
from __future__ import annotations

import json

import pytest

from ivt_lib.analysis import trace_corrections as tc


def row(step: int, stated, answer) -> dict:
    user = "Locate it." if stated is None else f'Refine the red box {json.dumps({"bbox_2d": stated})}. Output it.'
    return {"step": step, "messages": [{"role": "user", "content": [{"type": "image", "text": None},
                                                                      {"type": "text", "text": user}]},
                                       {"role": "assistant", "content": [{"type": "text", "text": answer}]}]}


def test_sizes_are_centre_shifts_in_box_sides_and_skip_step0_and_unparsed_rows():
    rows = [row(0, None, '{"bbox_2d": [0, 0, 10, 10]}'),                      # step 0: not a correction
            row(1, [100, 100, 200, 200], '{"bbox_2d": [100, 100, 200, 200]}'),  # kept: 0
            row(1, [100, 100, 200, 150], '{"bbox_2d": [130, 140, 230, 190]}'),  # (30, 40) / 100 = 0.5
            row(2, [100, 100, 200, 200], "no box here")]                          # unparsed: left out
    sizes = tc.correction_sizes(rows)
    assert sizes.tolist() == pytest.approx([0.0, 0.5])
    s = tc.summary(sizes, len(rows))
    assert s["n"] == 2 and s["unparsed_or_step0"] == 2 and s["bins"]["[0, 1e-09)"] == 0.5
    assert s["bins"]["[0.5, 1)"] == 0.5 and sum(s["bins"].values()) == pytest.approx(1)
    lines = tc.table({"x": s})
    assert len(lines) == 3 and lines[2].startswith("| x | 2 | 0.25 | 50 |")


def test_no_refine_row_is_a_clear_error():
    with pytest.raises(ValueError, match="no refine row"):
        tc.summary(tc.correction_sizes([row(0, None, '{"bbox_2d": [0, 0, 1, 1]}')]), 1)


def test_cli_reads_a_saved_trace_dataset(tmp_path):
    from datasets import Dataset

    Dataset.from_list([row(1, [0, 0, 100, 100], '{"bbox_2d": [10, 0, 110, 100]}')]).save_to_disk(str(tmp_path / "t"))
    out = tmp_path / "c.json"
    tc.main(["--traces", f"own={tmp_path / 't'}", "--out", str(out)])
    assert json.loads(out.read_text())["own"]["bins"]["[0.05, 0.14)"] == 1.0
    with pytest.raises(SystemExit):
        tc.main(["--traces", "no-equals-sign"])

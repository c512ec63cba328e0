"""Tables of the box-perception probes (ivt_lib.analysis.perception_tables) and the report's zoom-view section."""
from __future__ import annotations

import json

from ivt_lib.analysis import perception_tables as pt
from ivt_lib.reproduction import report_view


def q(acc: float) -> dict:
    return {"acc": acc, "ci": [acc - 0.03, acc + 0.03], "n": 400}


def place(a4: float, rmse: float) -> dict:
    return {"drawn": q(0.9), "aligned_vs_2px": q(0.6), "aligned_vs_4px": q(a4), "aligned_vs_8px": q(0.9),
            "offset": {"rmse": rmse, "guess_rmse": 4.0, "n": 280}}


def result(a4_grid: float, a4_pooled: float, rmse: float) -> dict:
    rep = {"merged": place(a4_grid, rmse), "merged/pooled": place(a4_pooled, rmse + 1)}
    rep["lm_0"] = {**rep["merged"], "same_as": "merged"}
    rep["lm_0/pooled"] = {**rep["merged/pooled"], "same_as": "merged/pooled"}
    beh = {"gt": {"kept": 0.25, "kept_ci": [0.2, 0.3], "closer": 0.0, "closer_ci": [0.0, 0.02],
                  "kept_at_iou_0.9_with_truth": 0.25, "cosine_move_vs_needed": None, "n": 200}}
    return {"representation": rep, "behaviour": beh, "n_scenes": 200}


RES = {"data/base_model": {"overlay": result(0.51, 0.52, 4.0), "zoom m0.5 s128 window@box": result(0.96, 0.9, 1.0)}}


def test_targets_need_both_the_alignment_and_the_offset():
    assert pt.targets(RES["data/base_model"]["overlay"])["grid"]["met"] is False
    z = pt.targets(RES["data/base_model"]["zoom m0.5 s128 window@box"])
    assert z["grid"] == {"aligned_vs_4px": 0.96, "offset_ratio": 0.25, "met": True}
    assert z["pooled"]["met"] is True  # 90 %, offset ratio (1 + 1) / 4 = 0.5: at the bound, met
    assert pt.targets(result(0.84, 0.9, 1.0))["grid"]["met"] is False  # 84 % misses 85 %
    assert pt.targets(result(0.9, 0.9, 2.1))["grid"]["met"] is False  # offset ratio 0.525 misses half


def test_tables_show_every_view_and_place_with_cis():
    rep = pt.representation(RES, ("merged", "lm_0"))
    assert len(rep) == 2 + 2 * 2 * 2  # header + (overlay, zoom) x (merged, lm_0) x (grid, pooled)
    assert "| 96 [93, 99] |" in next(r for r in rep if "zoom" in r and "| merged | grid" in r)
    assert "1.00 / 4.00 (0.25)" in next(r for r in rep if "zoom" in r and "| merged | grid" in r)
    beh = pt.behaviour(RES)
    assert len(beh) == 2 + 2 and "| 25 [20, 30] | 0 [0, 2] | 25 | – | 200 |" in beh[-1]


def test_report_section_reads_the_probe_file(tmp_path):
    assert report_view.section(tmp_path) == []
    (tmp_path / "box_probe.json").write_text(json.dumps(RES))
    text = "\n".join(report_view.section(tmp_path))
    assert "## Box perception and the zoom feedback view (ours)" in text and "window@box" in text


def test_trained_summary_groups_seeds_and_keep_signals_are_collected(tmp_path):
    """Seeds of one configuration and view become one line (mean ± sd); a model without a keep signal shows –."""
    def trained(a4: float, kept: float, keep: float | None) -> dict:
        r = result(a4, a4, 1.0)
        r["representation"]["lm_4"] = place(a4, 2.0)
        r["behaviour"]["gt"] = {**r["behaviour"]["gt"], "kept": kept}
        if keep is not None:
            r["keep_signal"] = {"good_starts": 10, "greedy_keep": keep, "greedy_keep_ci": [keep - 0.1, keep + 0.1],
                                "sampled_keep": keep / 2, "sampled_keep_ci": [0.0, 1.0], "groups_with_a_keep": 1.0,
                                "groups_with_a_keep_ci": [0.7, 1.0], "sampled_iou_keep": 0.9, "sampled_iou_move": 0.5}
        return {"overlay": r}

    res = {"SFT + IVT, overlay view, seed 0": trained(0.5, 0.2, 0.9), "SFT + IVT, overlay view, seed 1": trained(0.6, 0.4, 0.7),
           "SFT + IVT, zoom view, seed 0": trained(0.96, 0.95, None)}
    lines = pt.trained_summary(res)
    assert len(lines) == 2 + 2
    assert lines[2].startswith("| SFT + IVT, overlay view | 0, 1 | 55 ± 7 | 0.50 ± 0.00 | 30 ± 14 |")
    assert lines[2].endswith("| – | 80 ± 14 | 40 ± 7 |") and lines[3].endswith("| – | – |")  # no 8 px start: no cosine
    assert set(pt.keep_signals(res)) == {"SFT + IVT, overlay view, seed 0", "SFT + IVT, overlay view, seed 1"}
    (tmp_path / "box_probe.json").write_text(json.dumps(RES))
    (tmp_path / "box_probe_trained.json").write_text(json.dumps(res))
    text = "\n".join(report_view.section(tmp_path))
    assert "### Probes of the trained models" in text and "| SFT + IVT, overlay view, seed 1 | 10 | 70 [" in text


def test_report_section_shows_the_trace_correction_sizes(tmp_path):
    (tmp_path / "box_probe.json").write_text(json.dumps(RES))
    bins = {"[0, 1e-09)": 0.5, "[0.14, 0.28)": 0.5}
    (tmp_path / "trace_corrections.json").write_text(json.dumps({"own errors": {"bins": bins, "median": 0.07, "n": 4}}))
    text = "\n".join(report_view.section(tmp_path))
    assert "### Which corrections do the SFT traces teach?" in text and "| own errors | 4 | 0.07 | 50 | 50 |" in text

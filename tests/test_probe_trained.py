"""Probing every trained model of a tier (ivt_lib.reproduction.probe_trained) on a model tree made here."""
from __future__ import annotations

import json

import pytest

from ivt_lib.reproduction import probe_trained as pt


def _tree(runs):
    """Overlay seed 0 (SFT, GRPO) at the root, overlay seed 1 (SFT), zoom seed 0 (GRPO); a folder without a model."""
    for sub in ("sft/student", "grpo", "seed_1/sft/student", "view_zoom/seed_0/grpo"):
        (runs / sub / "merged").mkdir(parents=True)
        (runs / sub / "merged" / "config.json").write_text("{}")
    (runs / "seed_1" / "grpo" / "merged").mkdir(parents=True)  # a training killed before its merge: no model


def _fake_runner(calls):
    def run(argv):
        calls.append(argv)
        name, out = argv[argv.index("--label") + 1], argv[argv.index("--out") + 1]
        view = argv[argv.index("--view") + 1]
        json.dump({name: {view: {"model": argv[argv.index("--model") + 1]}}}, open(out, "w"))
    return run


@pytest.fixture
def tier(tmp_path, monkeypatch):
    runs, results = tmp_path / "runs", tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(pt, "load_tier", lambda t: {"03_sft": {"runs_dir": str(runs), "results_dir": str(results)}})
    return runs, results


def test_models_are_found_per_view_and_seed(tier):
    runs, _ = tier
    _tree(runs)
    got = pt.trained_models(runs, ["overlay", "zoom"], [0, 1])
    assert set(got) == {"SFT + IVT, overlay view, seed 0", "SFT + GRPO + IVT, overlay view, seed 0",
                        "SFT + IVT, overlay view, seed 1", "SFT + GRPO + IVT, zoom view, seed 0"}
    assert got["SFT + IVT, overlay view, seed 1"] == runs / "seed_1" / "sft" / "student" / "merged"
    assert pt.trained_models(runs, ["zoom"], [1]) == {}


def test_run_probes_each_model_in_its_view_merges_and_resumes(tier):
    runs, results = tier
    _tree(runs)
    (results / "box_probe_trained.json").write_text(json.dumps({"earlier model": {"overlay": {}}}))
    calls = []
    merged = pt.run_all("default", ["overlay", "zoom"], [0, 1], jobs=2, runner=_fake_runner(calls))
    assert len(calls) == 4 and "earlier model" in merged and len(merged) == 5
    assert list(merged) == ["SFT + IVT, overlay view, seed 0", "SFT + IVT, overlay view, seed 1",
                            "SFT + GRPO + IVT, overlay view, seed 0", "SFT + GRPO + IVT, zoom view, seed 0",
                            "earlier model"]  # the paper's view first, by row and seed; other names last
    zoom = next(c for c in calls if "zoom view" in c[c.index("--label") + 1])
    assert zoom[zoom.index("--view") + 1] == "zoom:0.5:128" and "--keep-signal" in zoom
    assert json.loads((results / "box_probe_trained.provenance.json").read_text())["params"]["kept_from_before"] == [
        "earlier model"]
    pt.run_all("default", ["overlay", "zoom"], [0, 1], runner=_fake_runner(calls))  # every part on disk: none rerun
    assert len(calls) == 4
    pt.run_all("default", ["overlay"], [0], force=True, runner=_fake_runner(calls))
    assert len(calls) == 6


def test_no_trained_model_is_a_clear_error(tier):
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        pt.run_all("default", ["overlay"], [0], runner=_fake_runner([]))

"""The shipped bases: the pure grounder (data/base_model) and the refine-mix ablation (data/base_model_refine_mix)
load through the one loader, still score on a fixed subset, and ship their training records."""
import json

import pytest

from ivt_lib.configs import ROOT
from ivt_lib.corpora.splits import load_split
from ivt_lib.core.loop import HFPolicy, run_loop
from ivt_lib.core.metrics import step_metrics
from ivt_lib.core.models import load_model

BASE = ROOT / "data" / "base_model"
REFINE_MIX = ROOT / "data" / "base_model_refine_mix"


@pytest.mark.parametrize("folder", [BASE, REFINE_MIX], ids=["pure", "refine_mix"])
def test_shipped_weights_score_on_a_fixed_subset(folder):
    model, proc = load_model(folder, device="cpu")  # the same loader as a hub id
    assert (folder / "model.safetensors").stat().st_size <= 20 * 2**20, "shipped weights must stay <= 20 MB"
    samples = load_split("test", limit=60)
    trajs = run_loop(HFPolicy(model, proc, max_new_tokens=28, batch_size=30), samples, T=1, show_progress=False)
    m0, m1 = step_metrics(trajs, 0), step_metrics(trajs, 1)
    assert m0["parse_rate"] >= 0.99
    assert m0["acc@0.5"] >= 0.45, f"{folder.name} scores {m0['acc@0.5']:.2f} Acc@0.5 on the first 60 test samples"
    if folder == REFINE_MIX:  # it was trained on the refine format; the pure base was not (notebook 01 measures it)
        assert m1["parse_rate"] >= 0.95


@pytest.mark.parametrize("folder", [BASE, REFINE_MIX], ids=["pure", "refine_mix"])
def test_training_record_ships_with_the_weights(folder):
    curve = json.loads((folder / "training_curve.json").read_text())
    assert curve and all({"step", "acc@0.5", "by_family"} <= set(p) for p in curve)
    params = json.loads((folder / "train_params.json").read_text())
    assert params["config"]["seed"] == 0 and params["summary"]["best_val_acc@0.5"] == pytest.approx(
        max(p["acc@0.5"] for p in curve))


def test_the_pure_base_was_trained_without_refinement_samples():
    cfg = json.loads((BASE / "train_params.json").read_text())["config"]
    assert cfg["refine_frac"] == 0.0 and cfg["contrast_frac"] > 0 and cfg["paraphrase_frac"] > 0
    if cfg["init_from"]:  # a warm start: the stage it started from was pure too, and its record ships
        first = json.loads((BASE / "train_params_stage1.json").read_text())["config"]
        assert first["refine_frac"] == 0.0
        assert json.loads((BASE / "training_curve_stage1.json").read_text())
    old = json.loads((REFINE_MIX / "train_params.json").read_text())["config"]
    assert old["refine_frac"] == 0.3

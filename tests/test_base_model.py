"""The shipped base grounder (data/base_model): loads through the one loader and still scores on a fixed subset."""
import json

import pytest

from ivt_lib.config import ROOT
from ivt_lib.data import load_split
from ivt_lib.loop import HFPolicy, run_loop
from ivt_lib.metrics import step_metrics
from ivt_lib.models import load_model

BASE = ROOT / "data" / "base_model"


def test_shipped_weights_score_on_a_fixed_subset():
    model, proc = load_model(BASE, device="cpu")  # the same loader as a hub id
    assert (BASE / "model.safetensors").stat().st_size <= 20 * 2**20, "shipped weights must stay <= 20 MB"
    samples = load_split("test", limit=60)
    trajs = run_loop(HFPolicy(model, proc, max_new_tokens=28, batch_size=30), samples, T=1, show_progress=False)
    m0, m1 = step_metrics(trajs, 0), step_metrics(trajs, 1)
    assert m0["parse_rate"] >= 0.99 and m1["parse_rate"] >= 0.95
    assert m0["acc@0.5"] >= 0.45, f"shipped base scores {m0['acc@0.5']:.2f} Acc@0.5 on the first 60 test samples"


def test_training_record_ships_with_the_weights():
    curve = json.loads((BASE / "training_curve.json").read_text())
    assert curve and all({"step", "acc@0.5", "by_family"} <= set(p) for p in curve)
    params = json.loads((BASE / "train_params.json").read_text())
    assert params["config"]["seed"] == 0 and params["summary"]["best_val_acc@0.5"] == pytest.approx(
        max(p["acc@0.5"] for p in curve))

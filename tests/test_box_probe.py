"""Box-perception probes (ivt_lib.analysis.box_probe): the drawings, the features at each place, the probes."""
import random

import numpy as np
import pytest

from ivt_lib.analysis import box_probe as bp
from ivt_lib.core import boxes as bx
from ivt_lib.core.loop import StepRecord, Trajectory


def test_a_shift_keeps_the_box_whole_inside_the_image():
    assert bp.shifted((10, 10, 30, 30), 4, -2, 128, 128) == (14, 8, 34, 28)
    assert bp.shifted((2, 10, 30, 30), -8, 0, 128, 128) == (0, 10, 28, 30)  # cut short at the edge
    assert bp.shifted((100, 10, 128, 30), 8, 0, 128, 128) == (100, 10, 128, 30)


def test_variants_of_a_scene():
    s = {"width": 128, "height": 128, "bbox": [40, 40, 60, 70]}
    v = bp.variants(s, random.Random(0))
    names = [x["variant"] for x in v]
    assert names[:2] == ["none", "gt"] and [f"shift_{d}" for d in bp.SHIFTS] == names[2:5]
    assert [x["dx"] for x in v if x["variant"].startswith("dx_")] == list(bp.OFFSETS)
    for x in v[2:5]:  # each shift moves the box by d px along one axis
        d = int(x["variant"].split("_")[1])
        assert sorted(abs(a - b) for a, b in zip(x["box"][:2], s["bbox"][:2])) == [0, d]


def test_cells_under_a_box():
    assert bp._cells_under((0, 0, 10, 10), 128, 128, 4, 4) == [0]
    assert bp._cells_under((30, 30, 70, 40), 128, 128, 4, 4) == [0, 1, 2, 4, 5, 6]


def test_step_statistics():
    gt = (10.0, 10.0, 50.0, 50.0)
    mk = lambda start, after: Trajectory("s", "refcocog", gt, 64, 64, [  # noqa: E731
        StepRecord("", start, 0.0, True), StepRecord("", after, 0.0, after is not None)])
    trajs = [mk(gt, gt), mk((14.0, 10.0, 54.0, 50.0), (12.0, 10.0, 52.0, 50.0)), mk(gt, None)]
    for t in trajs:
        t.steps[1].iou = 0.0 if t.steps[1].box is None else bx.iou(t.steps[1].box, gt)
    st = bp._step_stats(trajs, [gt] * 3)
    assert st["n"] == 3 and st["kept"] == pytest.approx(2 / 3)  # the shifted start moved 2 px: IoU 0.95, kept
    assert st["closer"] == pytest.approx(1 / 3) and st["cosine_move_vs_needed"] == pytest.approx(1.0)
    assert st["n_cosine"] == 1  # the ground-truth start needs no move: no direction to compare


@pytest.fixture(scope="module")
def base():
    from ivt_lib.core.models import load_model
    from ivt_lib.corpora.splits import load_split

    model, processor = load_model("data/base_model", device="cpu")
    model.eval()
    return model, processor, load_split("validation", limit=10)


def test_features_at_every_place_and_the_embedding_layer_is_the_merged_tokens(base):
    model, processor, samples = base
    f = bp.features(model, processor, samples)
    per_scene = 2 + len(bp.SHIFTS) + len(bp.OFFSETS)
    assert len(f["rows"]) == per_scene * len(samples)
    layers = model.config.text_config.num_hidden_layers
    assert {"vision", "merged", *(f"lm_{k}" for k in range(layers + 1))} <= set(f["features"])
    # the language model's input at the image positions is the merger's output: the features must agree
    np.testing.assert_allclose(f["features"]["lm_0"], f["features"]["merged"], atol=1e-5)
    none = [i for i, r in enumerate(f["rows"]) if r["variant"] == "none"]
    gt = [i for i, r in enumerate(f["rows"]) if r["variant"] == "gt"]
    assert not np.allclose(f["features"]["merged"][none], f["features"]["merged"][gt])  # the drawing reaches it
    res = bp.probe(f, folds=2)
    assert set(res["merged"]) == {"drawn", "offset", *(f"aligned_vs_{d}px" for d in bp.SHIFTS)}
    assert 0 <= res["merged"]["drawn"]["acc"] <= 1 and res["merged"]["drawn"]["n"] == 2 * len(samples)

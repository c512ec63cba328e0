"""Box-perception probes (ivt_lib.analysis.box_probe): the drawings, the features at each place, the probes."""
import random

import numpy as np
import pytest
import torch

from ivt_lib.analysis import box_probe as bp
from ivt_lib.analysis import box_probe_fit as fit
from ivt_lib.core import boxes as bx
from ivt_lib.core.feedback import (
    ViewSettings,
    refine_view,
    to_window,
    zoom_image,
    zoom_window,
)
from ivt_lib.core.loop import StepRecord, Trajectory
from ivt_lib.core.render import overlay_style


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
    assert f["cells"]["merged"] == 16 and f["features"]["vision"].shape[1] == 16 * f["features"]["vision/pooled"].shape[1]
    assert res["lm_0"]["same_as"] == "merged" and res["lm_0"]["drawn"] == res["merged"]["drawn"]  # not refitted
    assert res["merged"]["offset"]["ratio"] == pytest.approx(
        res["merged"]["offset"]["rmse"] / res["merged"]["offset"]["guess_rmse"])


def test_view_specs():
    assert bp.parse_view("overlay") == ViewSettings("overlay")
    assert bp.parse_view("zoom:0.25:256") == ViewSettings("zoom", 0.25, 256)
    assert bp.parse_view("zoom") == ViewSettings("zoom")
    assert bp.view_key(bp.parse_view("zoom:0.5:128")) == "zoom m0.5 s128" and bp.view_key(ViewSettings()) == "overlay"
    with pytest.raises(ValueError):
        bp.parse_view("crop:1")


def _scene():
    from PIL import Image

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))
    return {"image": img, "width": 128, "height": 128, "bbox": [40.0, 50.0, 72.0, 80.0], "expression": "the thing"}


def test_the_zoom_window_is_the_ground_truths_for_every_variant_and_only_the_drawing_differs():
    s, view, style = _scene(), ViewSettings("zoom", 0.5, 128), overlay_style("fill")
    vs = bp.variants(s, random.Random(0))
    msgs, images, boxes, sizes = bp.scene_inputs(s, vs, view, style)
    window = zoom_window(s["bbox"], 128, 128, 0.5)
    assert all(m == msgs[0] for m in msgs) and set(sizes) == {(window[2] - window[0],) * 2}
    assert set(boxes) == {to_window(s["bbox"], window)}  # pooled under the ground truth, in the window's frame
    for v, ims in zip(vs, images):
        assert len(ims) == 2
        assert np.array_equal(np.asarray(ims[1]), np.asarray(zoom_image(s["image"], v["box"], window, 128, style)))
    # the ground-truth variant is exactly what the loop shows a refine step from the ground truth
    ref = refine_view(s["image"], s["expression"], s["bbox"], 1, 2, view, style=style)
    assert ref.window == window and ref.messages == msgs[0]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(ref.images, images[1]))
    # none draws in neither image; a shifted box is drawn in the ground truth's window, not its own
    assert np.array_equal(np.asarray(images[0][0]), np.asarray(s["image"].convert("RGB")))
    assert np.array_equal(np.asarray(images[0][1]), np.asarray(zoom_image(s["image"], None, window, 128)))
    shift8 = next(v for v in vs if v["variant"] == "shift_8")
    assert zoom_window(shift8["box"], 128, 128, 0.5) != window
    # window_at="box" (as the loop): each variant's window is around its own box, so the box sits still in it
    msgs_b, images_b, boxes_b, _ = bp.scene_inputs(s, vs, view, style, window_at="box")
    assert msgs_b == msgs and len(set(boxes_b)) == 1
    own = zoom_window(shift8["box"], 128, 128, 0.5)
    j = vs.index(shift8)
    assert np.array_equal(np.asarray(images_b[j][1]), np.asarray(zoom_image(s["image"], shift8["box"], own, 128, style)))


def _planted(n_scenes=120, d=2048, signal=2.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n_scenes)
    z = rng.normal(size=(2 * n_scenes, 8)) * 3
    z[:, 2] = signal * (2 * y - 1) + rng.normal(size=len(y))
    X = z @ rng.normal(size=(8, d)) / 3 + rng.normal(size=(len(y), d))
    return X, y, np.repeat(np.arange(n_scenes), 2)


def test_the_regularized_grid_probe_finds_a_planted_signal_and_does_not_overfit_random_labels():
    X, y, g = _planted()
    assert fit.classify(X, y, g, kind="grid")["acc"] > 0.85
    assert fit.classify(X, y, g, kind="cell", n_cells=16)["acc"] > 0.85
    rng = np.random.default_rng(1)
    for seed in range(2):
        noise = rng.normal(size=X.shape)
        r = fit.classify(noise, rng.integers(0, 2, len(y)), g, kind="grid", seed=seed)
        assert r["ci"][0] <= 0.5 <= r["ci"][1], r  # chance, within its interval
        assert all(c["k"] <= 64 for c in r["chosen"])
    # offset: a planted linear target is read well below guessing; pure noise is not read (ratio about 1)
    t = X[:, :8] @ rng.normal(size=8)
    assert fit.regress(X, t, g)["ratio"] < 0.5
    assert 0.9 < fit.regress(rng.normal(size=X.shape), rng.normal(size=len(y)), g)["ratio"] < 1.2


def test_gram_pca_scores_equal_sklearn_pca():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 300)), rng.normal(size=(10, 300))
    za, zb = fit._centred_scores(a @ a.T, b @ a.T, 5)
    pca = PCA(5).fit(a)
    sign = np.sign((za * pca.transform(a)).sum(0))
    np.testing.assert_allclose(za * sign, pca.transform(a), atol=1e-8)
    np.testing.assert_allclose(zb * sign, pca.transform(b), atol=1e-8)


def test_zoom_features_are_the_window_images_own(base):
    model, processor, samples = base
    view = ViewSettings("zoom", 0.5, 128)
    f = bp.features(model, processor, samples[:2], view=view, places=["vision", "merged", "lm_2"])
    assert set(f["features"]) == {"vision", "merged", "lm_2", "vision/pooled", "merged/pooled", "lm_2/pooled"}
    vs = bp.variants(samples[0], random.Random("box-probe-0"))
    images = bp.scene_inputs(samples[0], vs, view, overlay_style("fill"), processor)[1]
    for j in (0, 1, 4):  # none, gt, shifted 4 px: the window image alone through the (frozen) vision tower
        enc = processor.image_processor(images=[images[j][1]], return_tensors="pt")
        with torch.no_grad():
            vis = model.model.get_image_features(enc["pixel_values"], enc["image_grid_thw"])
        np.testing.assert_allclose(f["features"]["merged"][j], vis.pooler_output[0].flatten().numpy(), atol=1e-4)
        np.testing.assert_allclose(f["features"]["vision"][j], vis.last_hidden_state.flatten().numpy(), atol=1e-4)
    # the language model's features are the window's positions (they differ from the overlay view's)
    g = bp.features(model, processor, samples[:1], places=["lm_2"])
    assert not np.allclose(g["features"]["lm_2"], f["features"]["lm_2"][:len(g["rows"])])


def test_the_closed_form_ridge_path_is_sklearns_ridge():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    a, b, y = rng.normal(size=(50, 20)), rng.normal(size=(7, 20)), rng.normal(size=50)
    mu = a.mean(0)
    path = fit._ridge_path(a - mu, y, b - mu)
    for j in (0, 8, 16):
        np.testing.assert_allclose(path[:, j], Ridge(alpha=fit.ALPHAS[j]).fit(a, y).predict(b), atol=1e-8)


def test_cli_add_merges_models_into_an_existing_results_file(tmp_path, monkeypatch):
    """--add keeps the other models (and views) of the file and nests the earlier provenance."""
    import json

    from ivt_lib.analysis import box_probe as bp
    from ivt_lib.corpora import splits

    monkeypatch.setattr(splits, "load_split", lambda *a, **k: [])
    monkeypatch.setattr(bp, "probe_model", lambda m, *a, **k: {"model": m, "view": k["view"].feedback})
    out = tmp_path / "box_probe.json"
    bp.main(["--model", "a", "--view", "overlay", "--out", str(out)])
    bp.main(["--model", "b", "--view", "zoom", "--out", str(out), "--add"])
    bp.main(["--model", "a", "--view", "zoom", "--out", str(out), "--add"])
    got = json.loads(out.read_text())
    assert set(got) == {"a", "b"} and set(got["a"]) == {"overlay", "zoom m0.5 s128"}
    side = json.loads((tmp_path / "box_probe.provenance.json").read_text())
    assert "earlier" in side and "earlier" in side["earlier"]
    bp.main(["--model", "c", "--out", str(out)])  # without --add: the file is replaced
    assert set(json.loads(out.read_text())) == {"c"}


def test_cli_labels_name_the_models_and_keep_signal_is_added(tmp_path, monkeypatch):
    """--label names each --model's entry (its path kept inside); --keep-signal adds the diagnostic; a label count
    that does not match the models is refused before anything runs."""
    import json

    from ivt_lib.analysis import box_probe as bp
    from ivt_lib.corpora import splits

    calls = []
    monkeypatch.setattr(splits, "load_split", lambda *a, **k: [])
    monkeypatch.setattr(bp, "probe_model", lambda m, *a, **k: calls.append(m) or {
        "view": k["view"].feedback, **({"keep_signal": {"model": m, "greedy_keep": 0.5}} if k["with_keep_signal"] else {})})
    out = tmp_path / "t.json"
    bp.main(["--model", "runs/x/merged", "--label", "SFT + IVT, overlay view, seed 0", "--keep-signal",
             "--out", str(out)])
    got = json.loads(out.read_text())
    r = got["SFT + IVT, overlay view, seed 0"]["overlay"]
    assert r["model"] == "runs/x/merged" and r["keep_signal"]["greedy_keep"] == 0.5
    with pytest.raises(SystemExit):
        bp.main(["--model", "a", "--model", "b", "--label", "only one", "--out", str(out)])
    assert calls == ["runs/x/merged"]


def test_the_keep_signal_on_the_probes_policy_equals_the_standalone_diagnostic(base):
    """probe_model reuses its loaded policy for the keep signal: the same numbers as keep_signal on the model folder."""
    from ivt_lib.analysis.keep_signal import keep_signal

    samples = base[2]
    r = bp.probe_model("data/base_model", samples, folds=2, places=["merged"], with_behaviour=False,
                       with_keep_signal=True)
    assert r["keep_signal"] == keep_signal("data/base_model", samples)
    assert "keep_signal" not in bp.probe_model("data/base_model", samples, folds=2, places=["merged"],
                                               with_behaviour=False)

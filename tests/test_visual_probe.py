"""Linear probes of the image tokens (ivt_lib.analysis.visual_probe)."""
import numpy as np
import pytest

from ivt_lib.analysis import visual_probe as vp


def _features(signal: float, n: int = 300, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 8))
    X[:, 0] += signal * y  # the attribute lives in one direction, with this much separation
    return {"features": {k: X for k in vp.STAGES}, "labels": {"colour": np.array(["a", "b", "c"])[y]}}


def test_decodability_separates_signal_from_noise():
    strong = vp.decodability(_features(6.0))["colour"]
    none = vp.decodability(_features(0.0))["colour"]
    assert strong["lm_token"] > 0.95
    assert none["lm_token"] < none["majority"] + 0.1
    assert strong["n_objects"] == 300 and 0.25 < strong["majority"] < 0.45


def test_single_valued_attribute_is_a_clear_error():
    f = _features(1.0)
    f["labels"]["colour"][:] = "a"
    with pytest.raises(ValueError, match="single value"):
        vp.decodability(f)


def test_object_features_one_row_per_object_at_every_stage(tiny, test_samples):
    model, processor = tiny
    out = vp.object_features(model, processor, test_samples[:5], batch_size=2)
    n = sum(len(s["objects"]) for s in test_samples[:5])
    assert set(out["features"]) == set(vp.STAGES)
    assert all(len(v) == n for v in out["features"].values()) and len(out["labels"]["colour"]) == n
    assert out["features"]["pixels"].shape == (n, 3)
    assert out["features"]["lm_token"].shape[1] == model.config.vision_config.out_hidden_size
    # the pixel stage of a single-object sample's cell is that object's colour mixed with the background only
    from ivt_lib.corpora.scenes import BACKGROUND, COLOURS
    s = test_samples[0]
    assert len(s["objects"]) == 1  # the committed test split's first sample
    px = out["features"]["pixels"][0]
    fg, bg = np.array(COLOURS[s["objects"][0]["colour"]]) / 255, np.array(BACKGROUND) / 255
    t = np.clip(np.dot(px - bg, fg - bg) / np.dot(fg - bg, fg - bg), 0, 1)
    assert t > 0.2 and np.allclose(px, bg + t * (fg - bg), atol=0.02)


def test_samples_without_objects_are_a_clear_error(tiny_dir, test_samples):
    real = [{k: v for k, v in s.items() if k != "objects"} for s in test_samples[:2]]  # like paper data
    with pytest.raises(ValueError, match="list their objects"):
        vp.probe_model(str(tiny_dir), real)
    with pytest.raises(ValueError, match="no samples"):
        vp.probe_model(str(tiny_dir), [])


def test_rows_one_per_base_and_attribute():
    rep = vp.decodability(_features(3.0))
    rows = vp.rows({"a": rep, "b": rep})
    assert [(r["base"], r["attribute"]) for r in rows] == [("a", "colour"), ("b", "colour")]
    assert set(rows[0]) == set(vp.COLUMNS) and rows[0]["lm_token"] == rep["colour"]["lm_token"]

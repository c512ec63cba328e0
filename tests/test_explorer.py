"""ivt_lib.analysis.explorer: the widget app driven from Python (no browser), on hand-built trajectories."""
import io
import json

import pytest
from PIL import Image

from ivt_lib.analysis.explorer import FILTERS, Explorer, save_static
from ivt_lib.core.loop import StepRecord, Trajectory

pytest.importorskip("ipywidgets")


def _traj(rec, ious, shifts):
    x1, y1, x2, y2 = rec["bbox"]
    steps = [StepRecord(text=f"answer {t} <&>", box=(x1 + dx, y1, x2 + dx, y2), iou=v, parse_ok=True)
             for t, (v, dx) in enumerate(zip(ious, shifts))]
    return Trajectory(rec["id"], rec["family"], tuple(rec["bbox"]), rec["image"].width, rec["image"].height, steps)


@pytest.fixture()
def setup(test_samples):
    recs = test_samples
    # config A (T=2): improved, degraded by 0.6, stays, degraded by 0.2
    a = [_traj(recs[0], [0.5, 0.7, 0.9], [-20, -10, 0]), _traj(recs[1], [0.9, 0.6, 0.3], [0, 10, 20]),
         _traj(recs[2], [0.6, 0.6, 0.6], [0, 0, 0]), _traj(recs[3], [0.8, 0.7, 0.6], [0, 5, 10])]
    # config B (T=1), all from the refadv family: nothing improves
    b = [_traj(recs[4], [0.7, 0.7], [0, 0]), _traj(recs[7], [0.6, 0.5], [0, 6]), _traj(recs[10], [0.9, 0.9], [0, 0])]
    assert {t.family for t in b} == {"refadv"}
    samples = {r["id"]: r for r in recs}
    return {"A": a, "B": b}, samples


@pytest.fixture()
def ex(setup):
    configs, samples = setup
    return Explorer(configs, samples, scale=2)


def _img(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


def test_empty_configs_raise(test_samples):
    with pytest.raises(ValueError, match="at least one configuration"):
        Explorer({}, {r["id"]: r for r in test_samples})


def test_initial_state(ex, setup, test_samples):
    configs, _ = setup
    assert ex.config.value == "A" and ex.filter.value == "all"
    assert list(ex.filter.options) == list(FILTERS) + ["family: refadv", "family: refcocog", "family: refl4"]
    assert ex.sample.max == 3 and ex.step.max == 2
    assert ex.current is configs["A"][0]
    assert "test-00000" in ex.title.value and test_samples[0]["expression"] in ex.title.value
    assert "step 0, IoU 0.500" in ex.title.value
    assert ex.image.value and ex.curve.value
    im = _img(ex.image.value)
    assert im.size == (2 * test_samples[0]["image"].width, 2 * test_samples[0]["image"].height)
    assert ex.text.value.count("<li") == 3 and "&lt;&amp;&gt;" in ex.text.value  # model text is escaped


def test_step_changes_image_curve_title_and_text(ex):
    img0, curve0, text0 = ex.image.value, ex.curve.value, ex.text.value
    ex.step.value = 1
    assert "step 1, IoU 0.700" in ex.title.value
    assert ex.image.value != img0  # the step-0 box is now drawn and the step-1 box outlined
    assert ex.curve.value != curve0  # the marker moved
    assert ex.text.value != text0
    assert '<li style="font-weight:bold">step 1 (IoU 0.70)' in ex.text.value
    assert '<li style="font-weight:bold">step 0' not in ex.text.value
    ex.step.value = 2
    assert "step 2, IoU 0.900" in ex.title.value


def test_sample_changes_title(ex, test_samples):
    ex.sample.value = 1
    assert "test-00001" in ex.title.value and test_samples[1]["expression"] in ex.title.value
    ex.sample.value = 3
    assert "test-00003" in ex.title.value


def test_config_change_updates_ranges(ex, setup):
    configs, _ = setup
    ex.step.value = 2
    ex.sample.value = 3
    ex.config.value = "B"
    assert ex.sample.max == 2 and ex.sample.value == 2  # clamped to the smaller configuration
    assert ex.step.max == 1 and ex.step.value == 1      # clamped to T=1
    assert ex.current is configs["B"][2]
    assert "test-00010" in ex.title.value and "step 1" in ex.title.value
    assert ex.text.value.count("<li") == 2


@pytest.mark.parametrize("flt,want", [
    ("all", [0, 1, 2, 3]),
    ("improved", [0]),
    ("degraded", [1, 3]),
    ("worst degradations", [1, 3, 2, 0]),
    ("family: refcocog", [0, 3]),
    ("family: refadv", [1]),
    ("family: refl4", [2]),
])
def test_filters_select_the_right_indices(ex, setup, flt, want):
    configs, _ = setup
    ex.filter.value = flt
    assert ex.indices() == want
    assert ex.sample.max == len(want) - 1
    seen = []
    for i in range(len(want)):
        ex.sample.value = i
        seen.append(ex.current.sample_id)
        assert ex.current.sample_id in ex.title.value
    assert seen == [configs["A"][i].sample_id for i in want]


def test_filter_change_clamps_sample(ex, setup):
    configs, _ = setup
    ex.sample.value = 3
    ex.filter.value = "degraded"
    assert ex.sample.value == 1 and ex.current is configs["A"][3]
    assert "test-00003" in ex.title.value


def test_empty_filter_shows_message(ex):
    ex.config.value = "B"
    ex.filter.value = "improved"
    assert ex.indices() == [] and ex.current is None
    assert "no sample matches" in ex.title.value and ex.text.value == ""
    assert ex.image.value == b"" and ex.curve.value == b"", "no stale picture of the previous sample"
    ex.step.value = 0  # nothing crashes while empty
    ex.sample.value = 0
    assert "no sample matches" in ex.title.value
    ex.filter.value = "family: refl4"  # a family with no member in B is empty too
    assert ex.indices() == [] and "no sample matches" in ex.title.value
    ex.filter.value = "degraded"
    assert ex.indices() == [1] and "test-00007" in ex.title.value


def test_save_static(ex, tmp_path):
    ex.step.value = 1
    p = save_static(ex, tmp_path / "view.png", params={"config": "A", "step": 1})
    assert p.exists()
    out = Image.open(p)
    img, curve = _img(ex.image.value), _img(ex.curve.value)
    assert out.format == "PNG"
    assert out.size == (img.width + curve.width + 10, max(img.height, curve.height))
    prov = json.loads((tmp_path / "view.provenance.json").read_text())
    assert prov["params"] == {"config": "A", "step": 1} and "git_sha" in prov

"""Tests for ivt_lib.corpora.splits: the committed synthetic splits, their reproduction from the seed, and checked loading."""
import io
import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from ivt_lib.corpora import splits
from ivt_lib.corpora.records import iter_split
from ivt_lib.corpora.scenes import FAMILIES, generate_scene

SEED, CANVAS = 0, 128  # how data/scenes was built (`python -m ivt_lib.corpora.splits`)
EXPECTED_SIZES = {"train": 2400, "validation": 510, "test": 505}
N_CHECK = 60  # indices per split compared pixel for pixel


@pytest.fixture(scope="module")
def committed():
    from datasets import load_from_disk

    if not splits.DEFAULT_DIR.exists():
        pytest.fail(f"committed splits missing at {splits.DEFAULT_DIR}; build with `python -m ivt_lib.corpora.splits`")
    return load_from_disk(str(splits.DEFAULT_DIR))


def _sample_indices(n, k=N_CHECK):
    """k indices spread over [0, n), always including the first and the last, plus a few seeded random ones."""
    idx = set(np.linspace(0, n - 1, k - 10).round().astype(int).tolist())
    idx |= set(random.Random(n).sample(range(n), 10))
    return sorted(idx)


def _regenerate(split, i, seed=SEED, canvas=CANVAS):
    """Sample i of a split exactly as iter_split builds it, without generating samples 0..i-1."""
    rng = random.Random(f"{seed}-{split}-{i}")
    return generate_scene(rng, FAMILIES[i % len(FAMILIES)], canvas)


def test_regenerate_helper_agrees_with_iter_split():
    """The shortcut used below is iter_split's own recipe (checked on the first samples)."""
    for i, rec in enumerate(iter_split("validation", 6, SEED, CANVAS)):
        s = _regenerate("validation", i)
        assert np.asarray(s.image).tobytes() == np.asarray(rec["image"]).tobytes()
        assert (s.expression, [float(v) for v in s.bbox]) == (rec["expression"], rec["bbox"])


# ---------------------------------------------------------------------------------------------------------------
# The committed splits
# ---------------------------------------------------------------------------------------------------------------


def test_committed_split_sizes(committed):
    assert splits.SPLITS == EXPECTED_SIZES
    assert {k: len(v) for k, v in committed.items()} == EXPECTED_SIZES


def test_committed_schema_matches_features(committed):
    for split, ds in committed.items():
        assert ds.features == splits.features(), split


@pytest.mark.parametrize("split", list(EXPECTED_SIZES))
def test_committed_families_balanced(committed, split):
    fam = committed[split]["family"]
    n = len(fam)
    counts = Counter(fam)
    assert set(counts) == set(FAMILIES)
    for f in FAMILIES:
        assert abs(counts[f] - n / 3) <= 1, counts
    assert fam == [FAMILIES[i % 3] for i in range(n)]  # round-robin order


@pytest.mark.parametrize("split", list(EXPECTED_SIZES))
def test_committed_ids_and_constants(committed, split):
    ds = committed[split]
    n = len(ds)
    assert ds["id"] == [f"{split}-{i:05d}" for i in range(n)]
    assert set(ds["source"]) == {"synthetic"}
    assert set(ds["width"]) == {CANVAS} and set(ds["height"]) == {CANVAS}


@pytest.mark.parametrize("split", list(EXPECTED_SIZES))
def test_generator_reproduces_committed_split_pixel_for_pixel(committed, split):
    ds = committed[split]
    idx = _sample_indices(len(ds))
    assert len(idx) >= 50 and idx[0] == 0 and idx[-1] == len(ds) - 1
    for i in idx:
        rec = ds[i]
        s = _regenerate(split, i)
        assert rec["id"] == f"{split}-{i:05d}"
        img = rec["image"].convert("RGB")
        assert img.size == s.image.size
        assert np.asarray(img).tobytes() == np.asarray(s.image).tobytes(), f"{split}[{i}] pixels differ"
        assert rec["expression"] == s.expression, f"{split}[{i}]"
        assert rec["bbox"] == [float(v) for v in s.bbox], f"{split}[{i}]"  # integer pixels: exact in float32
        assert rec["family"] == s.family and rec["target"] == s.target
        assert [o["box"] for o in rec["objects"]] == [list(o.box) for o in s.objects]


def test_committed_splits_do_not_share_images(committed):
    """Different split names give different seeds: no test image is a copy of a sampled train image."""
    train = {np.asarray(committed["train"][i]["image"].convert("RGB")).tobytes() for i in range(0, 2400, 8)}
    test = [np.asarray(committed["test"][i]["image"].convert("RGB")).tobytes() for i in range(0, 505, 5)]
    assert not any(t in train for t in test)


def test_load_split_reads_and_validates_committed_test():
    recs = splits.load_split("test")
    assert len(recs) == EXPECTED_SIZES["test"]
    r = recs[0]
    assert isinstance(r["image"], Image.Image) and r["image"].mode == "RGB" and r["image"].size == (CANVAS, CANVAS)
    assert all(type(v) is float for v in r["bbox"])
    assert len(splits.load_split("train", limit=7)) == 7
    assert len(splits.load_split("validation", limit=10_000)) == EXPECTED_SIZES["validation"]


# ---------------------------------------------------------------------------------------------------------------
# build_splits / load_split on a tmp dir
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "tiny"
    dd = splits.build_splits(out, seed=5, canvas=CANVAS, sizes={"train": 6, "validation": 3, "test": 4})
    return out, dd


def test_build_splits_writes_a_loadable_dataset(tiny_dir):
    out, dd = tiny_dir
    assert out.is_dir() and (out / "dataset_dict.json").exists()
    assert not out.with_name(out.name + ".tmp").exists()
    assert {k: len(v) for k, v in dd.items()} == {"train": 6, "validation": 3, "test": 4}
    recs = splits.load_split("train", out)
    expected = list(iter_split("train", 6, 5, CANVAS))
    assert [r["id"] for r in recs] == [e["id"] for e in expected]
    for r, e in zip(recs, expected):
        assert np.asarray(r["image"]).tobytes() == np.asarray(e["image"]).tobytes()
        assert (r["expression"], r["bbox"], r["family"]) == (e["expression"], e["bbox"], e["family"])
    assert len(splits.load_split("test", out, limit=2)) == 2


def test_build_splits_overwrites_existing(tmp_path):
    out = tmp_path / "s"
    splits.build_splits(out, seed=1, sizes={"test": 3})
    splits.build_splits(out, seed=2, sizes={"test": 2})
    recs = splits.load_split("test", out)
    assert len(recs) == 2
    assert recs[0]["expression"] == next(iter(iter_split("test", 1, 2)))["expression"]
    with pytest.raises(KeyError):
        splits.load_split("train", out)


def test_load_split_missing_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as ei:
        splits.load_split("test", missing)
    assert str(missing) in str(ei.value)


def test_load_split_unknown_split(tiny_dir):
    out, _ = tiny_dir
    with pytest.raises(KeyError, match="tset"):
        splits.load_split("tset", out)


def test_load_split_empty_split(tmp_path):
    from datasets import Dataset, DatasetDict

    f = splits.features()
    empty = Dataset.from_dict({k: [] for k in f}, features=f)
    # one (empty) shard: datasets cannot load back a 0-shard split, which would fail before load_split's check
    DatasetDict({"test": empty}).save_to_disk(str(tmp_path / "e"), num_shards={"test": 1})
    with pytest.raises(ValueError, match="empty"):
        splits.load_split("test", tmp_path / "e")


def test_load_split_limit_zero_is_empty(tiny_dir):
    out, _ = tiny_dir
    with pytest.raises(ValueError, match="empty"):
        splits.load_split("test", out, limit=0)


# ---------------------------------------------------------------------------------------------------------------
# validate_records
# ---------------------------------------------------------------------------------------------------------------


def _png_bytes(size=(32, 32)):
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _row(sid="s-1", image=None, bbox=(2.0, 3.0, 20.0, 30.0)):
    return {"id": sid, "image": {"bytes": _png_bytes(), "path": None} if image is None else image,
            "bbox": list(bbox) if bbox is not None else None}


def test_validate_records_decodes_good_rows():
    out = splits.validate_records([_row("a"), _row("b", image=Image.new("L", (32, 32)))])
    assert [r["id"] for r in out] == ["a", "b"]
    assert all(r["image"].mode == "RGB" and r["image"].size == (32, 32) for r in out)
    assert out[0]["bbox"] == [2.0, 3.0, 20.0, 30.0]


@pytest.mark.parametrize("payload", [b"not an image at all", b"", _png_bytes()[:40]],
                         ids=["garbage", "empty-bytes", "truncated-png"])
def test_validate_records_corrupt_image_names_sample(payload):
    rows = [_row("ok-0"), _row("bad-sample-17", image={"bytes": payload, "path": None})]
    with pytest.raises(ValueError, match="bad-sample-17"):
        splits.validate_records(rows, name="test")


@pytest.mark.parametrize("image", [None, {"bytes": None, "path": None}], ids=["none", "no-bytes-no-path"])
def test_validate_records_missing_image_names_sample(image):
    row = _row("missing-img-3")
    row["image"] = image
    with pytest.raises(ValueError, match="missing-img-3"):
        splits.validate_records([row])


@pytest.mark.parametrize("bbox", [
    (float("nan"), 1.0, 5.0, 5.0), (1.0, 1.0, float("inf"), 5.0), (1.0, 2.0, 3.0), None, (None, 1.0, 5.0, 5.0),
    ("a", "b", "c", "d"),
], ids=["nan", "inf", "three", "none", "none-coord", "strings"])
def test_validate_records_bad_bbox_names_sample(bbox):
    with pytest.raises(ValueError, match="sample 'box-9'"):
        splits.validate_records([_row("ok"), _row("box-9", bbox=bbox)])


@pytest.mark.parametrize("bbox", [(0, 0, 500, 500), (20, 3, 2, 30), (2, 3, 2, 30), (-5, 0, 10, 10)],
                         ids=["outside", "swapped", "zero-width", "negative"])
def test_validate_records_bbox_outside_image_names_sample(bbox):
    with pytest.raises(ValueError, match="sample 'box-2'"):
        splits.validate_records([_row("box-2", bbox=bbox)])


@pytest.mark.parametrize("expression", ["", "x" * 1001], ids=["empty", "too-long"])
def test_validate_records_unaskable_expression_names_sample(expression):
    with pytest.raises(ValueError, match="sample 'expr-4': expression is"):
        splits.validate_records([{**_row("ok"), "expression": "the blue circle"},
                                 {**_row("expr-4"), "expression": expression}])


def test_validate_records_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        splits.validate_records([], name="nothing")


def test_image_cap_rescales_image_and_boxes():
    from PIL import Image

    from ivt_lib.corpora.splits import cap_image

    rec = {"id": "big", "image": Image.new("RGB", (640, 480)), "bbox": [64.0, 48.0, 320.0, 240.0], "width": 640,
           "height": 480, "objects": [{"shape": "s", "colour": "c", "size": "", "box": [0.0, 0.0, 640.0, 480.0]}]}
    out = cap_image(rec, 160 * 120)
    assert out["image"].size == (160, 120) and (out["width"], out["height"]) == (160, 120)
    assert out["bbox"] == pytest.approx([16.0, 12.0, 80.0, 60.0])
    assert out["objects"][0]["box"] == pytest.approx([0.0, 0.0, 160.0, 120.0])
    assert cap_image(rec, 640 * 480) is rec  # small enough: untouched
    small = splits.load_split("test", limit=2, max_pixels=64 * 64)
    assert all(r["image"].width * r["image"].height <= 64 * 64 for r in small)

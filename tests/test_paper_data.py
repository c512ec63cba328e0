"""Tests for ivt_lib.corpora.paper_data and ivt_lib.corpora.paper_benchmark on small fixture files with the real datasets' columns, built in tmp_path.

Each fixture mirrors what `hf download <id> --repo-type dataset --local-dir DIR` gives: the same file layout, the
README ``configs`` that name the splits, and the same columns and types (images as the ``datasets`` Image feature).
The loaders read them through the same ``datasets.load_dataset`` path as the hub. No network is used.
"""
import io
import json
import logging
import tarfile

import pytest
from PIL import Image

from ivt_lib.core import boxes
from ivt_lib.corpora import paper_benchmark, paper_data
from ivt_lib.configs import NOTEBOOK_CONFIGS, load_tier
from ivt_lib.corpora.splits import features, load_split
from ivt_lib.corpora.paper_benchmark import build_mixed_benchmark, load_by_ids, save_benchmark
from ivt_lib.corpora.paper_data import REFADV_ID, REFCOCOG_ID, REFL4_ID, dataset_to_xyxy, load_refadv, load_refcocog, load_refl4


def xyxy_to_dataset(box, fmt: str):
    """The inverse of ``dataset_to_xyxy``, to write fixture boxes in a dataset's format."""
    return boxes.xyxy_to_xywh(box) if fmt == "xywh" else dataset_to_xyxy(box, fmt)

N = 12  # rows per fixture split
SIZES = {"train": 9, "validation": 6, "test": 7}  # 3/3/3, 2/2/2, 2/2/3 per source


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """Never touch the network or the user's datasets cache."""
    import datasets
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_cache"))


def _img(w: int, h: int, i: int, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), ((37 * i) % 256, (91 * i) % 256, 120)).save(buf, format=fmt)
    return buf.getvalue()


def _size(i: int) -> tuple[int, int]:
    return (64 + 8 * (i % 3), 48 + 4 * (i % 2))


def _parquet(path, cols: dict, feats: dict) -> None:
    from datasets import Dataset, Features

    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(cols, features=Features(feats)).to_parquet(str(path))


def _readme(folder, configs: str) -> None:
    (folder / "README.md").write_text(f"---\nconfigs:\n{configs}---\n\n# fixture\n")


def write_refcocog(folder, n: int = N):
    """lmms-lab/RefCOCOg layout: data/{val,test}-*.parquet, columns and types from the dataset card."""
    from datasets import Image as HFImage, List, Value

    feats = {"question_id": Value("string"), "image": HFImage(), "question": Value("string"),
             "answer": List(Value("string")), "segmentation": List(Value("float32")), "bbox": List(Value("float32")),
             "iscrowd": Value("int8"), "file_name": Value("string")}
    for split in ("val", "test"):
        rows = {k: [] for k in feats}
        for i in range(n):
            w, h = _size(i)
            rows["question_id"].append(f"q{i:04d}")
            rows["image"].append({"bytes": _img(w, h, i), "path": f"COCO_train2014_{i:012d}.jpg"})
            rows["question"].append("Please provide the bounding box coordinate of the region this sentence "
                                    "describes: ")
            rows["answer"].append([f"the object number {i}", f"thing {i}"])
            rows["segmentation"].append([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            rows["bbox"].append([2.0 + i, 3.0, 10.0, 20.0])  # xywh
            rows["iscrowd"].append(0)
            rows["file_name"].append(f"COCO_train2014_{i:012d}.jpg")
        if split == "val":  # one box sticking out of its image (clipped), one of zero width (dropped)
            rows["bbox"][1] = [60.0, 40.0, 30.0, 30.0]
            rows["bbox"][2] = [5.0, 5.0, 0.0, 10.0]
        _parquet(folder / "data" / f"{split}-00000-of-00001.parquet", rows, feats)
    _readme(folder, "- config_name: default\n  data_files:\n  - split: val\n    path: data/val-*\n"
                    "  - split: test\n    path: data/test-*\n")
    return folder


def write_refl4(folder, n: int = N):
    """JierunChen/Ref-L4 layout: ref-l4-{val,test}.parquet (no images) + images.tar.gz with members = file_name."""
    from datasets import List, Value

    feats = {"id": Value("string"), "caption": Value("string"), "bbox": List(Value("float64")),
             "bbox_area": Value("float64"), "bbox_id": Value("string"), "ori_category_id": Value("string"),
             "image_id": Value("string"), "height": Value("int64"), "width": Value("int64"),
             "file_name": Value("string"), "is_rewrite": Value("bool"), "split": Value("string")}
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "images.tar.gz", "w:gz") as tar:
        for s, split in enumerate(("val", "test")):
            rows = {k: [] for k in feats}
            for i in range(n):
                w, h = _size(i)
                name = f"{'o365' if i % 2 else 'coco'}/img_{split}_{i:05d}.jpg"
                data = _img(w, h, i, "JPEG")
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                rows["id"].append(f"{s * n + i:06d}")
                rows["caption"].append(f"a long description of object {i} " * 3)
                rows["bbox"].append([4.0, 6.0 + i, 12.0, 8.0])  # xywh
                rows["bbox_area"].append(96.0)
                rows["bbox_id"].append(f"b{i}")
                rows["ori_category_id"].append(f"o365_{i}")
                rows["image_id"].append(f"im{i}")
                rows["height"].append(h)
                rows["width"].append(w)
                rows["file_name"].append(name)
                rows["is_rewrite"].append(bool(i % 2))
                rows["split"].append(split)
            _parquet(folder / f"ref-l4-{split}.parquet", rows, feats)
    _readme(folder, "- config_name: ref_l4\n  data_files:\n  - split: val\n    path: ref-l4-val.parquet\n"
                    "  - split: test\n    path: ref-l4-test.parquet\n")
    return folder


def write_refadv(folder, n: int = N):
    """dddraxxx/ref-adv-s layout: data/train-*.parquet, images embedded, ``solution`` = xyxy pixels."""
    from datasets import Image as HFImage, List, Value

    feats = {"image": HFImage(), "file_name": Value("string"), "normal_caption": Value("string"),
             "solution": List(Value("float64")), "width": Value("int64"), "height": Value("int64"),
             "image_source": Value("string"), "human_authored": Value("bool"), "use_negation": Value("bool"),
             "distractors": Value("string")}
    rows = {k: [] for k in feats}
    for i in range(n):
        w, h = _size(i)
        stored = (w // 2, h // 2) if i == 0 else (w, h)  # row 0: image stored at half the annotated size
        rows["image"].append({"bytes": _img(*stored, i), "path": None})
        rows["file_name"].append(f"adv_{i}.jpg")
        rows["normal_caption"].append(f"the cup that is not left of the plate {i}")
        rows["solution"].append([8.0, 4.0, 40.0 + i, 30.0])  # xyxy
        rows["width"].append(w)
        rows["height"].append(h)
        rows["image_source"].append("COCO" if i % 2 else "OpenImages")
        rows["human_authored"].append(bool(i % 3))
        rows["use_negation"].append(bool(i % 4 == 0))
        rows["distractors"].append(json.dumps(list(range(2 + i % 3))))
    _parquet(folder / "data" / "train-00000-of-00001.parquet", rows, feats)
    _readme(folder, "- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n")
    return folder


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_src")
    return {"refcocog": write_refcocog(root / "RefCOCOg"), "refl4": write_refl4(root / "Ref-L4"),
            "refadv": write_refadv(root / "ref-adv-s")}


@pytest.fixture(scope="module")
def sources(fixture_dirs, tmp_path_factory):
    import datasets
    import huggingface_hub.constants as hc

    mp = pytest.MonkeyPatch()  # the autouse fixture is function-scoped; keep this module fixture offline too
    mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    mp.setattr(hc, "HF_HUB_OFFLINE", True)
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_cache_mod"))
    try:
        return {"refcocog": load_refcocog(fixture_dirs["refcocog"], "val"),
                "refl4": load_refl4(fixture_dirs["refl4"], "val"),
                "refadv": load_refadv(fixture_dirs["refadv"], "train")}
    finally:
        mp.undo()


# ------------------------------------------------------------------------------------------------------------------
# Loaders: the normalised schema and the box conversion
# ------------------------------------------------------------------------------------------------------------------

def _check_schema(recs, family, hub_id):
    assert recs
    for r in recs:
        assert set(r) == set(features())
        assert r["family"] == family and r["source"] == hub_id
        assert r["objects"] == [] and r["target"] == -1
        assert r["id"].startswith(f"{family}:") and r["expression"]
        x1, y1, x2, y2 = r["bbox"]
        assert 0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"]
    assert len({r["id"] for r in recs}) == len(recs)
    from ivt_lib.corpora.splits import validate_records

    decoded = validate_records(recs, name=family)  # the same check load_split applies
    assert all(d["image"].size == (r["width"], r["height"]) for d, r in zip(decoded, recs))


def test_refcocog_schema_and_xywh_to_xyxy(sources, caplog, fixture_dirs):
    recs = sources["refcocog"]
    _check_schema(recs, "refcocog", REFCOCOG_ID)
    assert len(recs) == N - 1  # the zero-width box is dropped
    by_id = {r["id"]: r for r in recs}
    r0 = by_id["refcocog:val:q0000"]
    assert r0["bbox"] == [2.0, 3.0, 12.0, 23.0] and r0["expression"] == "the object number 0"
    assert by_id["refcocog:val:q0001"]["bbox"] == [60.0, 40.0, 72.0, 52.0]  # clipped to the 72x52 image
    with caplog.at_level(logging.WARNING, logger="ivt_lib.corpora.paper_data"):
        again = load_refcocog(fixture_dirs["refcocog"], "val", limit=4)
    assert len(again) == 3 and "dropped 1 samples" in caplog.text


def test_refcocog_all_expressions_and_test_split(fixture_dirs):
    recs = load_refcocog(fixture_dirs["refcocog"], "val", limit=1, all_expressions=True)
    assert [r["id"] for r in recs] == ["refcocog:val:q0000:0", "refcocog:val:q0000:1"]
    assert [r["expression"] for r in recs] == ["the object number 0", "thing 0"]
    assert load_refcocog(fixture_dirs["refcocog"], "test", limit=2)[0]["id"] == "refcocog:test:q0000"


def test_refl4_schema_tar_extraction_and_licence_warning(sources, fixture_dirs, caplog):
    recs = sources["refl4"]
    _check_schema(recs, "refl4", REFL4_ID)
    assert len(recs) == N
    r3 = next(r for r in recs if r["id"] == "refl4:val:000003")
    assert r3["bbox"] == [4.0, 9.0, 16.0, 17.0]  # xywh [4, 9, 12, 8]
    assert (fixture_dirs["refl4"] / "images" / "o365" / "img_val_00003.jpg").exists()  # extracted from the tar
    with caplog.at_level(logging.WARNING, logger="ivt_lib.corpora.paper_data"):
        load_refl4(fixture_dirs["refl4"] / "ref-l4-test.parquet", "test", limit=2,
                   images=fixture_dirs["refl4"] / "images.tar.gz")
    assert "CC BY-NC 4.0" in caplog.text and "non-commercial" in caplog.text
    assert "CC BY-NC 4.0" in load_refl4.__doc__


def test_refl4_from_parquet_file_and_image_folder(fixture_dirs, tmp_path):
    extracted = tmp_path / "imgs"
    with tarfile.open(fixture_dirs["refl4"] / "images.tar.gz") as tar:
        tar.extractall(extracted, filter="data")
    recs = load_refl4([fixture_dirs["refl4"] / "ref-l4-val.parquet"], "val", limit=3, images=extracted)
    assert [r["id"] for r in recs] == ["refl4:val:000000", "refl4:val:000001", "refl4:val:000002"]
    assert all(r["image"]["path"].startswith(str(extracted)) for r in recs)
    with pytest.raises(FileNotFoundError, match="Ref-L4 images not found"):
        load_refl4(fixture_dirs["refl4"] / "ref-l4-val.parquet", "val", limit=2, images=tmp_path / "nothing")


def test_refadv_schema_xyxy_and_resized_image(sources):
    recs = sources["refadv"]
    _check_schema(recs, "refadv", REFADV_ID)
    by_id = {r["id"]: r for r in recs}
    assert by_id["refadv:train:1"]["bbox"] == [8.0, 4.0, 41.0, 30.0]  # already xyxy
    r0 = by_id["refadv:train:0"]  # stored at 32x24, annotated for 64x48: the box is scaled onto the stored image
    assert (r0["width"], r0["height"]) == (32, 24) and r0["bbox"] == [4.0, 2.0, 20.0, 15.0]


def test_local_path_that_does_not_exist_is_a_file_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such local dataset path"):
        load_refadv(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------------------------
# Offline: a clear error that says how to fetch the data elsewhere
# ------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loader,hub_id", [(load_refcocog, REFCOCOG_ID), (load_refl4, REFL4_ID),
                                           (load_refadv, REFADV_ID)])
def test_unreachable_hub_raises_clear_runtime_error(monkeypatch, loader, hub_id):
    import datasets

    def no_network(*a, **k):
        raise ConnectionError(f"Couldn't reach '{hub_id}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises(RuntimeError) as ei:
        loader()
    msg = str(ei.value)
    assert hub_id in msg and f"hf download {hub_id} --repo-type dataset --local-dir" in msg and "path_or_id" in msg
    assert isinstance(ei.value.__cause__, ConnectionError)


def test_offline_mode_on_unknown_hub_id_raises_clear_runtime_error():
    with pytest.raises(RuntimeError, match="hf download nobody-ivt/no-such-dataset --repo-type dataset"):
        paper_data.load_raw("nobody-ivt/no-such-dataset", "val", "nobody-ivt/no-such-dataset")


def test_other_errors_are_not_disguised_as_offline(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad split")))
    with pytest.raises(ValueError, match="bad split"):
        load_refadv()


# ------------------------------------------------------------------------------------------------------------------
# Coordinate adapters: dataset <-> ivt xyxy <-> Qwen3-VL 0..1000 <-> Qwen2.5-VL resized pixels
# ------------------------------------------------------------------------------------------------------------------

def test_dataset_formats_round_trip():
    assert dataset_to_xyxy([10, 20, 30, 40], "xywh") == (10.0, 20.0, 40.0, 60.0)
    assert dataset_to_xyxy([10, 20, 30, 40], "xyxy") == (10.0, 20.0, 30.0, 40.0)
    for fmt in ("xywh", "xyxy"):
        assert xyxy_to_dataset(dataset_to_xyxy([10.5, 2, 7, 9], fmt), fmt) == (10.5, 2.0, 7.0, 9.0)
    with pytest.raises(ValueError, match="unknown dataset box format"):
        dataset_to_xyxy([0, 0, 1, 1], "cxcywh")


qwen25_resized_size = boxes.qwen25_resized_size


def to_model(box, w, h, fmt="qwen3", **resize):
    return boxes.to_model_frame(box, w, h, fmt, boxes.qwen25_resized_size(w, h, **resize) if fmt == "qwen25" else None)


def from_model(box, w, h, fmt="qwen3", **resize):
    return boxes.from_model_frame(box, w, h, fmt, boxes.qwen25_resized_size(w, h, **resize) if fmt == "qwen25" else None)


@pytest.mark.parametrize("w,h,max_pixels", [(640, 480, 128 * 28 * 28), (30, 20, 12845056), (1000, 700, 12845056)])
def test_qwen25_resized_size_matches_the_qwen2vl_processor(w, h, max_pixels):
    from transformers import Qwen2VLImageProcessor

    proc = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=max_pixels)
    _, gh, gw = proc(images=[Image.new("RGB", (w, h))], return_tensors="pt")["image_grid_thw"][0].tolist()
    assert qwen25_resized_size(w, h, max_pixels=max_pixels) == (gw * 14, gh * 14)
    rw, rh = qwen25_resized_size(w, h, max_pixels=max_pixels)
    assert rw % 28 == 0 and rh % 28 == 0


@pytest.mark.parametrize("w,h", [(640, 480), (1000, 700), (4032, 3024), (30, 20), (333, 1000)])
def test_model_frames_round_trip(w, h):
    xywh = (0.11 * w, 0.23 * h, 0.41 * w, 0.5 * h)
    xyxy = dataset_to_xyxy(xywh, "xywh")
    q3 = to_model(xyxy, w, h, "qwen3")
    assert all(0 <= v <= 1000 for v in q3)
    assert q3 == boxes.to_model_frame(xyxy, w, h, "qwen3")
    back3 = from_model(q3, w, h, "qwen3")
    assert max(abs(a - b) for a, b in zip(back3, xyxy)) <= 0.5 * max(w, h) / 1000 + 1e-9
    rw, rh = qwen25_resized_size(w, h)
    q25 = to_model(xyxy, w, h, "qwen25")
    assert q25 == boxes.to_model_frame(xyxy, w, h, "qwen25", resized=(rw, rh))
    assert all(0 <= v <= max(rw, rh) for v in q25)
    back25 = from_model(q25, w, h, "qwen25")
    assert max(abs(a - b) for a, b in zip(back25, xyxy)) <= 0.5 * max(w / rw, h / rh) + 1e-9
    assert xyxy_to_dataset(back25, "xywh") == pytest.approx(xywh, abs=max(w / rw, h / rh))


def test_qwen25_frame_on_a_resized_image_points_at_the_same_pixels():
    w, h = 640, 480
    rw, rh = qwen25_resized_size(w, h, max_pixels=128 * 28 * 28)  # downscaled to (364, 252)
    assert (rw, rh) == (364, 252)
    q25 = to_model((64, 48, 320, 240), w, h, "qwen25", max_pixels=128 * 28 * 28)
    assert q25 == (round(64 * rw / w), round(48 * rh / h), round(320 * rw / w), round(240 * rh / h))
    assert from_model(q25, w, h, "qwen25", max_pixels=128 * 28 * 28) == pytest.approx((64, 48, 320, 240), abs=1.0)


# ------------------------------------------------------------------------------------------------------------------
# The mixed benchmark: balance, disjointness, determinism, the ID file, saving
# ------------------------------------------------------------------------------------------------------------------

def _fake(name: str, n: int) -> list[dict]:
    return [{"id": f"{name}:s:{i}", "family": name} for i in range(n)]


def test_paper_sizes_balance_exactly():
    srcs = {"refcocog": _fake("refcocog", 7573), "refl4": _fake("refl4", 15000), "refadv": _fake("refadv", 1142)}
    splits = build_mixed_benchmark(srcs, seed=0)
    assert {s: len(v) for s, v in splits.items()} == {"train": 2400, "validation": 510, "test": 505}
    count = lambda s, f: sum(r["family"] == f for r in splits[s])  # noqa: E731
    assert [count("train", f) for f in ("refadv", "refcocog", "refl4")] == [800, 800, 800]
    assert [count("validation", f) for f in ("refadv", "refcocog", "refl4")] == [170, 170, 170]
    assert sorted(count("test", f) for f in ("refadv", "refcocog", "refl4")) == [168, 168, 169]


def test_builder_balance_disjointness_determinism(sources, tmp_path):
    a = build_mixed_benchmark(sources, SIZES, seed=3, ids_path=tmp_path / "a.json")
    for s, n in SIZES.items():
        assert len(a[s]) == n
        fam = sorted(sum(r["family"] == f for r in a[s]) for f in sources)
        assert fam[-1] - fam[0] <= 1, (s, fam)
    ids = [r["id"] for recs in a.values() for r in recs]
    assert len(ids) == len(set(ids))  # no sample in two splits
    b = build_mixed_benchmark({k: list(reversed(v)) for k, v in sources.items()}, SIZES, seed=3,
                              ids_path=tmp_path / "b.json")
    assert {s: [r["id"] for r in v] for s, v in a.items()} == {s: [r["id"] for r in v] for s, v in b.items()}
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    c = build_mixed_benchmark(sources, SIZES, seed=4)
    assert {s: [r["id"] for r in v] for s, v in a.items()} != {s: [r["id"] for r in v] for s, v in c.items()}


def test_builder_refuses_too_small_source_and_duplicate_ids(sources):
    with pytest.raises(ValueError, match=r"source 'refadv' has 12 samples; the splits .* need 13 from it"):
        build_mixed_benchmark(sources, {"train": 33, "validation": 3, "test": 3})
    with pytest.raises(ValueError, match="duplicate sample ids"):
        build_mixed_benchmark({**sources, "refadv": sources["refadv"] * 2}, SIZES)


def test_id_file_round_trip(sources, tmp_path):
    ids_path = tmp_path / "ids.json"
    splits = build_mixed_benchmark(sources, SIZES, seed=1, ids_path=ids_path)
    spec = json.loads(ids_path.read_text())
    assert spec["seed"] == 1 and spec["sources"] == {"refadv": REFADV_ID, "refcocog": REFCOCOG_ID, "refl4": REFL4_ID}
    assert spec["counts"]["test"] == {"refadv": 2, "refcocog": 2, "refl4": 3}
    again = load_by_ids(ids_path, {k: list(reversed(v)) for k, v in sources.items()})
    assert {s: [r["id"] for r in v] for s, v in again.items()} == spec["splits"]
    assert all(a is b or a == b for s in splits for a, b in zip(splits[s], again[s]))
    with pytest.raises(KeyError, match="not in the loaded sources"):
        load_by_ids(ids_path, {"refcocog": sources["refcocog"]})


@pytest.fixture(scope="module")
def saved_benchmark(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "paper_benchmark"
    splits = build_mixed_benchmark(sources, SIZES, seed=0)
    save_benchmark(splits, out)
    return out, splits


def test_load_split_reads_the_saved_benchmark(saved_benchmark):
    out, splits = saved_benchmark
    for s, recs in splits.items():
        got = load_split(s, out)
        assert [g["id"] for g in got] == [r["id"] for r in recs]
        for g, r in zip(got, recs):
            assert g["bbox"] == pytest.approx(r["bbox"], abs=1e-4) and g["family"] == r["family"]
            assert g["image"].size == (g["width"], g["height"]) and g["source"] == paper_data.FAMILIES[g["family"]]
    assert json.loads((out / "ids.json").read_text())["splits"] == {s: [r["id"] for r in v] for s, v in splits.items()}


def test_paper_tier_validates_once_its_dataset_exists(saved_benchmark):
    """Switching tiers changes parameters, not code: every paper.yaml section validates on a real benchmark folder."""
    out, _ = saved_benchmark
    params = load_tier("paper")
    assert params and all(section["dataset"] == "data/paper_benchmark" for section in params.values())
    for nb, section in params.items():
        cfg = NOTEBOOK_CONFIGS[nb].from_params({**section, "dataset": str(out)})
        assert cfg.tier == "paper" and cfg.path("dataset") == out
        assert all(getattr(cfg, k) == v for k, v in section.items() if k != "dataset"), nb
        assert load_split(cfg.split, cfg.path("dataset"), limit=2)


def test_command_line_builds_and_rebuilds_from_ids(fixture_dirs, tmp_path):
    d = fixture_dirs
    common = ["--refcocog", str(d["refcocog"]), "--refl4", str(d["refl4"] / "ref-l4-val.parquet"),
              "--refl4-images", str(d["refl4"] / "images.tar.gz"), "--refadv", str(d["refadv"]),
              "--ids", str(tmp_path / "ids.json")]
    paper_benchmark.main(common + ["--sizes", "train=9,validation=6,test=7", "--out", str(tmp_path / "a")])
    paper_benchmark.main(common + ["--from-ids", "--out", str(tmp_path / "b")])
    for s, n in SIZES.items():
        a, b = load_split(s, tmp_path / "a"), load_split(s, tmp_path / "b")
        assert len(a) == n and [r["id"] for r in a] == [r["id"] for r in b]


@pytest.mark.parametrize("tier", ["paper", "paper_24gb"])
def test_paper_tier_notebooks_run_on_the_fixture_benchmark(saved_benchmark, tier, tmp_path):
    """Notebooks 00 and 01 under papermill with a paper tier's parameters, on a benchmark built from data shaped like
    the three real datasets (small images; the tier's ``max_image_pixels`` cap stays set). Only what this machine
    cannot provide is overridden: the shipped tiny model for Qwen3-VL-4B, the CPU and float32 for the GPU and bf16, and small
    sample counts and floors."""
    import papermill as pm

    from ivt_lib.configs import ROOT

    out, _ = saved_benchmark
    params = load_tier(tier)
    override = {"model": str(ROOT / "data" / "base_model"), "dataset": str(out), "device": "cpu",
                "dtype": "float32", "n_samples": 3, "batch_size": 4, "max_new_tokens": 24, "min_acc": 0.0,
                "min_parse_rate": 0.0, "results_dir": str(tmp_path / "results"),
                "figures_dir": str(tmp_path / "figures"), "runs_dir": str(tmp_path / "runs")}
    for nb in ("00_base_model", "01_naive_iteration_collapse"):
        section = {**params[nb], **override}
        assert section["max_image_pixels"] == 1048576 and section["tier"] == tier  # the tier's own cap and name
        pm.execute_notebook(str(ROOT / "notebooks" / f"{nb}.ipynb"), str(tmp_path / f"{nb}.ipynb"),
                            parameters=section, cwd=str(ROOT), kernel_name="python3", progress_bar=False)
    base = json.loads((tmp_path / "results" / "base_model.json").read_text())
    naive = json.loads((tmp_path / "results" / "naive_iteration.json").read_text())
    assert base["overall"]["n"] == 3 and set(base["by_family"]) <= {"refcocog", "refl4", "refadv"}
    assert len(naive["per_step"]) == params["01_naive_iteration_collapse"]["T"] + 1


def test_unaskable_expressions_are_dropped_with_a_count_and_their_ids(caplog):
    """A real set's empty or over-long expression is dropped at load time, counted and named, not left to stop the
    loop later."""
    good = {"id": "s:1", "image": {"bytes": b"", "path": None}, "expression": "the dog", "bbox": [1.0, 1.0, 5.0, 5.0],
            "family": "refadv", "source": "src", "width": 10, "height": 10, "objects": [], "target": -1}
    rows = [good, {**good, "id": "s:2", "expression": ""}, {**good, "id": "s:3", "expression": "y" * 1001}]
    with caplog.at_level(logging.WARNING, logger="ivt_lib.corpora.paper_data"):
        out = paper_data._finish(rows, "refadv")
    assert [r["id"] for r in out] == ["s:1"]
    assert "dropped 2 samples whose expression cannot be asked" in caplog.text and "'s:2'" in caplog.text

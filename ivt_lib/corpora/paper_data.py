"""Paper-tier data: the real RefCOCOg / Ref-L4 / Ref-Adv-S sets in the project's sample schema, and the mixed benchmark.

Every loader goes through ``datasets.load_dataset`` (hub id, a local ``hf download`` folder, or parquet/json files),
converts the dataset's box to **xyxy pixels** once (:mod:`ivt_lib.core.boxes`), applies the validity rule (clip to the
image; boxes that end up empty are dropped with a warning) and returns records with the schema of
:func:`ivt_lib.corpora.splits.features`: ``id, image, expression, bbox, family, source, width, height, objects=[], target=-1``.
``image`` stays undecoded (``{"bytes", "path"}``: compressed bytes or a file, not pixels);
:func:`ivt_lib.corpora.splits.validate_records` decodes it.

The mixed benchmark built from them is :mod:`ivt_lib.corpora.paper_benchmark` (``python -m ivt_lib.corpora.paper_benchmark``).
"""
from __future__ import annotations

import io
import logging
import re
import tarfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..core import boxes
from ..core.prompts import expression_problem

log = logging.getLogger(__name__)

REFCOCOG_ID, REFL4_ID, REFADV_ID = "lmms-lab/RefCOCOg", "JierunChen/Ref-L4", "dddraxxx/ref-adv-s"
FAMILIES = {"refcocog": REFCOCOG_ID, "refl4": REFL4_ID, "refadv": REFADV_ID}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}
_OFFLINE_NAMES = {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectError", "ConnectTimeout", "ReadTimeout",
                  "ProxyError", "NetworkError", "MaxRetryError", "NewConnectionError"}
PathLike = str | Path


# ------------------------------------------------------------------------------------------------------------------
# Coordinate adapters: dataset frame <-> ivt xyxy pixels <-> model frames
# ------------------------------------------------------------------------------------------------------------------

def dataset_to_xyxy(box: Sequence[float], fmt: str) -> boxes.Box:
    """A dataset's box (``"xywh"`` or ``"xyxy"`` pixels) -> ivt xyxy pixels."""
    if fmt == "xywh":
        return boxes.xywh_to_xyxy(box)
    if fmt == "xyxy":
        return tuple(float(v) for v in box)  # type: ignore[return-value]
    raise ValueError(f"unknown dataset box format {fmt!r}; expected 'xywh' or 'xyxy'")


# ------------------------------------------------------------------------------------------------------------------
# Loading through datasets.load_dataset, with a clear error when the hub is unreachable
# ------------------------------------------------------------------------------------------------------------------

def _is_offline_error(exc: BaseException) -> bool:
    """True if ``exc`` (or anything in its cause chain) says the hub could not be reached."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ in _OFFLINE_NAMES:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _offline_message(hub_id: str, what: str = "") -> str:
    """How to get ``hub_id`` onto a machine without hub access."""
    return (f"could not reach the Hugging Face hub for {hub_id!r}{what} (offline, or no network). On a machine with "
            f"access run `hf download {hub_id} --repo-type dataset --local-dir DIR`, copy DIR here and pass it as "
            f"path_or_id=DIR (or pass the data files: parquet/json).")


def _local_paths(path_or_id: PathLike | Sequence[PathLike]) -> list[Path] | None:
    """The local paths named by ``path_or_id``, or None if it is a hub id; raises if it is neither."""
    items = [path_or_id] if isinstance(path_or_id, (str, Path)) else list(path_or_id)
    paths = [Path(p).expanduser() for p in items]
    if all(p.exists() for p in paths):
        return paths
    if len(items) == 1 and isinstance(items[0], str) and _HUB_ID.match(items[0]):
        return None
    missing = [str(p) for p in paths if not p.exists()]
    raise FileNotFoundError(f"no such local dataset path(s) {missing} (and not a hub id like org/name)")


def load_raw(path_or_id: PathLike | Sequence[PathLike], split: str, hub_id: str, limit: int | None = None):
    """``load_dataset`` on a hub id, a local folder or data files; an unreachable hub raises a clear RuntimeError."""
    from datasets import load_dataset

    local = _local_paths(path_or_id)
    try:
        if local is None:
            ds = load_dataset(str(list(path_or_id)[0]) if not isinstance(path_or_id, str) else path_or_id,
                              split=split)
        elif len(local) == 1 and local[0].is_dir():
            ds = load_dataset(str(local[0]), split=split)
        else:
            kinds = {_BUILDERS.get(p.suffix.lower()) for p in local}
            if len(kinds) != 1 or None in kinds:
                raise ValueError(f"data files must share one of {sorted(_BUILDERS)}; got {[p.name for p in local]}")
            ds = load_dataset(kinds.pop(), data_files={split: [str(p) for p in local]}, split=split)
    except Exception as exc:
        if local is None and _is_offline_error(exc):
            tried = path_or_id if isinstance(path_or_id, str) else str(path_or_id[0])
            note = "" if tried == hub_id else f" ({tried!r} is not an existing local path either.)"
            raise RuntimeError(_offline_message(hub_id) + note) from exc
        raise
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def _image_size(image: dict) -> tuple[int, int]:
    """``(width, height)`` of an undecoded image (reads only the header)."""
    from PIL import Image

    with Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]) as im:
        return im.size


def make_record(sid: str, image: dict, expression: str, box: Sequence[float], fmt: str, family: str,
                source: str, declared: tuple[Any, Any] | None = None) -> dict | None:
    """One sample in the project's schema (box converted and clipped), or None when the box is empty.

    ``declared`` is the ``(width, height)`` the dataset's box refers to (its width/height columns); when the stored
    image was resized from that frame, the box is scaled onto the stored image, which is what the model sees.
    """
    width, height = _image_size(image)
    xyxy = dataset_to_xyxy(box, fmt)
    if declared and all(declared) and (int(declared[0]), int(declared[1])) != (width, height):
        sx, sy = width / float(declared[0]), height / float(declared[1])
        xyxy = (xyxy[0] * sx, xyxy[1] * sy, xyxy[2] * sx, xyxy[3] * sy)
        log.debug("%s: image stored at %dx%d, box given for %s: scaled", sid, width, height, declared)
    xyxy = boxes.sanitize(xyxy, width, height)
    if xyxy is None or boxes.area(xyxy) <= 0:
        return None
    return {"id": sid, "image": image, "expression": str(expression).strip(), "bbox": list(xyxy), "family": family,
            "source": source, "width": width, "height": height, "objects": [], "target": -1}


def _finish(records: Iterable[dict | None], family: str) -> list[dict]:
    """Drop (and report, with a count and the first ids) samples whose box was empty or whose expression cannot be
    asked (empty, over :data:`~ivt_lib.core.prompts.MAX_EXPRESSION_CHARS`); check that ids are unique."""
    got = list(records)
    out = [r for r in got if r is not None]
    if len(out) < len(got):
        log.warning("%s: dropped %d samples whose box is empty after clipping to the image", family,
                    len(got) - len(out))
    bad = [(r["id"], expression_problem(r["expression"])) for r in out if expression_problem(r["expression"])]
    if bad:
        log.warning("%s: dropped %d samples whose expression cannot be asked, e.g. %s", family, len(bad),
                    "; ".join(f"{i!r}: {why}" for i, why in bad[:3]))
        dropped = {i for i, _ in bad}
        out = [r for r in out if r["id"] not in dropped]
    ids = [r["id"] for r in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{family}: sample ids are not unique")
    return out


def _undecoded(ds):
    """The dataset with its ``image`` column left as ``{"bytes", "path"}``."""
    from datasets import Image

    return ds.cast_column("image", Image(decode=False))


def load_refcocog(path_or_id: PathLike | Sequence[PathLike] = REFCOCOG_ID, split: str = "val",
                  limit: int | None = None, all_expressions: bool = False) -> list[dict]:
    """RefCOCOg from ``lmms-lab/RefCOCOg`` (images embedded; splits ``val`` 7,573 and ``test`` 5,023).

    Schema as on the dataset card (``dataset_info.features``): ``question_id`` string, ``image`` Image, ``question``
    string (lmms-eval's prompt, unused), ``answer`` sequence of strings (the referring expressions of the object),
    ``segmentation`` sequence float32, ``bbox`` sequence float32 (COCO **xywh pixels**), ``iscrowd`` int8,
    ``file_name`` string. One record per row with ``answer[0]`` (``all_expressions=True``: one per expression,
    id suffix ``:k``, as lmms-eval does). IDs: ``refcocog:<split>:<question_id>``.
    """
    ds = _undecoded(load_raw(path_or_id, split, REFCOCOG_ID, limit))

    def rows():
        for i, r in enumerate(ds):
            answers = [r["answer"]] if isinstance(r["answer"], str) else list(r["answer"] or [])
            qid = r.get("question_id") or i
            for k, expr in enumerate(answers if all_expressions else answers[:1]):
                sid = f"refcocog:{split}:{qid}" + (f":{k}" if all_expressions else "")
                yield make_record(sid, r["image"], expr, r["bbox"], "xywh", "refcocog", REFCOCOG_ID)
    return _finish(rows(), "refcocog")


def _refl4_image_root(file_names: list[str], local: list[Path] | None, images: PathLike | None) -> Path:
    """The folder holding Ref-L4's image files (``file_name`` relative to it); extracts them from the tar if needed."""
    candidates = [Path(images)] if images is not None else []
    if images is None and local and local[0].is_dir():
        candidates = [local[0] / "images", local[0], local[0] / "images.tar.gz"]
    elif images is None and local:
        candidates = [local[0].parent / "images", local[0].parent, local[0].parent / "images.tar.gz"]
    for c in candidates:
        if c.is_dir() and all((c / f).exists() for f in file_names[:3]):
            return c
        if c.is_file() and c.name.endswith((".tar.gz", ".tgz", ".tar")):
            return _extract(c, set(file_names), c.parent / "images")
    if images is None and local is None:
        from huggingface_hub import hf_hub_download

        try:
            tar = hf_hub_download(REFL4_ID, "images.tar.gz", repo_type="dataset")
        except Exception as exc:
            if _is_offline_error(exc):
                raise RuntimeError(_offline_message(REFL4_ID, " (images.tar.gz)")) from exc
            raise
        return _extract(Path(tar), set(file_names), Path.home() / ".cache" / "ivt" / "ref-l4-images")
    raise FileNotFoundError(f"Ref-L4 images not found in {[str(c) for c in candidates]}: pass images= a folder "
                            f"with the extracted images.tar.gz (files named by `file_name`) or the tar itself")


def _extract(tar_path: Path, names: set[str], dest: Path) -> Path:
    """Extract the members in ``names`` that are not there yet from ``tar_path`` into ``dest``."""
    todo = {n for n in names if not (dest / n).exists()}
    if todo:
        log.info("extracting %d Ref-L4 images from %s into %s", len(todo), tar_path, dest)
        with tarfile.open(tar_path) as tar:
            for m in tar:
                if m.isfile() and m.name in todo:
                    tar.extract(m, dest, filter="data")
    return dest


def load_refl4(path_or_id: PathLike | Sequence[PathLike] = REFL4_ID, split: str = "val", limit: int | None = None,
               images: PathLike | None = None) -> list[dict]:
    """Ref-L4 from ``JierunChen/Ref-L4``. **Licence: CC BY-NC 4.0 (non-commercial use only)**; a warning is logged.

    Schema (``ref-l4-{val,test}.parquet``, config ``ref_l4``, splits ``val``/``test``, 45,341 rows in all): ``id``,
    ``caption`` (the expression), ``bbox`` (**xywh pixels**), ``bbox_area``, ``bbox_id``, ``ori_category_id``,
    ``image_id``, ``height``, ``width``, ``file_name``, ``is_rewrite``, ``split``. Images are *not* embedded: they are
    in ``images.tar.gz`` (members named by ``file_name``). ``images`` is a folder of the extracted files or the tar;
    by default ``<folder>/images``, ``<folder>`` or ``<folder>/images.tar.gz`` next to the data, or the hub's tar.
    IDs: ``refl4:<split>:<id>``.
    """
    log.warning("Ref-L4 (%s) is licensed CC BY-NC 4.0: non-commercial use only", REFL4_ID)
    local = _local_paths(path_or_id)
    ds = load_raw(path_or_id, split, REFL4_ID, limit)
    names = [str(f) for f in list(ds["file_name"])]
    root = _refl4_image_root(names, local, images)
    recs = (make_record(f"refl4:{split}:{r['id']}", {"bytes": None, "path": str(root / r["file_name"])},
                        r["caption"], r["bbox"], "xywh", "refl4", REFL4_ID, (r.get("width"), r.get("height")))
            for r in ds)
    return _finish(recs, "refl4")


def load_refadv(path_or_id: PathLike | Sequence[PathLike] = REFADV_ID, split: str = "train",
                limit: int | None = None) -> list[dict]:
    """Ref-Adv-S from ``dddraxxx/ref-adv-s`` (1,142 cases, one split ``train``; images embedded).

    Assumed schema (the card was not readable here; taken from the authors' ``run.py``/``README`` on GitHub,
    dddraxxx/Ref-Adv): ``image`` Image, ``file_name``, ``normal_caption`` (the expression), ``solution`` (the box,
    **xyxy pixels**), ``width``, ``height``, ``image_source`` (COCO/OpenImages), ``human_authored``, ``use_negation``,
    ``distractors``. There is no id column: IDs are ``refadv:<split>:<row index>`` (the authors' ``row_idx``).
    """
    ds = _undecoded(load_raw(path_or_id, split, REFADV_ID, limit))
    recs = (make_record(f"refadv:{split}:{i}", r["image"], r["normal_caption"], r["solution"], "xyxy", "refadv",
                        REFADV_ID, (r.get("width"), r.get("height"))) for i, r in enumerate(ds))
    return _finish(recs, "refadv")

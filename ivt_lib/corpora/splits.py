"""Data: the fixed synthetic splits stored as ``datasets`` (images included), and their loading with checks.

The splits are generated once from a seed and saved under ``data/scenes``; notebooks load them from disk so they never
drift when the generator changes. ``tests/test_data.py`` proves the generator still reproduces them pixel for pixel.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..core.io import atomic_dir
from ..core.prompts import expression_problem
from ..core.sample_check import box_problem
from .records import iter_split

log = logging.getLogger(__name__)

SPLITS = {"train": 2400, "validation": 510, "test": 505}  # the paper's split sizes
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "scenes"


def features():
    """The project's sample schema as ``datasets.Features``."""
    from datasets import Features, Image, List, Value

    obj = {"shape": Value("string"), "colour": Value("string"), "size": Value("string"), "box": List(Value("float32"))}
    return Features({"id": Value("string"), "image": Image(), "expression": Value("string"),
                     "bbox": List(Value("float32")), "family": Value("string"), "source": Value("string"),
                     "width": Value("int32"), "height": Value("int32"), "objects": List(obj),
                     "target": Value("int32")})


def build_splits(out_dir: str | Path = DEFAULT_DIR, seed: int = 0, canvas: int = 128,
                 sizes: dict[str, int] | None = None):
    """Generate the splits from ``seed`` and save them as a ``DatasetDict`` at ``out_dir``; return it."""
    from datasets import Dataset, DatasetDict

    sizes = sizes or SPLITS
    dd = DatasetDict({name: Dataset.from_list(list(iter_split(name, n, seed, canvas)), features=features())
                      for name, n in sizes.items()})
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        dd.save_to_disk(str(tmp))
    log.info("saved splits %s to %s", {k: len(v) for k, v in dd.items()}, out)
    return dd


def load_split(split: str, path: str | Path = DEFAULT_DIR, limit: int | None = None,
               max_pixels: int | None = None) -> list[dict]:
    """Load a split as a list of records with decoded RGB images; errors name the offending sample.

    ``max_pixels`` caps every image's area (aspect kept, boxes rescaled with it), which bounds the number of image
    tokens for every later stage: all images the model sees are drawn on these."""
    from datasets import load_from_disk

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no dataset at {p}; build it with `python -m ivt_lib.corpora.splits` or pass a valid path")
    dd = load_from_disk(str(p))
    if split not in dd:
        raise KeyError(f"split {split!r} not in {p} (has {list(dd)})")
    ds = dd[split]
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"split {split!r} at {p} is empty")
    from datasets import Image as ImageFeature

    recs = validate_records(ds.cast_column("image", ImageFeature(decode=False)), name=split)
    return [cap_image(r, max_pixels) for r in recs] if max_pixels else recs


def cap_image(record: dict, max_pixels: int) -> dict:
    """Downscale a record's image to at most ``max_pixels`` pixels (aspect kept) and rescale its boxes to match."""
    import math

    from PIL import Image

    img = record["image"]
    w, h = img.size
    if w * h <= max_pixels:
        return record
    s = math.sqrt(max_pixels / (w * h))
    nw, nh = max(1, int(w * s)), max(1, int(h * s))
    sx, sy = nw / w, nh / h
    scale = lambda b: [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]  # noqa: E731
    objects = [{**o, "box": scale(o["box"])} for o in record.get("objects") or []]
    return {**record, "image": img.resize((nw, nh), Image.BICUBIC), "bbox": scale(record["bbox"]), "width": nw,
            "height": nh, "objects": objects}


def validate_records(rows, name: str = "dataset") -> list[dict]:
    """Decode and check every record (image opens, bbox is 4 finite numbers inside the image, the expression can be
    asked); the first bad record raises, naming it."""
    import io

    from PIL import Image, UnidentifiedImageError

    out = []
    for i, r in enumerate(rows):
        sid = r.get("id", f"#{i}")
        img = r.get("image")
        try:
            if isinstance(img, dict):
                src = io.BytesIO(img["bytes"]) if img.get("bytes") else img.get("path")
                if not src:
                    raise ValueError("neither bytes nor path")
                img = Image.open(src)
            if img is None:
                raise ValueError("no image")
            img = img.convert("RGB")
        except (UnidentifiedImageError, OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{name}: sample {sid!r} has a corrupt or unreadable image: {exc}") from exc
        w, h = img.size
        problem = box_problem(r.get("bbox"), w, h) or ("expression" in r and expression_problem(r["expression"]))
        if problem:  # the loop's own rule (core.sample_check), so a split that loads also runs
            raise ValueError(f"{name}: sample {sid!r}: {problem}")
        box = [float(v) for v in r["bbox"]]
        out.append({**r, "image": img, "bbox": box})
    if not out:
        raise ValueError(f"{name} is empty")
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    build_splits()

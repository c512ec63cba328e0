"""The paper tier's mixed benchmark: seeded, source-balanced, disjoint splits of RefCOCOg / Ref-L4 / Ref-Adv-S
(:mod:`ivt_lib.corpora.paper_data` loads them), with the chosen IDs in a JSON file.

``build_mixed_benchmark`` draws the splits and writes the ID file; ``load_by_ids`` rebuilds the same splits from it;
``save_benchmark`` stores them where ``ivt_lib.corpora.splits.load_split`` (and ``params/paper.yaml``: ``data/paper_benchmark``)
reads them. Command line: ``python -m ivt_lib.corpora.paper_benchmark --help``.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from .splits import SPLITS, features
from ..core.io import atomic_write_json
from .paper_data import FAMILIES, REFADV_ID, REFCOCOG_ID, REFL4_ID, PathLike, load_refadv, load_refcocog, load_refl4

log = logging.getLogger(__name__)



def _quotas(n: int, names: list[str]) -> dict[str, int]:
    """``n`` divided as evenly as possible over ``names`` (the remainder goes to the last names)."""
    q, r = divmod(n, len(names))
    return {name: q + (i >= len(names) - r) for i, name in enumerate(names)}


def build_mixed_benchmark(sources: dict[str, list[dict]], sizes: dict[str, int] | None = None, seed: int = 0,
                          ids_path: PathLike | None = None) -> dict[str, list[dict]]:
    """Seeded splits balanced across sources and disjoint; writes ``{split: [ids]}`` to ``ids_path`` when given."""
    sizes = dict(sizes or SPLITS)
    names = sorted(sources)
    if not names:
        raise ValueError("no sources")
    quotas = {s: _quotas(n, names) for s, n in sizes.items()}
    picked: dict[str, list[dict]] = {s: [] for s in sizes}
    for name in names:
        recs = sources[name]
        if len({r["id"] for r in recs}) != len(recs):
            raise ValueError(f"source {name!r} has duplicate sample ids")
        need = sum(quotas[s][name] for s in sizes)
        if need > len(recs):
            raise ValueError(f"source {name!r} has {len(recs)} samples; the splits {sizes} need {need} from it")
        order = sorted(recs, key=lambda r: r["id"])  # input order must not matter
        random.Random(f"{seed}:{name}").shuffle(order)
        start = 0
        for s in sizes:
            picked[s] += order[start:start + quotas[s][name]]
            start += quotas[s][name]
    for s in sizes:
        random.Random(f"{seed}:{s}").shuffle(picked[s])  # mix families so a prefix (n_samples) stays balanced
    ids = [r["id"] for recs in picked.values() for r in recs]
    assert len(ids) == len(set(ids)), "a sample landed in two splits"
    if ids_path is not None:
        atomic_write_json(ids_path, split_ids(picked, seed=seed))
    return picked


def split_ids(splits: dict[str, list[dict]], seed: int | None = None) -> dict[str, Any]:
    """The ID file's content: seed, per-split per-family counts and the ordered sample IDs."""
    counts = {s: {f: sum(r["family"] == f for r in recs) for f in sorted({r["family"] for r in recs})}
              for s, recs in splits.items()}
    return {"seed": seed, "sources": {f: FAMILIES.get(f, f) for c in counts.values() for f in c}, "counts": counts,
            "splits": {s: [r["id"] for r in recs] for s, recs in splits.items()}}


def load_by_ids(ids_json: PathLike | dict, sources: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Rebuild exactly the splits listed in an ID file (same samples, same order) from loaded sources."""
    import json

    spec = ids_json if isinstance(ids_json, dict) else json.loads(Path(ids_json).read_text())
    index = {r["id"]: r for recs in sources.values() for r in recs}
    missing = [i for ids in spec["splits"].values() for i in ids if i not in index]
    if missing:
        raise KeyError(f"{len(missing)} ids are not in the loaded sources (e.g. {missing[:3]}): load the same "
                       f"dataset splits the ID file was built from")
    return {s: [index[i] for i in ids] for s, ids in spec["splits"].items()}


def _embedded(image: Any) -> Any:
    """An image with its bytes embedded (path-only images are read from disk)."""
    if isinstance(image, dict) and not image.get("bytes"):
        return {"bytes": Path(image["path"]).read_bytes(), "path": Path(image["path"]).name}
    return image


def save_benchmark(splits: dict[str, list[dict]], out_dir: PathLike):
    """Store the splits as a ``DatasetDict`` with the project's ``features()`` (read by ``data.load_split``)."""
    import shutil

    from datasets import Dataset, DatasetDict

    feats = features()
    dd = DatasetDict({s: Dataset.from_list([{**{k: r[k] for k in feats}, "image": _embedded(r["image"])}
                                            for r in recs], features=feats) for s, recs in splits.items()})
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    dd.save_to_disk(str(tmp))
    atomic_write_json(tmp / "ids.json", split_ids(splits))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("saved benchmark %s to %s", {k: len(v) for k, v in dd.items()}, out)
    return dd


def main(argv: list[str] | None = None) -> None:
    """Load the three sources, build (or rebuild from an ID file) the mixed benchmark and save it."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for fam, hub, split in (("refcocog", REFCOCOG_ID, "val"), ("refl4", REFL4_ID, "val"),
                            ("refadv", REFADV_ID, "train")):
        ap.add_argument(f"--{fam}", default=[hub], nargs="+", help=f"hub id, local folder or files (default {hub})")
        ap.add_argument(f"--{fam}-split", default=split)
    ap.add_argument("--refl4-images", default=None, help="folder of extracted Ref-L4 images, or images.tar.gz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default=None, help="e.g. train=2400,validation=510,test=505 (the default)")
    ap.add_argument("--ids", default="data/paper_benchmark_ids.json", help="ID file to write (or read, --from-ids)")
    ap.add_argument("--from-ids", action="store_true", help="rebuild the splits listed in --ids")
    ap.add_argument("--out", default="data/paper_benchmark")
    a = ap.parse_args(argv)
    from ..configs import resolve_path

    sizes = {k: int(v) for k, v in (kv.split("=") for kv in a.sizes.split(","))} if a.sizes else None
    one = lambda v: v[0] if len(v) == 1 else v  # noqa: E731
    sources = {"refcocog": load_refcocog(one(a.refcocog), a.refcocog_split),
               "refl4": load_refl4(one(a.refl4), a.refl4_split, images=a.refl4_images),
               "refadv": load_refadv(one(a.refadv), a.refadv_split)}
    splits = (load_by_ids(resolve_path(a.ids), sources) if a.from_ids
              else build_mixed_benchmark(sources, sizes, seed=a.seed, ids_path=resolve_path(a.ids)))
    save_benchmark(splits, resolve_path(a.out))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()

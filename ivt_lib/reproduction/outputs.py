"""What each notebook of a reproduction wrote, recorded in its stamp and verified before it is skipped.

A stamp used to hold only the resume key, so a merged model cut to half its size left every notebook "up to date,
skipped". Now each notebook runs with ``$IVT_OUTPUT_LOG`` pointing at a log (:data:`ivt_lib.core.io.OUTPUT_LOG_ENV`):
every file the library writes atomically and every folder it swaps in (results, figures, trajectories, merged
models, checkpoints, saved datasets) is noted there. :func:`manifest` turns the log into ``{path: size and sha256}``
for the stamp, and :func:`problem` checks a stamp's files before a skip: a missing or changed file makes the notebook
rerun. A file that a later task rewrites on purpose (the seeds' summary adds every seed's numbers to ``sft.json``)
is intact when it matches the record of any stamp of the tier. Files above :data:`FULL_HASH_MAX` (the paper tier's
8 GB models) are hashed at both ends, 1 MiB each, plus their size: that catches a cut or a swapped file, not a flipped
byte in the middle.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

FULL_HASH_MAX = 64 << 20
_END = 1 << 20


def fingerprint(path: Path) -> dict:
    """A file's size and sha256 (of its two ends only, above :data:`FULL_HASH_MAX`)."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_MAX:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f.read(_END))
            f.seek(size - _END)
            h.update(f.read(_END))
    return {"size": size, "sha256": h.hexdigest(), **({"ends_only": True} if size > FULL_HASH_MAX else {})}


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def manifest(log: Path, root: Path) -> dict[str, dict]:
    """``{path: fingerprint}`` of every file noted in ``log`` that still exists (a noted folder: each file in it);
    paths inside ``root`` are relative to it."""
    if not log.exists():
        return {}
    out: dict[str, dict] = {}
    for line in dict.fromkeys(log.read_text().splitlines()):  # in order, once each
        p = Path(line)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            out[_shown(f, root)] = fingerprint(f)
    return out


def problem(stamp: Path, root: Path) -> str | None:
    """Why the outputs recorded in ``stamp`` are not what its run left (the first missing or changed file), else
    None. A file rewritten since matches when it is what another stamp of the same folder recorded."""
    rec = json.loads(stamp.read_text()).get("outputs")
    if rec is None:
        return "its stamp records no outputs (written before outputs were checked)"
    others: dict[str, list[dict]] | None = None
    for name, want in rec.items():
        p = Path(name) if Path(name).is_absolute() else root / name
        if not p.is_file():
            return f"{name} is missing"
        got = fingerprint(p) if p.stat().st_size == want["size"] else None
        if got == want:
            continue
        if others is None:
            others = _records(stamp)
        if got is None and any(r["size"] == p.stat().st_size for r in others.get(name, [])):
            got = fingerprint(p)
        if got is not None and got in others.get(name, []):
            continue
        size = p.stat().st_size
        return (f"{name} changed since its run ({want['size']} bytes recorded, {size} now)" if size != want["size"]
                else f"{name} changed since its run (same size, other content)")
    return None


def _records(stamp: Path) -> dict[str, list[dict]]:
    """Every fingerprint that the stamps beside ``stamp`` record, by path."""
    out: dict[str, list[dict]] = {}
    for other in stamp.parent.glob("*.json"):
        if other == stamp:
            continue
        try:
            rec = json.loads(other.read_text()).get("outputs") or {}
        except (OSError, ValueError):
            continue
        for name, fp in rec.items():
            out.setdefault(name, []).append(fp)
    return out

"""Atomic writes and provenance sidecars for results, figures and checkpoints."""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

PACKAGES = ("torch", "torchvision", "transformers", "trl", "peft", "datasets", "accelerate", "papermill")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results and figures are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def recover_dir(path: str | Path) -> Path:
    """Finish a swap of :func:`atomic_dir` that a kill interrupted between its two renames: ``path`` is missing but
    ``<name>.old`` (the last complete folder) exists, so it is put back. Call before reading a checkpoint."""
    path = Path(path)
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.exists():
        logging.getLogger(__name__).warning("restoring %s from %s (a save was interrupted)", path, old.name)
        os.replace(old, path)
    return path


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh sibling ``<name>.tmp`` folder to fill; on success it replaces ``path`` by renames. A kill at any
    moment leaves the old folder, the new one, or (between the renames) ``<name>.old``, which :func:`recover_dir`
    restores (checkpoints, exported models, saved datasets)."""
    path = recover_dir(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN written as null-safe strings are the caller's job)."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n").encode())


def git_sha(repo: str | Path = ".") -> str:
    """The current git commit (``+dirty`` if the tree has changes), or ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(params: dict | None = None, wall_s: float | None = None) -> dict:
    """Git SHA, parameters, package versions, machine and wall time: what a result came from."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    load1, _, load15 = os.getloadavg()
    return {"git_sha": git_sha(Path(__file__).resolve().parents[2]), "params": params or {},
            "packages": versions, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "wall_s": wall_s, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            # the load average says whether the wall time was measured on an idle machine
            "load_avg_1_15": [round(load1, 2), round(load15, 2)]}


_ROOT = Path(__file__).resolve().parents[2]


def relative_paths(obj):
    """``obj`` with every string that is a path inside the project made relative to the project root, so a result
    written on another machine (or checkout) records the same text when its numbers are the same."""
    root = str(_ROOT) + "/"
    if isinstance(obj, str):
        return obj[len(root):] if obj.startswith(root) else obj
    if isinstance(obj, dict):
        return {k: relative_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [relative_paths(v) for v in obj]
    return obj


def write_result(path: str | Path, obj: dict, params: dict | None = None, wall_s: float | None = None) -> Path:
    """Atomically write a result JSON (project paths made relative) with its provenance sidecar
    ``<name>.provenance.json``."""
    path = Path(path)
    atomic_write_json(path, relative_paths(obj))
    atomic_write_json(path.with_suffix(".provenance.json"), relative_paths(provenance(params, wall_s)))
    return path


def save_figure(fig, path: str | Path, params: dict | None = None, wall_s: float | None = None) -> Path:
    """Atomically save a matplotlib figure (PNG) with its provenance sidecar."""
    import io as _io

    path = Path(path)
    buf = _io.BytesIO()
    fig.savefig(buf, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(path.with_suffix(".provenance.json"), relative_paths(provenance(params, wall_s)))
    return path

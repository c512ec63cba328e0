"""Atomic writes and provenance sidecars for results, figures and checkpoints.

Every file written through :func:`atomic_write_bytes` and every folder swapped in by :func:`atomic_dir` is also
noted in the file named by ``$IVT_OUTPUT_LOG`` when that is set: the reproduction sets it for each notebook it runs, and
records what the notebook wrote, with sizes and hashes, in the notebook's stamp (``ivt_lib.reproduction.outputs``).
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

PACKAGES = ("torch", "torchvision", "transformers", "trl", "peft", "datasets", "accelerate", "papermill")
OUTPUT_LOG_ENV = "IVT_OUTPUT_LOG"
# What a result depends on, for the "+dirty" flag: the library and data (the resume key hashes both), the notebooks
# and the tier files. Not results/ or figures/: a run rewrites those itself, so counting them flagged every result of
# a clean checkout's second run as dirty.
SOURCE_PATHS = ("ivt_lib", "notebooks", "params", "data", "pyproject.toml")
RUN_OUTPUTS = ("notebooks/executed",)  # inside SOURCE_PATHS, but written by the run (the default tier's are committed)


def note_output(path: str | Path) -> None:
    """Append ``path`` (absolute) to the output log named by ``$IVT_OUTPUT_LOG``, if any."""
    log = os.environ.get(OUTPUT_LOG_ENV)
    if log:
        with open(log, "a") as f:  # one short appended line: whole, even with another writer appending
            f.write(str(Path(path).resolve()) + "\n")


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
    note_output(path)
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


def _tmp_name(path: Path) -> str:
    """A temp folder name for one writer of ``path``: unique, and naming its process, so that a later writer can tell
    a dead writer's leftover from a live writer's work."""
    return f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove_dead_tmps(path: Path) -> None:
    """Delete temp folders of ``path`` left by writers that died (a kill mid-save); a live writer's are kept."""
    legacy = path.with_name(path.name + ".tmp")  # the single shared name used before unique names
    if legacy.is_dir():
        shutil.rmtree(legacy, ignore_errors=True)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh, uniquely named sibling temp folder to fill; on success it replaces ``path`` by renames. A kill
    at any moment leaves the old folder, the new one, or (between the renames) ``<name>.old``, which
    :func:`recover_dir` restores (checkpoints, exported models, saved datasets). Two writers never share or delete
    each other's temp folder: the one that swaps last wins, whole; one that fails leaves no temp folder behind."""
    path = recover_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_tmps(path)
    tmp, old = path.with_name(_tmp_name(path)), path.with_name(path.name + ".old")
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            if old.exists():  # a finished swap's leftover (its writer died before deleting it), or another writer's
                shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    note_output(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN written as null-safe strings are the caller's job)."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n").encode())


def dirty_paths(repo: str | Path = ".") -> list[str] | None:
    """``git status`` lines of uncommitted changes (untracked files included) to what results depend on
    (:data:`SOURCE_PATHS`); None outside git."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        out = subprocess.run(["git", "status", "--porcelain", "--", *SOURCE_PATHS,
                              *(f":(exclude){p}" for p in RUN_OUTPUTS)], cwd=top, capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [line for line in out.splitlines() if line.strip()]


def git_sha(repo: str | Path = ".", dirty: list[str] | None = None) -> str:
    """The current git commit (``+dirty`` when what results depend on has uncommitted changes: ``dirty``, else
    :func:`dirty_paths`), or ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if (dirty if dirty is not None else dirty_paths(repo)) else "")


def threads() -> dict:
    """The thread settings a result was computed with: torch CPU reductions, and so the numbers, depend on them."""
    torch = sys.modules.get("torch")  # not imported here just to ask: a result without torch has no torch threads
    return {"torch": torch.get_num_threads() if torch is not None else None,
            **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}


def provenance(params: dict | None = None, wall_s: float | None = None) -> dict:
    """Git SHA (and the uncommitted changes it depends on), parameters, package versions, machine, threads and wall
    time: what a result came from."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    load1, _, load15 = os.getloadavg()
    root = Path(__file__).resolve().parents[2]
    dirty = dirty_paths(root) or []
    return {"git_sha": git_sha(root, dirty), "git_dirty": dirty[:20], "params": params or {},
            "packages": versions, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "threads": threads(), "wall_s": wall_s,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
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

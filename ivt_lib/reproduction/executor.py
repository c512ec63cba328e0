"""Executing notebooks for a reproduction: the numbered notebooks, their papermill run, the resume keys and stamps.

:mod:`reproduce` (in order), :mod:`lanes` (side by side) and :mod:`seeds` (extra training seeds) all run notebooks
through this module, so none of them imports another to do so.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..configs import ROOT, load_tier, stage_config
from ..core.io import atomic_write_json

NB_DIR = ROOT / "notebooks"
SEEDS_AFTER = "04_grpo"  # the extra training seeds run after this notebook, before the evaluation


def notebooks() -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted(p for p in NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def execute(nb: Path, out: Path, params: dict) -> None:
    """Run one notebook through papermill as the reproduction does: the project root as cwd, the venv's kernel."""
    import papermill as pm

    pm.execute_notebook(str(nb), str(out), parameters=params, cwd=str(ROOT), kernel_name="python3",
                        progress_bar=False, log_output=False)


def run_key(nb: Path, params: dict, upstream: str = "") -> str:
    """Hash of a notebook's source, its parameters and the upstream notebook's key: the resume key.

    Chaining the upstream key means that rerunning notebook k reruns every notebook after it."""
    h = hashlib.sha256(nb.read_bytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update(upstream.encode())
    return h.hexdigest()[:16]


def inputs_key(root: Path | None = None) -> str:
    """Hash of the library source and the shipped data (models, scenes): what every notebook's output depends on
    besides its own source and parameters."""
    root = root or ROOT
    h = hashlib.sha256()
    for sub in ("ivt_lib", "data"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def validate(tier: str, only: list[str] | None = None) -> dict[str, dict]:
    """Check every notebook's tier parameters against its config dataclass before running anything: values, and
    that every output folder is the tier's own and writable (a ConfigError names the file, section and key)."""
    allp = load_tier(tier)
    out = {}
    for nb in notebooks():
        if only and nb.stem not in only:
            continue
        params = allp.get(nb.stem, {})
        stage_config(tier, nb.stem, params)
        out[nb.stem] = params
    return out


def keys(params: dict[str, dict], seeds: list[int]) -> dict[str, str]:
    """The resume key of every notebook and, under ``"seeds"``, of the extra seeds (``params``: the tier's).

    The key chains over every notebook, selected or not, so ``--only`` computes the same keys as a full run (else an
    unchanged notebook reruns under --only and its stamp then invalidates the next full run); the seeds' key chains
    in after notebook 04's, so notebook 05, which shows them, follows it."""
    out, key = {}, inputs_key()
    for nb in notebooks():
        key = out[nb.stem] = run_key(nb, params.get(nb.stem, {}), key)
        if nb.stem == SEEDS_AFTER and seeds:
            key = out["seeds"] = hashlib.sha256(f"{key}-seeds-{sorted(seeds)}".encode()).hexdigest()[:16]
    return out


def stamped(label: str, what: str, stamp: Path, key: str, force: bool, work) -> float:
    """Run ``work`` unless ``stamp`` holds ``key`` (and not ``force``), then stamp it; its seconds (0 when skipped)."""
    if current(stamp, key, force):
        print(f"{label}: up to date, skipped", flush=True)
        return 0.0
    print(f"{label}: running ({what})", flush=True)
    t = time.time()
    work()
    seconds = round(time.time() - t, 1)
    write_stamp(stamp, key, seconds)
    print(f"{label}: done in {seconds:.0f} s", flush=True)
    return seconds


def current(stamp: Path, key: str, force: bool) -> bool:
    """Whether ``stamp`` records a finished run with ``key`` (never under ``force``)."""
    return not force and stamp.exists() and json.loads(stamp.read_text()).get("key") == key


def write_stamp(stamp: Path, key: str, seconds: float, **extra) -> None:
    """Record a finished run (atomically): its key, seconds and end time."""
    atomic_write_json(stamp, {"key": key, "seconds": seconds, **extra, "finished": time.strftime("%FT%T")})

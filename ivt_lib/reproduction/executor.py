"""Executing notebooks for a reproduction: the numbered notebooks, their papermill run, the resume keys and stamps.

:mod:`reproduce` (in order), :mod:`lanes` (side by side) and :mod:`seeds` (extra training seeds) all run notebooks
through this module, so none of them imports another to do so.

Every notebook task runs with the same thread count, whatever the schedule (:func:`task_threads`): torch's CPU
reductions split their sums by thread, so a training run's numbers depend on it (measured on the smoke tier: the
paper-credit GRPO weights differ between 1 and 2 threads, SFT and refine-credit GRPO do not). A run's numbers depend
on the code and data (the resume key), the tier's parameters, the thread count (in the key too), the packages
(recorded in each result's provenance) and the CPU's instruction set (not recorded: the same machine type regenerates
the committed results). The thread count, its key and every output's size and hash go into the notebook's stamp.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..configs import ROOT, load_tier, stage_config
from ..core.integrity import FORCE_ENV
from ..core.io import OUTPUT_LOG_ENV, atomic_write_json
from . import outputs

NB_DIR = ROOT / "notebooks"
SEEDS_AFTER = "04_grpo"  # the extra training seeds run after this notebook, before the evaluation
CPU_TIERS = ("smoke", "default", "full")
# One thread per notebook task in the CPU tiers, with 1 lane or 2 alike: two 1-thread lanes get more done on 2 cores
# than one 2-thread lane (ivt_lib.reproduction.lanes), and a fixed count makes a task's numbers independent of what
# runs beside it (a task that ran alone used to get every core, so one seed's GRPO changed with the schedule).
TASK_THREADS = 1
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # torch reads them when it starts; the kernels inherit them


def task_threads(tier: str, threads: int | None = None) -> int | None:
    """The thread count of every notebook task of a run: ``threads`` when given, else :data:`TASK_THREADS` in the CPU
    tiers and None (torch's default: the GPU does the arithmetic) in the GPU tiers."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        return threads
    return TASK_THREADS if tier in CPU_TIERS else None


def task_env(threads: int | None, output_log: Path | None = None, force: bool = False) -> dict[str, str]:
    """The environment variables of one notebook task: its threads, its output log, and whether it is forced (then
    training retrains over a corrupt checkpoint of its own: :mod:`ivt_lib.core.integrity`)."""
    env = {k: str(threads) for k in THREAD_ENV} if threads is not None else {}
    if output_log is not None:
        env[OUTPUT_LOG_ENV] = str(output_log)
    if force:
        env[FORCE_ENV] = "1"
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in ``os.environ`` for the block, as the kernels that papermill starts inherit it; then restored."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


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


def keys(params: dict[str, dict], seeds: list[int], threads: int | None = None) -> dict[str, str]:
    """The resume key of every notebook and, under ``"seeds"``, of the extra seeds (``params``: the tier's;
    ``threads``: every task's thread count, which the numbers depend on).

    The key chains over every notebook, selected or not, so ``--only`` computes the same keys as a full run (else an
    unchanged notebook reruns under --only and its stamp then invalidates the next full run); the seeds' key chains
    in after notebook 04's, so notebook 05, which shows them, follows it."""
    out, key = {}, inputs_key() + ("" if threads is None else f"-threads-{threads}")
    for nb in notebooks():
        key = out[nb.stem] = run_key(nb, params.get(nb.stem, {}), key)
        if nb.stem == SEEDS_AFTER and seeds:
            key = out["seeds"] = hashlib.sha256(f"{key}-seeds-{sorted(seeds)}".encode()).hexdigest()[:16]
    return out


def output_log(stamp: Path) -> Path:
    """Where a task's written files are noted while it runs (beside its stamp, emptied first)."""
    log = stamp.parent / "logs" / f"{stamp.stem}.outputs"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    return log


def stamped(label: str, what: str, stamp: Path, key: str, force: bool, work, threads: int | None = None,
            up_to_date: bool | None = None) -> float:
    """Run ``work`` unless ``stamp`` holds ``key`` and its outputs are intact (and not ``force``; ``up_to_date``: that
    answer, found before the run started), then stamp it with what it wrote; its seconds (0 when skipped). ``work``
    runs with :func:`task_env`'s variables."""
    if up_to_date if up_to_date is not None else current(stamp, key, force, label):
        print(f"{label}: up to date, skipped", flush=True)
        return 0.0
    print(f"{label}: running ({what})", flush=True)
    log = output_log(stamp)
    t = time.time()
    with environment(task_env(threads, log, force)):
        work()
    seconds = round(time.time() - t, 1)
    write_stamp(stamp, key, seconds, log, threads=threads)
    print(f"{label}: done in {seconds:.0f} s", flush=True)
    return seconds


def current(stamp: Path, key: str, force: bool, label: str = "") -> bool:
    """Whether ``stamp`` records a finished run with ``key`` whose outputs are still what it wrote (never under
    ``force``); a changed or missing output is printed, and the notebook reruns."""
    if force or not stamp.exists() or json.loads(stamp.read_text()).get("key") != key:
        return False
    why = outputs.problem(stamp, ROOT)
    if why:
        print(f"{label or stamp.stem}: {why}: rerunning", flush=True)
    return why is None


def write_stamp(stamp: Path, key: str, seconds: float, log: Path | None = None, **extra) -> None:
    """Record a finished run (atomically): its key, seconds, end time and the files it wrote (from its output
    ``log``: size and sha256 of each, verified before a later run skips it)."""
    files = outputs.manifest(log, ROOT) if log is not None else {}
    atomic_write_json(stamp, {"key": key, "seconds": seconds, **extra, "finished": time.strftime("%FT%T"),
                              "outputs": files})
    if log is not None:
        log.unlink(missing_ok=True)

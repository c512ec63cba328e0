"""One-command reproduction: run the numbered notebooks in order through papermill for a tier.

``python -m ivt_lib.reproduce --tier default`` executes ``notebooks/NN_*.ipynb`` with the parameters of
``params/<tier>.yaml`` into ``notebooks/executed/<tier>/`` (gitignored). A notebook whose source, parameters and
inputs are unchanged since its last successful run is skipped, so an interrupted run resumes from the first
unfinished notebook. The key chains a hash of the library (``ivt_lib/*.py``) and the shipped data (``data/``)
into every notebook's key, so a change to either reruns everything after it. ``--force`` reruns everything.

``--seeds 1 2`` (what ``make reproduce`` passes in the default tier) also trains those extra seeds of notebooks 03
and 04, with the labelled extra rows (``ivt_lib.seeds``), right after notebook 04, so that notebook 05 shows every
seed's numbers. The seeds have a stamp of their own, chained like a notebook's: a rerun of notebook 04 reruns them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

from . import progress
from .config import NOTEBOOK_CONFIGS, ROOT, TIERS, ConfigError, load_tier
from .io import atomic_write_json

log = logging.getLogger(__name__)
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
    """Check every notebook's tier parameters against its config dataclass before running anything."""
    allp = load_tier(tier)
    out = {}
    for nb in notebooks():
        if only and nb.stem not in only:
            continue
        params = allp.get(nb.stem, {})
        cls = NOTEBOOK_CONFIGS.get(nb.stem)
        if cls is not None:
            unknown = set(params) - set(cls.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"{nb.stem}: unknown parameter(s) {sorted(unknown)} in params/{tier}.yaml")
            cls(**params)  # raises ConfigError naming the bad parameter
        out[nb.stem] = params
    return out


def run(tier: str, force: bool = False, only: list[str] | None = None, seeds: list[int] | None = None,
        jobs: int = 1) -> dict:
    """Execute the notebooks of a tier in order, and the extra training ``seeds`` after notebook 04; return
    ``{notebook: seconds}`` (0 for skipped ones; the seeds under ``"seeds"``). ``jobs`` > 1 runs independent
    notebooks and seeds side by side (:mod:`ivt_lib.lanes`), with the same keys and stamps."""
    progress.quiet()  # the kernels inherit it: an executed notebook keeps results, not frozen progress bars
    if jobs > 1 and not only:
        return run_lanes(tier, force, seeds or [], jobs)

    plan = validate(tier, only)
    allp = load_tier(tier)
    out_dir = NB_DIR / "executed" / tier
    stamps = ROOT / "runs" / "reproduce" / tier
    out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    key, i = keys(allp, seeds or []), 0
    for nb in notebooks():
        stem = nb.stem
        if stem in plan:
            i += 1
            times[stem] = _stamped(f"[{i}/{len(plan)}] {stem}", f"{tier} tier", stamps / f"{stem}.json", key[stem],
                                   force, lambda: execute(nb, out_dir / nb.name, plan[stem]))
        if stem == SEEDS_AFTER and seeds:
            if stem in plan:
                from . import seeds as seeds_mod  # here: seeds imports this module

                # force=True inside: a changed key reruns each seed's notebooks; finished trainings are loaded
                times["seeds"] = _stamped(f"seeds {seeds}", f"notebooks 03 and 04 per seed, {tier} tier",
                                          stamps / "seeds.json", key["seeds"], force,
                                          lambda: seeds_mod.run_all(tier, seeds, force=True, extra_rows=True))
    return times


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


def run_lanes(tier: str, force: bool, seeds: list[int], jobs: int) -> dict:
    """:func:`run` in ``jobs`` parallel lanes: every notebook (and seed) whose stamp is not current, as a process of
    its own once what it needs is done; the returned dict also holds ``"wall"``, the whole run's seconds."""
    from . import lanes

    plan = validate(tier)
    stamps = ROOT / "runs" / "reproduce" / tier
    (NB_DIR / "executed" / tier).mkdir(parents=True, exist_ok=True)
    key = keys(plan, seeds)
    if SEEDS_AFTER not in plan:
        seeds = []

    need = lanes.graph(list(plan), seeds)
    tasks, times = [], {}
    seeds_done = bool(seeds) and _current(stamps / "seeds.json", key["seeds"], force)
    for name in need:
        if name in plan:
            stamp, argv = stamps / f"{name}.json", ["--notebook", name]
        elif seeds_done:
            continue
        elif name == lanes.SUMMARY:
            stamp, argv = stamps / "seeds.json", ["--summary", *map(str, seeds)]
        else:  # "seed <k> <stem>"
            _, k, stem = name.split()
            stamp, argv = stamps / f"seed_{k}_{stem}.json", ["--seed", k, "--stem", stem]
        k = key["seeds"] if name not in plan else key[name]
        if _current(stamp, k, force):
            print(f"{name}: up to date, skipped", flush=True)
            times[name] = 0.0
            continue
        done = lambda s, stamp=stamp, k=k: _write_stamp(stamp, k, s, jobs=jobs)  # noqa: E731
        tasks.append(lanes.Task(name, ["--tier", tier, *argv], need[name], done))
    t = time.time()
    times.update(lanes.schedule(tasks, jobs, stamps / "logs"))
    times["wall"] = round(time.time() - t, 1)
    return times


def _stamped(label: str, what: str, stamp: Path, key: str, force: bool, work) -> float:
    """Run ``work`` unless ``stamp`` holds ``key`` (and not ``force``), then stamp it; its seconds (0 when skipped)."""
    if _current(stamp, key, force):
        print(f"{label}: up to date, skipped", flush=True)
        return 0.0
    print(f"{label}: running ({what})", flush=True)
    t = time.time()
    work()
    seconds = round(time.time() - t, 1)
    _write_stamp(stamp, key, seconds)
    print(f"{label}: done in {seconds:.0f} s", flush=True)
    return seconds


def _current(stamp: Path, key: str, force: bool) -> bool:
    """Whether ``stamp`` records a finished run with ``key`` (never under ``force``)."""
    return not force and stamp.exists() and json.loads(stamp.read_text()).get("key") == key


def _write_stamp(stamp: Path, key: str, seconds: float, **extra) -> None:
    """Record a finished run (atomically): its key, seconds and end time."""
    atomic_write_json(stamp, {"key": key, "seconds": seconds, **extra, "finished": time.strftime("%FT%T")})


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="Run the IVT notebooks in order through papermill.")
    ap.add_argument("--tier", default="default", choices=TIERS)
    ap.add_argument("--force", action="store_true", help="rerun notebooks even if up to date")
    ap.add_argument("--only", nargs="*", help="notebook stems to run (default: all)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[], help="extra training seeds after notebook 04")
    ap.add_argument("--jobs", type=int, default=1,
                    help="parallel lanes: independent notebooks and seeds side by side, sharing the cores (CPU tiers)")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {a.jobs}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t = time.time()
    times = run(a.tier, a.force, a.only, a.seeds, a.jobs)
    print(f"all done in {time.time() - t:.0f} s: {json.dumps(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One-command reproduction: run the numbered notebooks in order through papermill for a tier.

``python -m ivt_lib.reproduction.reproduce --tier default`` executes ``notebooks/NN_*.ipynb`` with the parameters of
``params/<tier>.yaml`` into ``notebooks/executed/<tier>/`` (gitignored). A notebook whose source, parameters and
inputs are unchanged since its last successful run is skipped, so an interrupted run resumes from the first
unfinished notebook. The key chains a hash of the library (every file under ``ivt_lib/``) and the shipped data (``data/``)
into every notebook's key, so a change to either reruns everything after it. ``--force`` reruns everything.

``--seeds 1 2`` (what ``make reproduce`` passes in the default tier) also trains those extra seeds of notebooks 03
and 04, with the labelled extra rows (``ivt_lib.reproduction.seeds``), right after notebook 04, so that notebook 05 shows every
seed's numbers. The seeds have a stamp of their own, chained like a notebook's: a rerun of notebook 04 reruns them.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ..configs import TIERS
from ..core import progress
from . import executor, lanes
from . import seeds as seeds_mod

log = logging.getLogger(__name__)


def run(tier: str, force: bool = False, only: list[str] | None = None, seeds: list[int] | None = None,
        jobs: int = 1) -> dict:
    """Execute the notebooks of a tier in order, and the extra training ``seeds`` after notebook 04; return
    ``{notebook: seconds}`` (0 for skipped ones; the seeds under ``"seeds"``). ``jobs`` > 1 runs independent
    notebooks and seeds side by side (:mod:`ivt_lib.reproduction.lanes`), with the same keys and stamps."""
    progress.quiet()  # the kernels inherit it: an executed notebook keeps results, not frozen progress bars
    if jobs > 1 and not only:
        return run_lanes(tier, force, seeds or [], jobs)

    plan = executor.validate(tier, only)
    allp = executor.load_tier(tier)  # (looked up there: one place to replace in tests)
    out_dir = executor.NB_DIR / "executed" / tier
    stamps = executor.ROOT / "runs" / "reproduce" / tier
    out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    key, i = executor.keys(allp, seeds or []), 0
    for nb in executor.notebooks():
        stem = nb.stem
        if stem in plan:
            i += 1
            times[stem] = executor.stamped(f"[{i}/{len(plan)}] {stem}", f"{tier} tier", stamps / f"{stem}.json", key[stem],
                                   force, lambda: executor.execute(nb, out_dir / nb.name, plan[stem]))
        if stem == executor.SEEDS_AFTER and seeds:
            if stem in plan:
                # force=True inside: a changed key reruns each seed's notebooks; finished trainings are loaded
                times["seeds"] = executor.stamped(f"seeds {seeds}", f"notebooks 03 and 04 per seed, {tier} tier",
                                          stamps / "seeds.json", key["seeds"], force,
                                          lambda: seeds_mod.run_all(tier, seeds, force=True, extra_rows=True))
    return times


def run_lanes(tier: str, force: bool, seeds: list[int], jobs: int) -> dict:
    """:func:`run` in ``jobs`` parallel lanes: every notebook (and seed) whose stamp is not current, as a process of
    its own once what it needs is done; the returned dict also holds ``"wall"``, the whole run's seconds."""
    plan = executor.validate(tier)
    stamps = executor.ROOT / "runs" / "reproduce" / tier
    (executor.NB_DIR / "executed" / tier).mkdir(parents=True, exist_ok=True)
    key = executor.keys(plan, seeds)
    if executor.SEEDS_AFTER not in plan:
        seeds = []

    need = lanes.graph(list(plan), seeds)
    tasks, times = [], {}
    seeds_done = bool(seeds) and executor.current(stamps / "seeds.json", key["seeds"], force)
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
        if executor.current(stamp, k, force):
            print(f"{name}: up to date, skipped", flush=True)
            times[name] = 0.0
            continue
        done = lambda s, stamp=stamp, k=k: executor.write_stamp(stamp, k, s, jobs=jobs)  # noqa: E731
        tasks.append(lanes.Task(name, ["--tier", tier, *argv], need[name], done))
    t = time.time()
    times.update(lanes.schedule(tasks, jobs, stamps / "logs"))
    times["wall"] = round(time.time() - t, 1)
    return times


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

"""One-command reproduction: run the numbered notebooks in order through papermill for a tier.

``python -m ivt_lib.reproduction.reproduce --tier default`` executes ``notebooks/NN_*.ipynb`` with the parameters of
``params/<tier>.yaml`` into ``notebooks/executed/<tier>/`` (gitignored). A notebook whose source, parameters and
inputs are unchanged since its last successful run is skipped, so an interrupted run resumes from the first
unfinished notebook. The key chains a hash of the library (every file under ``ivt_lib/``) and the shipped data (``data/``)
into every notebook's key, so a change to either reruns everything after it. ``--force`` reruns everything.

``--seeds 1 2`` (what ``make reproduce`` passes in the default tier) also trains those extra seeds of notebooks 03
and 04, with the labelled extra rows (``ivt_lib.reproduction.seeds``), right after notebook 04, so that notebook 05 shows every
seed's numbers. The seeds have a stamp of their own, chained like a notebook's: a rerun of notebook 04 reruns them.

A stamp also records the size and hash of every file its notebook wrote (:mod:`ivt_lib.reproduction.outputs`): a
skip verifies them, and a missing or changed output reruns the notebook that wrote it. Every notebook task runs with
the same thread count (``--threads``; 1 in the CPU tiers), so its numbers do not depend on the lanes' schedule.

Safety (:mod:`ivt_lib.reproduction.guards`): one run per tier (``--wait`` queues behind a running one), and the
tiers whose results are committed (default, full, paper, paper_24gb: their ``results_dir`` is outside ``runs/``) refuse
to start from a tree with uncommitted changes to the code, notebooks, tier files or data, since those results must
regenerate from a commit; ``--allow-dirty`` runs anyway, and each result's provenance then says ``+dirty`` and lists
the changes.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ..configs import TIERS
from ..core import progress
from . import executor, guards, lanes
from . import seeds as seeds_mod

log = logging.getLogger(__name__)


def run(tier: str, force: bool = False, only: list[str] | None = None, seeds: list[int] | None = None,
        jobs: int = 1, threads: int | None = None) -> dict:
    """Execute the notebooks of a tier in order, and the extra training ``seeds`` after notebook 04; return
    ``{notebook: seconds}`` (0 for skipped ones; the seeds under ``"seeds"``). ``jobs`` > 1 runs independent
    notebooks and seeds side by side (:mod:`ivt_lib.reproduction.lanes`), with the same keys and stamps; every task
    gets ``threads`` threads (default :func:`executor.task_threads`), whatever ``jobs`` is."""
    progress.quiet()  # the kernels inherit it: an executed notebook keeps results, not frozen progress bars
    threads = executor.task_threads(tier, threads)
    if jobs > 1 and not only:
        return run_lanes(tier, force, seeds or [], jobs, threads)

    plan = executor.validate(tier, only)
    allp = executor.load_tier(tier)  # (looked up there: one place to replace in tests)
    out_dir = executor.NB_DIR / "executed" / tier
    stamps = executor.ROOT / "runs" / "reproduce" / tier
    out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    key = executor.keys(allp, seeds or [], threads)
    # every stamp's outputs are checked before anything runs: a rerun restores its own files, which could otherwise
    # hide a later stamp's copy of the same file (the seeds' summary rewrites notebook 03's sft.json)
    names = [s for s in plan] + (["seeds"] if seeds and executor.SEEDS_AFTER in plan else [])
    fresh = {n: executor.current(stamps / f"{n}.json", key[n], force, n) for n in names}
    for i, stem in enumerate(plan, 1):
        nb = executor.NB_DIR / f"{stem}.ipynb"
        times[stem] = executor.stamped(f"[{i}/{len(plan)}] {stem}", f"{tier} tier, {_threads(threads)}",
                                       stamps / f"{stem}.json", key[stem], force,
                                       lambda: executor.execute(nb, out_dir / nb.name, plan[stem]), threads,
                                       fresh[stem])
        if stem == executor.SEEDS_AFTER and "seeds" in fresh:
            # force=True inside: a changed key reruns each seed's notebooks; finished trainings are loaded
            times["seeds"] = executor.stamped(
                f"seeds {seeds}", f"notebooks 03 and 04 per seed, {tier} tier, {_threads(threads)}",
                stamps / "seeds.json", key["seeds"], force,
                lambda: seeds_mod.run_all(tier, seeds, force=True, extra_rows=True), threads, fresh["seeds"])
    return times


def _threads(threads: int | None) -> str:
    return "torch's default threads" if threads is None else f"{threads} thread{'s' * (threads > 1)} per task"


def run_lanes(tier: str, force: bool, seeds: list[int], jobs: int, threads: int | None = None) -> dict:
    """:func:`run` in ``jobs`` parallel lanes: every notebook (and seed) whose stamp is not current, as a process of
    its own once what it needs is done; the returned dict also holds ``"wall"``, the whole run's seconds."""
    plan = executor.validate(tier)
    stamps = executor.ROOT / "runs" / "reproduce" / tier
    (executor.NB_DIR / "executed" / tier).mkdir(parents=True, exist_ok=True)
    key = executor.keys(plan, seeds, threads)
    if executor.SEEDS_AFTER not in plan:
        seeds = []

    need = lanes.graph(list(plan), seeds)
    tasks, times = [], {}
    seeds_done = bool(seeds) and executor.current(stamps / "seeds.json", key["seeds"], force, "seeds")
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
        if executor.current(stamp, k, force, name):
            print(f"{name}: up to date, skipped", flush=True)
            times[name] = 0.0
            continue
        log = executor.output_log(stamp)
        done = lambda s, stamp=stamp, k=k, log=log: executor.write_stamp(  # noqa: E731
            stamp, k, s, log, jobs=jobs, threads=threads)
        tasks.append(lanes.Task(name, ["--tier", tier, *argv], need[name], done,
                                executor.task_env(threads, log, force)))
    t = time.time()
    times.update(lanes.schedule(tasks, jobs, stamps / "logs", threads=threads))
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
    ap.add_argument("--threads", type=int, default=None,
                    help=f"threads of every notebook task, whatever --jobs (default {executor.TASK_THREADS} in the "
                         "CPU tiers, torch's default in the GPU tiers); the numbers depend on it, so it is in the key")
    ap.add_argument("--wait", action="store_true", help="if another run of this tier holds its lock, wait for it")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write a committed tier's results from a tree with uncommitted changes (marked +dirty)")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {a.jobs}")
    if a.threads is not None and a.threads < 1:
        ap.error(f"--threads must be >= 1, got {a.threads}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    why = guards.refuse_dirty(executor.ROOT, a.tier, a.allow_dirty, "reproduce")
    if why:
        print(why, file=sys.stderr)
        return 2
    t = time.time()
    try:
        with guards.tier_lock(executor.ROOT, a.tier, "reproduce " + " ".join(argv or sys.argv[1:]), a.wait):
            times = run(a.tier, a.force, a.only, a.seeds, a.jobs, a.threads)
    except guards.TierBusy as e:
        print(e, file=sys.stderr)
        return 3
    print(f"all done in {time.time() - t:.0f} s: {json.dumps(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

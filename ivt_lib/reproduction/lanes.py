"""Parallel lanes for the reproduction: notebooks and training seeds that do not depend on each other run side by side,
each in its own process with the run's fixed thread count.

``python -m ivt_lib.reproduction.reproduce --tier default --seeds 1 2 --jobs 2`` (what ``make reproduce`` runs) uses this module.
Why it pays on the embedded default: its 5 M-parameter model uses a second thread poorly (an SFT step is about 1.7x
faster on 2 threads than on 1, batched generation about 1.4x), and loading, rendering and the papermill kernel are
single-threaded, so two 1-thread processes get more done per second than one 2-thread process
(``benchmarks/reproduce_lanes.py`` measures it). On a GPU tier keep ``--jobs 1``: lanes would share one device.

Every task gets the run's fixed thread count (:func:`ivt_lib.reproduction.executor.task_threads`: 1 in the CPU
tiers), never a share that depends on what else is running: a task that happened to start alone used to get every
core, and torch's reductions then summed in another order, so the paper-credit GRPO of one seed came out different
from run to run (issue 33: seed 2, step-0 Acc@0.5 72.1 committed, 71.3 regenerated).

The dependency graph (:data:`NEEDS`): 00, 01 and 02 read only the shipped data; 03 needs 00's base answers and 02's
traces; 04 needs 03; an extra training seed's 03 needs 00 and 02, its 04 its 03; their summary needs every seed's
04, and 03 and 04 (seed 0); 05 reads every notebook's and every seed's results; 06 reads 05's. A notebook not listed
needs every notebook before it (the serial order). Resume keys and stamps are the serial run's (``ivt_lib.reproduction.reproduce``),
so a run may switch between ``--jobs 1`` and ``--jobs N`` and skip what is done; each seed's notebooks also get stamps
of their own, so an interrupted run does not retrain a finished one.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core import progress
from . import executor, seeds
from .seeds import STEMS

NEEDS: dict[str, list[str]] = {
    "00_base_model": [], "01_naive_iteration_collapse": [], "02_teacher_data_synthesis": [],
    "03_sft": ["00_base_model", "02_teacher_data_synthesis"], "04_grpo": ["00_base_model", "03_sft"],
}
SEED_NEEDS = ["00_base_model", "02_teacher_data_synthesis"]
SUMMARY = "seeds summary"  # results/seeds.json from every seed's results: notebook 05 shows it
SEED0 = list(STEMS)  # the notebooks an extra seed reruns, and seed 0's training, whose results the summary reads
THREAD_ENV = executor.THREAD_ENV


@dataclass
class Task:
    """One unit of a lane: a notebook of seed 0, a notebook of an extra training seed, or the seeds' summary."""

    name: str
    argv: list[str]  # the child process's arguments after ``python -m ivt_lib.reproduction.lanes``
    needs: list[str] = field(default_factory=list)
    on_done: Callable[[float], None] | None = None  # stamps the task when its process exits 0
    env: dict[str, str] = field(default_factory=dict)  # its environment variables (threads, output log, force)


def seed_task(seed: int, stem: str) -> str:
    """The task name of one notebook (03 or 04) of an extra training seed."""
    return f"seed {seed} {stem}"


def graph(stems: list[str], seeds: list[int]) -> dict[str, list[str]]:
    """Each task (notebooks in order, the seeds, their summary) → the tasks it needs; see the module docstring."""
    out: dict[str, list[str]] = {}
    for i, stem in enumerate(stems):
        if stem in NEEDS:
            out[stem] = [s for s in NEEDS[stem] if s in stems]
        else:  # the evaluation and anything after it: the serial order, plus every seed
            out[stem] = list(stems[:i]) + ([SUMMARY] if seeds else [])
    for k in seeds:  # a task per notebook, not per seed: finer tasks leave less of the run to one lane at the end
        out[seed_task(k, SEED0[0])] = [s for s in SEED_NEEDS if s in stems]
        out[seed_task(k, SEED0[1])] = [seed_task(k, SEED0[0])]
    if seeds:
        out[SUMMARY] = [s for s in SEED0 if s in stems] + [seed_task(k, SEED0[1]) for k in seeds]
    return out


def downstream(needs: dict[str, list[str]]) -> dict[str, int]:
    """Each task → how many tasks need it, directly or not: what waits on it (the scheduler starts those first)."""
    def above(name: str, seen: set[str]) -> set[str]:
        for n in needs.get(name, []):
            if n not in seen:
                seen.add(n)
                above(n, seen)
        return seen

    count = dict.fromkeys(needs, 0)
    for name in needs:
        for n in above(name, set()):
            if n in count:
                count[n] += 1
    return count


def launch(task: Task, threads: int | None, log: Path) -> subprocess.Popen:
    """Start ``python -m ivt_lib.reproduction.lanes <task.argv>`` with ``threads`` threads (None: torch's default) and
    ``task.env``, its output into ``log``."""
    env = {**os.environ, **({k: str(threads) for k in THREAD_ENV} if threads is not None else {}), **task.env}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", "ivt_lib.reproduction.lanes", *task.argv], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, cwd=os.getcwd())


def schedule(tasks: list[Task], jobs: int, log_dir: Path, start=None, poll_s: float = 0.5,
             threads: int | None = None) -> dict[str, float]:
    """Run ``tasks`` (``start(task, threads, log)`` → a process; default :func:`launch`) at most ``jobs`` at a time,
    each once the tasks it needs have finished, the ready task with the most work waiting on it first (then list
    order), each with ``threads`` threads whatever runs beside it; return ``{task: seconds}``. After a failure nothing
    new starts, the running tasks finish (and stamp), and a RuntimeError names the failed task and its log."""
    start = start or launch  # (looked up here, not bound at import: tests replace it)
    names = {t.name for t in tasks}
    below = downstream({t.name: t.needs for t in tasks})
    pending = sorted(tasks, key=lambda t: -below[t.name])  # stable: list order among equals
    running: dict[str, tuple[Task, subprocess.Popen, float]] = {}
    done: set[str] = set()
    failed: list[str] = []
    times: dict[str, float] = {}
    while pending or running:
        ready = [t for t in pending if all(n in done or n not in names for n in t.needs)]
        while ready and len(running) < jobs and not failed:
            t = ready.pop(0)
            pending.remove(t)
            n = "torch's default threads" if threads is None else f"{threads} thread{'s' * (threads > 1)}"
            print(f"[lanes] {t.name}: running ({n}; log {log_dir / _log_name(t)})", flush=True)
            running[t.name] = (t, start(t, threads, log_dir / _log_name(t)), time.time())
        if not running:
            if pending and not failed:
                raise RuntimeError(f"tasks that can never start (a cycle?): {[t.name for t in pending]}")
            break
        time.sleep(poll_s)
        for name, (t, proc, t0) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del running[name]
            times[name] = round(time.time() - t0, 1)
            if rc == 0:
                done.add(name)
                if t.on_done:
                    t.on_done(times[name])
                print(f"[lanes] {name}: done in {times[name]:.0f} s", flush=True)
            else:
                failed.append(name)
                print(f"[lanes] {name}: FAILED (exit {rc}); nothing new starts, the running tasks finish", flush=True)
    if failed:
        logs = ", ".join(str(log_dir / _log_name(next(t for t in tasks if t.name == n))) for n in failed)
        raise RuntimeError(f"{', '.join(failed)} failed; see {logs}. Rerun the same command to resume.")
    return times


def _log_name(task: Task) -> str:
    return task.name.replace(" ", "_") + ".log"


def main(argv: list[str] | None = None) -> int:
    """The child process of one task: execute one notebook of a tier, or one extra training seed."""
    ap = argparse.ArgumentParser(description="One task of a parallel reproduction (started by ivt_lib.reproduction.reproduce).")
    ap.add_argument("--tier", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--notebook", help="notebook stem to execute with the tier's parameters")
    g.add_argument("--seed", type=int, help="extra training seed: its notebook --stem, with the extra rows")
    g.add_argument("--summary", type=int, nargs="+", help="the extra seeds whose summary (seeds.json) to write")
    ap.add_argument("--stem", choices=SEED0, help="with --seed: the notebook to run")
    a = ap.parse_args(argv)
    if a.seed is not None and not a.stem:
        ap.error("--seed needs --stem")
    progress.quiet()
    if a.seed is not None:
        seeds.run_seed(a.tier, a.seed, force=True, extra_rows=True, stems=(a.stem,))
    elif a.summary:
        print("\n".join(seeds.markdown(seeds.write_summary(a.tier, a.summary, extra_rows=True))))
    else:
        params = executor.validate(a.tier, [a.notebook])[a.notebook]
        out = executor.NB_DIR / "executed" / a.tier / f"{a.notebook}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        executor.execute(executor.NB_DIR / f"{a.notebook}.ipynb", out, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())

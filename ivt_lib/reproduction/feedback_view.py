"""The IVT chain in another feedback view (ours: the zoom view), beside the paper's overlay rows, over training seeds.

``python -m ivt_lib.reproduction.feedback_view --tier default --seeds 0 1 2 --jobs 2`` runs, in the view
(:mod:`ivt_lib.core.feedback`; ``--feedback zoom --zoom-margin 0.5 --zoom-size 128``):

1. notebook 02 (teacher traces, the paper's recipe and ours), rendered as the view shows refine steps;
2. per training seed, notebooks 03 (SFT) and 04 (GRPO) on those traces. Seed 0 also trains the labelled extra rows
   (ours: keep data; refine credit); the other seeds the paper's rows only (the main rows get 3 seeds). Every seed
   also trains the paper's ablation, SFT on traces that start from jittered ground truth (notebook 02 builds them in
   the view): it demonstrates the small in-window corrections the own-error traces almost never do
   (:mod:`ivt_lib.analysis.trace_corrections`). ``--skip-jittered-gt`` leaves it out;
3. the naive base in the view and in the overlay (no training; the view's own "step 0 → refine" baseline);
4. ``<results_dir>/feedback_view.json``: every configuration and seed with every answer rule (step 0, last step,
   ORACLE best step, stop-when-still, confidence) paired against base single shot (Δ, 95 % bootstrap CI, McNemar p),
   stability at the dead bands 0.01 / 0.05 / 0.10 with "stay" split into kept-good and stayed-bad, mean ± sd over
   seeds, and the keep-signal diagnostic of the view's SFT models on validation.

Everything is written under ``<runs_dir>/view_<feedback>/`` (seed k: ``seed_<k>/``) except the summary. Each notebook
run is stamped with its resume key (the code, data, parameters and thread count), so a rerun skips finished ones.
Notebook 00 of the tier must have run (base single shot is the paired reference). The overlay rows are the tier's
own (``make reproduce``) and are not rerun here.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..configs import TIERS, load_tier, resolve_path
from ..core.feedback import ViewSettings
from . import executor, feedback_summary, guards
from .executor import NB_DIR
from .feedback_summary import view_dir

TRACES = "02_teacher_data_synthesis"
STEMS = ("03_sft", "04_grpo")


def params(tier: str, view: ViewSettings, stem: str, seed: int = 0, jittered_gt: bool = True) -> dict:
    """Papermill parameters of one notebook in the view: the tier's, redirected to the view's (and seed's) folders;
    ``jittered_gt``: also build (02) and train on (03, every seed) the paper's jittered-ground-truth traces."""
    allp, vd = load_tier(tier), view_dir(tier, view)
    kw = {"feedback": view.feedback, "zoom_margin": view.margin, "zoom_size": view.size}
    if stem == TRACES:
        return {**allp[stem], **kw, "runs_dir": str(vd), "results_dir": str(vd / "results"),
                "figures_dir": str(vd / "figures"), "traces_dir": str(vd / "traces"), "ablation_jittered": jittered_gt,
                "recipe_ours": True}
    own, extra = vd / f"seed_{seed}", seed == 0
    where = {**kw, "seed": seed, "runs_dir": str(own), "results_dir": str(own / "results"),
             "figures_dir": str(own / "figures")}
    if stem == "03_sft":
        return {**allp[stem], **where, "traces_dir": str(vd / "traces"), "ablation_jittered": jittered_gt,
                "recipe_ours": extra}
    if stem == "04_grpo":
        return {**allp[stem], **where, "refine_credit_ablation": extra, "single_step": False}
    raise ValueError(f"{stem}: the view reruns {TRACES} and {STEMS} only")


def run_task(tier: str, view: ViewSettings, stem: str, seed: int, threads: int | None, force: bool,
             jittered_gt: bool = True) -> float:
    """Execute one notebook of the view (skipped when its stamp is current); its seconds."""
    p = params(tier, view, stem, seed, jittered_gt)
    own = Path(p["runs_dir"])
    if stem != TRACES:
        base = resolve_path(load_tier(tier)["00_base_model"]["runs_dir"]) / "trajectories" / "base_single_shot.jsonl"
        if not base.exists():
            raise FileNotFoundError(f"run notebook 00 of the {tier} tier first: {base} is missing")
        (own / "trajectories").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(base, own / "trajectories" / base.name)
    nb = NB_DIR / f"{stem}.ipynb"
    key = executor.run_key(nb, p, executor.inputs_key() + f"-threads-{threads}")
    (own / "notebooks").mkdir(parents=True, exist_ok=True)
    label = f"{view.feedback} seed {seed} {stem}" if stem != TRACES else f"{view.feedback} {stem}"
    return executor.stamped(label, "papermill", own / "stamps" / f"{stem}.json", key, force,
                            lambda: executor.execute(nb, own / "notebooks" / f"{stem}.ipynb", p), threads)


def _child(tier: str, view: ViewSettings, stem: str, seed: int, threads: int | None, force: bool,
           jittered_gt: bool = True) -> None:
    """Run one task in its own process (each sets its own environment: threads, output log)."""
    argv = [sys.executable, "-m", "ivt_lib.reproduction.feedback_view", "--tier", tier, "--feedback", view.feedback, "--zoom-margin",
            str(view.margin), "--zoom-size", str(view.size), "--task", stem, str(seed), "--allow-dirty", "--nolock"]
    argv += (["--threads", str(threads)] if threads else []) + (["--force"] if force else [])
    argv += [] if jittered_gt else ["--skip-jittered-gt"]
    subprocess.run(argv, check=True, cwd=str(executor.ROOT))


def run_all(tier: str, view: ViewSettings, seeds: list[int], jobs: int = 2, threads: int | None = 1,
            force: bool = False, jittered_gt: bool = True) -> float:
    """Notebook 02 in the view, then each seed's 03 → 04 (``jobs`` seeds side by side); the wall seconds."""
    t0 = time.time()
    _child(tier, view, TRACES, 0, threads, force, jittered_gt)
    ordered = sorted(seeds)  # seed 0 (with the extra rows) first: it is the longest lane

    def chain(seed: int) -> None:
        for stem in STEMS:
            _child(tier, view, stem, seed, threads, force, jittered_gt)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for f in [pool.submit(chain, s) for s in ordered]:
            f.result()
    return time.time() - t0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", default="default", choices=TIERS)
    ap.add_argument("--feedback", default="zoom")
    ap.add_argument("--zoom-margin", type=float, default=0.5)
    ap.add_argument("--zoom-size", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="seeds trained side by side (CPU tiers: 2 on 2 cores)")
    ap.add_argument("--threads", type=int, default=None, help="threads per notebook (default: as make reproduce)")
    ap.add_argument("--force", action="store_true", help="rerun notebooks whose stamps are current")
    ap.add_argument("--skip-jittered-gt", action="store_true",
                    help="leave out the paper's jittered-ground-truth SFT ablation in the view (about 10 min per seed)")
    ap.add_argument("--summary-only", action="store_true", help="only (re)write feedback_view.json from the runs")
    ap.add_argument("--keep-n", type=int, default=200, help="validation samples of the keep-signal diagnostic")
    ap.add_argument("--wait", action="store_true", help="if a run of this tier holds its lock, wait for it")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write a committed tier's results from a tree with uncommitted changes (marked +dirty)")
    ap.add_argument("--task", nargs=2, metavar=("NOTEBOOK", "SEED"), help=argparse.SUPPRESS)
    ap.add_argument("--nolock", action="store_true", help=argparse.SUPPRESS)  # a child of a locked run
    a = ap.parse_args(argv)
    view = ViewSettings(a.feedback, a.zoom_margin, a.zoom_size)
    threads = executor.task_threads(a.tier, a.threads)
    if a.task:
        run_task(a.tier, view, a.task[0], int(a.task[1]), threads, a.force, not a.skip_jittered_gt)
        return 0
    why = guards.refuse_dirty(executor.ROOT, a.tier, a.allow_dirty, "feedback_view")
    if why:
        print(why, file=sys.stderr)
        return 2
    try:
        with guards.tier_lock(executor.ROOT, a.tier, "feedback_view " + " ".join(argv or sys.argv[1:]), a.wait):
            wall = None if a.summary_only else run_all(a.tier, view, a.seeds, a.jobs, threads, a.force,
                                                            not a.skip_jittered_gt)
            out = feedback_summary.write(a.tier, view, a.seeds, wall, threads, a.keep_n)
    except guards.TierBusy as e:
        print(e, file=sys.stderr)
        return 3
    print("\n".join(feedback_summary.markdown(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Box-perception probes and the keep-signal diagnostic of every trained model of a tier, in the view it was trained on.

After ``make reproduce`` (the paper's overlay rows, seed 0 in ``runs/<tier>/``, seeds k in ``runs/<tier>/seed_k/``)
and ``make zoom`` (the zoom rows in ``runs/<tier>/view_zoom/seed_k/``), each trained model (SFT of both recipes,
GRPO of both credit options) is probed on validation (:mod:`ivt_lib.analysis.box_probe`, with ``--keep-signal``) as
a child process, ``jobs`` at a time with one thread each. Each model's result is first written to its own file
under ``runs/<tier>/probe_trained/`` (so a killed run resumes where it stopped), then all of them are merged into
``<results_dir>/box_probe_trained.json`` under a readable name ("SFT + IVT, overlay view, seed 1").

``python -m ivt_lib.reproduction.probe_trained --tier default --feedback overlay zoom --seeds 0 1 2 --jobs 2``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..configs import TIERS, load_tier, resolve_path
from ..core.io import atomic_write_json, write_result
from . import executor

# row -> its model folder inside a seed's runs folder
ROWS = {"SFT + IVT": "sft/student", "SFT (ours: keep data) + IVT": "sft/ours", "SFT + GRPO + IVT": "grpo",
        "SFT + GRPO (ours: refine credit) + IVT": "grpo_refine_credit",
        "SFT (paper ablation: jittered-GT traces) + IVT": "sft/jittered_gt"}
VIEW_ARGS = {"overlay": ["--view", "overlay"], "zoom": ["--view", "zoom:0.5:128", "--window-at", "box"]}
PLACES = ("lm_2", "lm_4")


def seed_dir(runs: Path, feedback: str, seed: int) -> Path:
    """Where one seed's trained models of a view are (the overlay's seed 0 is the main run)."""
    if feedback == "zoom":
        return runs / "view_zoom" / f"seed_{seed}"
    return runs if seed == 0 else runs / f"seed_{seed}"


def label(row: str, feedback: str, seed: int) -> str:
    """The model's name in the results: row, view, seed."""
    return f"{row}, {feedback} view, seed {seed}"


def order(name: str) -> tuple:
    """Sort key of a results name: the paper's overlay first, then by row and seed; other names last."""
    row, _, rest = name.partition(", ")
    view, _, seed = rest.partition(" view, seed ")
    if row not in ROWS or view not in VIEW_ARGS or not seed.isdigit():
        return (len(VIEW_ARGS), 0, 0, name)
    return (list(VIEW_ARGS).index(view), list(ROWS).index(row), int(seed), name)


def trained_models(runs: Path, feedbacks: list[str], seeds: list[int]) -> dict[str, Path]:
    """``{label: merged model folder}`` of every trained model on disk, by view, seed and row."""
    out = {}
    for fb in feedbacks:
        for s in seeds:
            for row, sub in ROWS.items():
                m = seed_dir(runs, fb, s) / sub / "merged"
                if (m / "config.json").exists():
                    out[label(row, fb, s)] = m
    return out


def part_path(runs: Path, name: str) -> Path:
    """One model's result file (its own, so a killed run keeps the finished ones)."""
    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    return runs / "probe_trained" / f"{slug}.json"


def probe_argv(model: Path, name: str, feedback: str, out: Path, n: int) -> list[str]:
    """The child process's command line: box_probe on one model in its view, with the keep signal."""
    return [sys.executable, "-m", "ivt_lib.analysis.box_probe", "--model", str(model), "--label", name,
            *VIEW_ARGS[feedback], "--places", *PLACES, "--n", str(n), "--keep-signal", "--out", str(out)]


def run_all(tier: str, feedbacks: list[str], seeds: list[int], jobs: int = 2, n: int = 200, force: bool = False,
            runner=None) -> dict:
    """Probe every trained model not yet done (``force``: all), ``jobs`` at a time; merge every part into the tier's
    ``box_probe_trained.json`` (earlier entries of other models are kept); the merged content."""
    runner = runner or (lambda argv: subprocess.run(argv, check=True, cwd=str(executor.ROOT),
                                                    env={**os.environ, **executor.task_env(1)}))
    p = load_tier(tier)["03_sft"]
    runs, results = resolve_path(p["runs_dir"]), resolve_path(p["results_dir"])
    todo = {name: (fb, m) for fb in feedbacks for name, m in trained_models(runs, [fb], seeds).items()}
    if not todo:
        raise FileNotFoundError(f"no trained models of views {feedbacks}, seeds {seeds} under {runs}: run "
                                "`make reproduce` (overlay) or `make zoom` (zoom) first")
    t0 = time.time()

    def one(name: str) -> None:
        out = part_path(runs, name)
        if force or not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            fb, model = todo[name]
            runner(probe_argv(model, name, fb, out, n))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, todo))
    target = results / "box_probe_trained.json"
    merged = json.loads(target.read_text()) if target.exists() else {}
    kept = sorted(set(merged) - set(todo))
    for name in todo:
        merged.update(json.loads(part_path(runs, name).read_text()))
    merged = {k: merged[k] for k in sorted(merged, key=order)}
    sides = {k: part_path(runs, k).with_suffix(".provenance.json") for k in todo}
    made = {k: json.loads(f.read_text()).get("git_sha") for k, f in sides.items() if f.exists()}  # each part's code
    write_result(target, merged, {"tier": tier, "views": feedbacks, "seeds": seeds, "n": n, "places": list(PLACES),
                                  "models": {k: str(m) for k, (_, m) in todo.items()}, "kept_from_before": kept,
                                  "probed_at_commit": made},
                 time.time() - t0)
    return merged


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", default="default", choices=TIERS)
    ap.add_argument("--feedback", nargs="+", default=["overlay", "zoom"], choices=sorted(VIEW_ARGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="models probed side by side (one thread each)")
    ap.add_argument("--n", type=int, default=200, help="validation scenes")
    ap.add_argument("--force", action="store_true", help="reprobe models whose result file exists")
    a = ap.parse_args(argv)
    try:
        res = run_all(a.tier, a.feedback, a.seeds, a.jobs, a.n, a.force)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{len(res)} models in box_probe_trained.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

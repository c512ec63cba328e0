"""Training seeds: rerun Phase 1 (notebook 03) and Phase 2 (notebook 04) with other seeds and report mean ± sd.

``python -m ivt_lib.seeds --tier default --seeds 1 2`` executes notebooks 03 and 04 through papermill once per seed,
each into its own scratch folder ``<runs_dir>/seed_<k>`` (results, figures, checkpoints, trajectories and the executed
notebooks), on the same teacher traces (notebook 02's, so the seed varies training, not the data) and the same base. Only the paper-recipe
rows are rerun: the labelled extra rows (jittered-GT, ours, refine credit, single-step) stay single-seed. Seed 0 is
the main run in ``results/``. The summary, with every seed's numbers, goes to ``<results_dir>/seeds.json``. A seed
whose ``grpo.json`` exists is not rerun (``--force`` reruns it); an interrupted seed resumes from its checkpoints.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from .config import ROOT, TIERS, SFTStageConfig, load_tier
from .io import atomic_write_json, write_result
from .reproduce import NB_DIR, execute

ROWS = {"SFT + IVT": "sft.json", "SFT + GRPO + IVT": "grpo.json"}
# (label, path into a result) of the numbers tabulated per seed
METRICS = [("step 0 Acc@0.5", ("step0", "acc@0.5")), ("last Acc@0.5", ("last", "acc@0.5")),
           ("ORACLE best step Acc@0.5", ("oracle_best_step (uses GT)", "acc@0.5")),
           ("degradation", ("stability", "degradation")), ("improve share", ("stability", "improve")),
           ("degrade share", ("stability", "degrade")), ("stay share", ("stability", "stay"))]


def tier_dirs(tier: str) -> tuple[Path, Path]:
    """The tier's scratch and results folders (from notebook 03's parameters), as absolute paths."""
    p = load_tier(tier).get("03_sft", {})
    runs = p.get("runs_dir", SFTStageConfig.runs_dir)
    results = p.get("results_dir", SFTStageConfig.results_dir)
    return ROOT / runs, ROOT / results


def seed_params(tier: str, seed: int, runs: Path | None = None) -> dict[str, dict]:
    """Papermill parameters of notebooks 03 and 04 for one extra seed: the tier's, redirected to its own folders."""
    runs = runs or tier_dirs(tier)[0]
    allp = load_tier(tier)
    own = runs / f"seed_{seed}"
    where = {"seed": seed, "runs_dir": str(own), "results_dir": str(own / "results"),
             "figures_dir": str(own / "figures")}
    return {"03_sft": {**allp.get("03_sft", {}), **where, "traces_dir": str(runs / "traces"),
                       "ablation_jittered": False, "recipe_ours": False},
            "04_grpo": {**allp.get("04_grpo", {}), **where, "refine_credit_ablation": False, "single_step": False}}


def run_seed(tier: str, seed: int, force: bool = False, runs: Path | None = None) -> dict[str, float]:
    """Execute notebooks 03 and 04 for one seed; return ``{notebook: seconds}`` (empty when already done)."""
    from . import progress

    if seed == 0:
        raise ValueError("seed 0 is the main run (python -m ivt_lib.reproduce); pick other seeds")
    runs = runs or tier_dirs(tier)[0]
    params = seed_params(tier, seed, runs)
    own = Path(params["03_sft"]["runs_dir"])
    if not force and (own / "results" / "grpo.json").exists():
        print(f"seed {seed}: done before, skipped (--force reruns it)", flush=True)
        return {}
    base = runs / "trajectories" / "base_single_shot.jsonl"  # the paired CIs compare with the same base answers
    if not base.exists() or not (runs / "traces").exists():
        raise FileNotFoundError(f"run notebooks 00-02 of the {tier} tier first: {base} or {runs / 'traces'} is missing")
    (own / "trajectories").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base, own / "trajectories" / base.name)
    progress.quiet()
    out_dir = own / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    times = {}
    for stem in ("03_sft", "04_grpo"):
        t = time.time()
        print(f"seed {seed}: {stem} running", flush=True)
        execute(NB_DIR / f"{stem}.ipynb", out_dir / f"{stem}.ipynb", params[stem])
        times[stem] = round(time.time() - t, 1)
        print(f"seed {seed}: {stem} done in {times[stem]:.0f} s", flush=True)
    atomic_write_json(own / "results" / "seconds.json", times)
    return times


def _get(r: dict, path: tuple[str, str]) -> float:
    return float(r[path[0]][path[1]])


def summarize(per_seed: dict[int, dict[str, dict]]) -> dict:
    """``{seed: {row: result}}`` → per row and metric: every seed's value, mean and sd (sd needs ≥ 2 seeds)."""
    if not per_seed:
        raise ValueError("no seed results to summarize")
    out = {}
    for row in ROWS:
        have = {s: r[row] for s, r in sorted(per_seed.items()) if row in r}
        stats = {}
        for label, path in METRICS:
            vals = {s: _get(r, path) for s, r in have.items()}
            xs = list(vals.values())
            stats[label] = {"per_seed": vals, "mean": statistics.fmean(xs),
                            "sd": statistics.stdev(xs) if len(xs) > 1 else None}
        out[row] = {"seeds": sorted(have), **stats}
    return out


def collect(tier: str, seeds: list[int], runs: Path | None = None, results: Path | None = None
            ) -> dict[int, dict[str, dict]]:
    """Load seed 0 (the tier's results) and each extra seed's results."""
    default_runs, default_results = tier_dirs(tier)
    runs, results = runs or default_runs, results or default_results
    out = {}
    for s in [0, *seeds]:
        folder = results if s == 0 else runs / f"seed_{s}" / "results"
        got = {row: json.loads((folder / f).read_text()) for row, f in ROWS.items() if (folder / f).exists()}
        if got:
            out[s] = got
    return out


def _fmt(metric: str, x: float) -> str:
    return f"{x:.3f}" if metric == "degradation" else f"{100 * x:.1f}"  # degradation is an IoU; the rest are %


def table(summary: dict) -> list[str]:
    """Markdown lines: one row per configuration, mean ± sd over seeds for each metric."""
    labels = [m for m, _ in METRICS]
    lines = ["| configuration | seeds | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for row, st in summary.items():
        cells = [" ± ".join(_fmt(m, x) for x in (st[m]["mean"], st[m]["sd"]) if x is not None) for m in labels]
        lines.append(f"| {row} | {', '.join(map(str, st['seeds']))} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="Rerun notebooks 03 and 04 with extra training seeds; mean ± sd.")
    ap.add_argument("--tier", default="default", choices=TIERS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--force", action="store_true", help="rerun seeds that finished before")
    a = ap.parse_args(argv)
    t0 = time.time()
    for s in a.seeds:
        run_seed(a.tier, s, a.force)
    runs, results = tier_dirs(a.tier)
    seconds = {s: json.loads(f.read_text()) for s in a.seeds
               if (f := runs / f"seed_{s}" / "results" / "seconds.json").exists()}
    summary = summarize(collect(a.tier, a.seeds))
    write_result(results / "seeds.json", {"summary": summary, "seconds": seconds},
                 {"tier": a.tier, "seeds": a.seeds, "rerun": "notebooks 03 and 04, paper-recipe rows only"},
                 time.time() - t0)
    print("\n".join(table(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

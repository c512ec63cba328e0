"""Training seeds: rerun Phase 1 (notebook 03) and Phase 2 (notebook 04) with other seeds and report mean ± sd.

``python -m ivt_lib.reproduction.seeds --tier default --seeds 1 2`` executes notebooks 03 and 04 through papermill once per seed,
each into its own scratch folder ``<runs_dir>/seed_<k>`` (results, figures, checkpoints, trajectories and the executed
notebooks), on the same teacher traces (notebook 02's, so the seed varies training, not the data) and the same base.
By default only the paper-recipe rows are rerun; ``--extra-rows`` also reruns the two labelled extra rows of ours (the
keep-data SFT recipe and refine-credit GRPO). Jittered-GT and single-step stay single-seed (the full tier runs them).
Seed 0 is the main run in ``results/``. The summary, with every seed's numbers, goes to ``<results_dir>/seeds.json``,
and each configuration's per-seed numbers also into its own ``sft.json`` / ``grpo.json``. A seed whose results
hold every requested row is not rerun (``--force`` reruns it); an interrupted seed resumes from its checkpoints, and
a finished training run is loaded, not retrained.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from ..analysis import seed_stats
from ..configs import TIERS, load_tier, resolve_path
from ..core.io import atomic_write_json, write_result
from . import executor, guards
from .executor import NB_DIR, execute

# row -> (results file, key of the row inside it; None: the file's top level is the row)
PAPER_ROWS = {"SFT + IVT": ("sft.json", None), "SFT + GRPO + IVT": ("grpo.json", None)}
EXTRA_ROWS = {"SFT (ours: keep data) + IVT": ("sft.json", "ours_recipe"),
              "SFT + GRPO (ours: refine credit) + IVT": ("grpo.json", "refine_credit")}
ROWS = {**PAPER_ROWS, **EXTRA_ROWS}
# (label, path into a result) of the numbers tabulated per seed
METRICS = [("step 0 Acc@0.5", ("step0", "acc@0.5")), ("last Acc@0.5", ("last", "acc@0.5")),
           ("ORACLE best step Acc@0.5", ("oracle_best_step (uses GT)", "acc@0.5")),
           ("degradation", ("stability", "degradation")), ("improve share", ("stability", "improve")),
           ("degrade share", ("stability", "degrade")), ("stay share", ("stability", "stay"))]


def tier_dirs(tier: str) -> tuple[Path, Path]:
    """The tier's scratch and results folders (from notebook 03's parameters), as absolute paths."""
    p = load_tier(tier)["03_sft"]  # the tier file names them, or they are the tier's own (never another tier's)
    return resolve_path(p["runs_dir"]), resolve_path(p["results_dir"])


def seed_params(tier: str, seed: int, runs: Path | None = None, extra_rows: bool = False) -> dict[str, dict]:
    """Papermill parameters of notebooks 03 and 04 for one extra seed: the tier's, redirected to its own folders;
    ``extra_rows`` also trains ours (keep data) and refine-credit GRPO."""
    runs = runs or tier_dirs(tier)[0]
    allp = load_tier(tier)
    own = runs / f"seed_{seed}"
    where = {"seed": seed, "runs_dir": str(own), "results_dir": str(own / "results"),
             "figures_dir": str(own / "figures")}
    return {"03_sft": {**allp["03_sft"], **where, "traces_dir": str(runs / "traces"),
                       "ablation_jittered": False, "recipe_ours": extra_rows},
            "04_grpo": {**allp["04_grpo"], **where, "refine_credit_ablation": extra_rows,
                        "single_step": False}}


def seed_done(folder: Path, extra_rows: bool = False) -> bool:
    """Whether a seed's results folder holds every requested row."""
    want = ROWS if extra_rows else PAPER_ROWS
    return all((folder / f).exists() and (key is None or json.loads((folder / f).read_text()).get(key))
               for f, key in want.values())


STEMS = ("03_sft", "04_grpo")


def run_seed(tier: str, seed: int, force: bool = False, runs: Path | None = None, extra_rows: bool = False,
             stems: tuple[str, ...] = STEMS) -> dict[str, float]:
    """Execute notebooks 03 and 04 (or ``stems``, one of them) for one seed; return ``{notebook: seconds}`` (empty
    when already done)."""
    if not set(stems) <= set(STEMS):
        raise ValueError(f"stems {stems}: a seed reruns {STEMS} only")
    from ..core import progress

    if seed == 0:
        raise ValueError("seed 0 is the main run (python -m ivt_lib.reproduction.reproduce); pick other seeds")
    runs = runs or tier_dirs(tier)[0]
    params = seed_params(tier, seed, runs, extra_rows)
    own = Path(params["03_sft"]["runs_dir"])
    if not force and seed_done(own / "results", extra_rows):
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
    for stem in stems:
        t = time.time()
        print(f"seed {seed}: {stem} running", flush=True)
        execute(NB_DIR / f"{stem}.ipynb", out_dir / f"{stem}.ipynb", params[stem])
        times[stem] = round(time.time() - t, 1)
        print(f"seed {seed}: {stem} done in {times[stem]:.0f} s", flush=True)
    prev = own / "results" / "seconds.json"  # keep earlier runs' timings: a rerun for the extra rows loads the rest
    old = json.loads(prev.read_text()) if prev.exists() else {}
    runs_before = old.get("runs") or ([{"extra_rows": False, **old}] if old else [])  # older files: one bare run
    atomic_write_json(prev, {**{k: v for k, v in old.items() if k in STEMS}, **times,
                             "runs": [*runs_before, {"extra_rows": extra_rows, **times}]})
    return times


def run_note(r: dict) -> str:
    """One recorded run of an extra seed: each notebook it ran (one or both, as the lanes run them one at a time) with
    its seconds, and whether it trained the extra rows."""
    nbs = " + ".join(f"{nb[:2]} {r[nb]:.0f} s" for nb in STEMS if nb in r)
    return (f"{nbs} ({'with' if r.get('extra_rows') else 'without'} the extra rows)"
            + (f" [{r['note']}]" if r.get("note") else ""))


def _get(r: dict, path: tuple[str, str]) -> float:
    return float(r[path[0]][path[1]])


def summarize(per_seed: dict[int, dict[str, dict]]) -> dict:
    """``{seed: {row: result}}`` → per row and metric: every seed's value, mean and sd (sd needs ≥ 2 seeds)."""
    if not per_seed:
        raise ValueError("no seed results to summarize")
    out = {}
    for row in ROWS:
        have = {s: r[row] for s, r in sorted(per_seed.items()) if row in r}
        if not have:
            continue
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
        files = {f: json.loads((folder / f).read_text()) for f in {f for f, _ in ROWS.values()} if (folder / f).exists()}
        got = {row: files[f] if key is None else files[f].get(key) for row, (f, key) in ROWS.items() if f in files}
        got = {row: r for row, r in got.items() if r}
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


def markdown(result: dict) -> list[str]:
    """A ``seeds.json`` as markdown lines: mean ± sd per configuration, the per-seed contrasts between configurations,
    the hard cases and the GRPO validation-curve trends (notebook 05 and the README)."""
    parts = [*table(result["summary"]), ""]
    if result.get("paired_by_seed"):
        paired = {int(k): v for k, v in result["paired_by_seed"].items()}
        parts += ["Between configurations trained with the same seed: ΔAcc@0.5 of the last steps, pp [95 % paired "
                  "bootstrap CI], exact McNemar p (505 test samples).", "", *seed_stats.contrast_table(paired), "",
                  "Hard cases (step-0 IoU < 0.5; paper, SFT + GRPO: 0.108 → 0.149 mean IoU): mean IoU at step 0 and "
                  "at the last step, and each seed's gain with its 95 % paired bootstrap CI.", "",
                  *seed_stats.hard_table(paired), "",
                  "Stability, last step vs step 0, at dead bands 0.01 / 0.05 / 0.10 IoU (% of samples; kept good: "
                  "step-0 IoU ≥ 0.5 and stayed; stayed bad: below), mean ± sd over seeds.", "",
                  *seed_stats.bands_table(paired), ""]
    if result.get("validation_curves"):
        parts += ["GRPO validation curves (greedy T-step on a fixed validation subset; the SFT start, then every "
                  "`val_every` updates): first- and last-quarter mean degradation per seed.", "",
                  *seed_stats.validation_table(result["validation_curves"]), ""]
    return parts


def run_all(tier: str, seeds: list[int], force: bool = False, extra_rows: bool = False) -> dict:
    """Run each seed (skipping finished ones unless ``force``), then write ``<results>/seeds.json``; its content."""
    t0 = time.time()
    for s in seeds:
        run_seed(tier, s, force, extra_rows=extra_rows)
    return write_summary(tier, seeds, extra_rows, time.time() - t0)


def write_summary(tier: str, seeds: list[int], extra_rows: bool = False, wall_s: float | None = None) -> dict:
    """Write ``<results>/seeds.json`` from seed 0's and the extra seeds' results on disk (``wall_s``: the seconds
    the seeds took, for its provenance; None: not timed here, as when the seeds ran in parallel lanes); its content."""
    runs, results = tier_dirs(tier)
    seconds = {s: json.loads(f.read_text()) for s in seeds
               if (f := runs / f"seed_{s}" / "results" / "seconds.json").exists()}
    results_by_seed = collect(tier, seeds)
    out = {"summary": summarize(results_by_seed), "seconds": seconds, "paired_by_seed": seed_stats.per_seed(runs, seeds),
           "validation_curves": seed_stats.validation_curves(results_by_seed)}
    write_result(results / "seeds.json", out,
                 {"tier": tier, "seeds": seeds, "rerun": "notebooks 03 and 04, paper-recipe rows"
                  + (" and ours (keep data, refine credit)" if extra_rows else " only")},
                 wall_s)
    embed(results, out["summary"])
    return out


def embed(results: Path, summary: dict) -> None:
    """Copy every configuration's per-seed numbers (with mean and sd) into its own result file under ``"seeds"``:
    ``sft.json`` gets both SFT recipes', ``grpo.json`` both GRPO credit options'; ``seeds.json`` keeps them all."""
    for name in sorted({f for f, _ in ROWS.values()}):
        rows = {row: summary[row] for row, (f, _) in ROWS.items() if f == name and row in summary}
        path = results / name
        if rows and path.exists():
            atomic_write_json(path, {**json.loads(path.read_text()), "seeds": rows})


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="Rerun notebooks 03 and 04 with extra training seeds; mean ± sd.")
    ap.add_argument("--tier", default="default", choices=TIERS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--force", action="store_true", help="rerun seeds that finished before")
    ap.add_argument("--extra-rows", action="store_true", help="also rerun ours (keep data) and refine-credit GRPO")
    ap.add_argument("--threads", type=int, default=None, help="threads per notebook (default: as make reproduce)")
    ap.add_argument("--wait", action="store_true", help="if a run of this tier holds its lock, wait for it")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write a committed tier's results from a tree with uncommitted changes (marked +dirty)")
    a = ap.parse_args(argv)
    why = guards.refuse_dirty(executor.ROOT, a.tier, a.allow_dirty, "seeds")
    if why:
        print(why, file=sys.stderr)
        return 2
    env = executor.task_env(executor.task_threads(a.tier, a.threads), force=a.force)
    try:
        with guards.tier_lock(executor.ROOT, a.tier, "seeds " + " ".join(argv or sys.argv[1:]), a.wait), \
                executor.environment(env):
            print("\n".join(markdown(run_all(a.tier, a.seeds, a.force, a.extra_rows))))
    except guards.TierBusy as e:
        print(e, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

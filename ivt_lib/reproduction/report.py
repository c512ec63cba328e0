"""The generated report: ``results/README.md`` (every table, one section per notebook), from ``results/*.json``.

``python -m ivt_lib.reproduction.report`` rewrites the report, the README's headline block and ``docs/findings.md``
(:mod:`findings`) and the figures drawn from results alone; ``tests/test_report.py`` fails when a committed file and
the committed results disagree.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import report_tables as tables
from . import report_view
from ..configs import ROOT
from ..core.io import atomic_write_bytes

FULL = "full"  # the full tier's results and figures: <results>/full, <figures>/full

# claim -> notebook -> figure(s) -> result file -> how its status is read from the results (see _status)
CLAIMS = [
    ("The base model grounds single-shot (paper: 79.6 Acc@0.5)", "00_base_model", "base_samples.png",
     "base_model.json", "base"),
    ("Naive iteration collapses (paper: 79.6 -> 48.7)", "01_naive_iteration_collapse",
     "naive_per_step.png, naive_stability.png", "naive_iteration.json", "collapse"),
    ("The loop reacts to a box being drawn, not to it being right (v2)", "01_naive_iteration_collapse",
     "presence-probe table in the notebook", "naive_iteration.json", "presence"),
    ("How boxes fail when they get worse", "01_naive_iteration_collapse", "naive_worst_cases.png",
     "naive_iteration.json", "measured"),
    ("A teacher writes corrective traces from the model's own errors", "02_teacher_data_synthesis",
     "teacher_traces.png", "teacher_traces.json", "scripted"),
    ("SFT on the traces makes refinement stop hurting (paper: 82.0 Acc@0.5)", "03_sft",
     "sft_per_step.png, sft_stability.png, sft_trajectories.png", "sft.json", "sft"),
    ("GRPO cuts per-step degradation 5x (paper: 0.140 -> 0.029)", "04_grpo",
     "grpo_training.png, grpo_per_step.png, grpo_stability.png", "grpo.json", "grpo"),
    ("The gain may need oracle step selection (v2)", "05_evaluation", "forest_acc05.png",
     "evaluation.json", "oracle"),
    ("Every configuration side by side, and vs the paper", "05_evaluation",
     "per_step_all.png, per_step_seeds.png, stability_all.png, ours_vs_paper.png, loop_illustration.png, trajectory_grid.png",
     "evaluation.json", "measured"),
    ("Step through any sample", "06_explore", "explorer_view.png, explorer_jupyterlab.png", "-", "measured"),
]
NOTEBOOK_RESULTS = [("00_base_model", "base_model.json"), ("01_naive_iteration_collapse", "naive_iteration.json"),
                    ("02_teacher_data_synthesis", "teacher_traces.json"), ("03_sft", "sft.json"),
                    ("04_grpo", "grpo.json"), ("05_evaluation", "evaluation.json")]
# notebook 06 writes no result JSON; its figure's provenance carries the wall time
NOTEBOOK_FIGURES = [("06_explore", "explorer_view.png")]


def _load(results: Path, name: str) -> tuple[dict | None, dict | None]:
    p = results / name
    if not p.exists():
        return None, None
    prov = p.with_suffix(".provenance.json")
    return json.loads(p.read_text()), (json.loads(prov.read_text()) if prov.exists() else None)


def _status(kind: str, results: Path) -> str:
    """Whether we reproduce a claim, read from the committed numbers (never typed by hand)."""
    get = lambda name: _load(results, name)[0]  # noqa: E731
    try:
        if kind == "base":
            b = get("base_model.json")
            return f"measured: {tables.pct(b['overall']['acc@0.5'])} % (a 5 M stand-in, synthetic scenes)" if b else "untested"
        if kind == "collapse":
            n = get("naive_iteration.json")
            c = n["paired_last_vs_step0"]
            lo, hi = c["ci_acc@0.5"]
            txt = (f"Δ {100 * c['d_acc@0.5']:+.1f} pp {tables.ci(lo, hi)}, p = {c['mcnemar']['p']:.2g}; last-step parse "
                   f"{tables.pct(n['last']['parse_rate'])} %")
            return ("**reproduced**: " if c["significant"] and c["d_acc@0.5"] < 0 else "**not reproduced**: ") + txt
        if kind == "presence":
            g = get("naive_iteration.json")["presence_probe"]["gt_box_drawn"]
            ok = g["away_from_truth"] >= 0.5
            return (("**reproduced**" if ok else "**not reproduced**")
                    + f": a drawn ground-truth box is moved away in {tables.pct(g['away_from_truth'])} %")
        if kind == "scripted":
            return "stand-in: a **scripted** teacher that knows the truth (the paper's is a VLM)"
        if kind == "sft":
            sft, naive = get("sft.json"), get("naive_iteration.json")
            c = next(v for k, v in sft["paired"].items() if k.endswith("vs base single shot") and k.startswith("last"))
            better = sft["stability"]["degradation"] < naive["stability"]["degradation"]
            ok = better and not (c["significant"] and c["d_acc@0.5"] < 0)
            return (("**reproduced**" if ok else "**not reproduced**") + f": degradation "
                    f"{sft['stability']['degradation']:.3f} vs naive {naive['stability']['degradation']:.3f}; last step "
                    f"vs base single shot Δ {100 * c['d_acc@0.5']:+.1f} pp {tables.ci(*c['ci_acc@0.5'])}")
        if kind == "grpo":
            g, sft = get("grpo.json"), get("sft.json")
            dg, ds = g["stability"]["degradation"], sft["stability"]["degradation"]
            ratio = ds / dg if dg > 0 else float("inf")
            verdict = "**reproduced**" if ratio >= 5 else "partly (≥ 3x)" if ratio >= 3 else "**not reproduced**"
            return f"{verdict}: {ds:.3f} -> {dg:.3f} ({ratio:.1f}x)"
        if kind == "oracle":
            ev = get("evaluation.json")
            v = ev["verdict"]
            return ("**not reproduced**: a label-free rule beats single shot" if v["moonshot_met"] else
                    "**reproduced**: no label-free rule beats single shot significantly (see the verdict above)")
    except (TypeError, KeyError, StopIteration):
        return "untested (no results yet)"
    return "–"


# notebook -> (result file, its training-seconds key): a rerun loads finished training, so its wall time is not a
# training time; the note says so, with the fresh times that seeds.json recorded
TRAINING_SECONDS = {"03_sft": ("sft.json", "sft_seconds"), "04_grpo": ("grpo.json", "grpo_seconds")}


def _loaded_note(nb: str, results: Path) -> str:
    """A run-time note for a notebook whose training was loaded from finished checkpoints (under a minute)."""
    if nb not in TRAINING_SECONDS:
        return ""
    name, key = TRAINING_SECONDS[nb]
    r, seeds = _load(results, name)[0], _load(results, "seeds.json")[0]
    if not r or r.get(key) is None or r[key] >= 60:
        return ""
    fresh = [f"seed {k}: {v[nb]:.0f} s" for k, v in sorted((seeds or {}).get("seconds", {}).items()) if nb in v]
    return ("training loaded from finished checkpoints in runs/, not retrained"
            + (f"; trained fresh (seeds.json) {', '.join(fresh)}" if fresh else ""))


def render(results: Path = ROOT / "results") -> str:
    """Markdown of the whole report, from the JSON files in ``results``: one section per notebook."""
    view_sec = report_view.section(results)
    out = ["# Results report", "",
           "_Generated by `python -m ivt_lib.reproduction.report` from `results/*.json` (the default tier, "
           "`make reproduce`) and, where a heading says **full tier**, from `results/full/` (`make reproduce "
           "TIER=full`); do not edit by hand. Test split: 505 synthetic samples; every Δ is paired with a 95 % "
           "bootstrap CI; **ORACLE** rows use the ground truth to pick and are not deployable._", "",
           "Sections: [00 base](#00-base-grounders-single-shot) · [01 naive iteration](#01-naive-iteration) · "
           "[02 teacher traces](#02-teacher-traces) · [03 SFT](#03-sft-phase-1) · [04 GRPO](#04-grpo-phase-2) · "
           "[training seeds](#training-seeds-notebooks-03-04) · [05 evaluation](#05-evaluation-deployable-vs-oracle)"
           + (f" · [zoom view (ours)](#{report_view.ANCHOR})" if view_sec else "") + " · [claims](#claims) · "
           "[run time](#run-time)", ""]
    full = results / FULL
    base, _ = _load(results, "base_model.json")
    naive, _ = _load(results, "naive_iteration.json")
    ev, _ = _load(results, "evaluation.json")
    out += _base(base)
    if naive:
        out += [f"## 01 Naive iteration (T={naive['T']}): step 0, last step, oracle and label-free stopping", ""]
        out += tables.naive(naive, "pure base (data/base_model)")
        if naive.get("ablation_base"):
            out += tables.naive({"T": naive["T"], **naive["ablation_base"]}, "refine-mix ablation base")
    out += tables.teacher(_load(results, "teacher_traces.json")[0])
    sft, _ = _load(results, "sft.json")
    if sft:
        out += ["## 03 SFT (Phase 1)", ""] + tables.phase1(sft)
    out += ["## 04 GRPO (Phase 2)", ""] + _grpo(results, full)
    out += _seeds(results, base)
    if ev:
        out += ["## 05 Evaluation: deployable vs oracle", ""] + tables.deployable(ev) + tables.stability(ev)
    out += view_sec
    out += ["## Claims", "", "| claim | do we reproduce it? (read from `results/`) | notebook | "
            "figure(s) in `figures/` | result |", "|---|---|---|---|---|"]
    out += [f"| {c} | {_status(k, results)} | `notebooks/{nb}.ipynb` | {f} | {'`results/' + r + '`' if r != '-' else '–'} |"
            for c, nb, f, r, k in CLAIMS]
    out.append("")
    out += ["## Run time", ""] + _times(results, results.parent / "figures", "default tier")
    out += _full_tier(full, results.parent / "figures" / FULL)
    return "\n".join(out).rstrip() + "\n"


def _base(base: dict | None) -> list[str]:
    """Notebook 00's section: both bases single shot, by family and object count, word binding, visual probes."""
    if not base:
        return []
    head = ("| configuration | Acc@0.5 | Acc@0.7 | Acc@0.9 | mean IoU | parse % | passes |\n"
            "|---|---|---|---|---|---|---|")
    out = ["## 00 Base grounders, single shot", "", head,
           tables.row("pure base (data/base_model), overall", base["overall"], "1")]
    out += [tables.row(f"pure base, {f}-like", m, "1") for f, m in base["by_family"].items()]
    ab = base.get("ablation_base")
    if ab:
        out.append(tables.row("refine-mix ablation base, overall", ab["overall"], "1"))
        out += [tables.row(f"refine-mix ablation base, {f}-like", m, "1") for f, m in ab["by_family"].items()]
    out.append("")
    out += tables.objects("pure base", base)
    if ab:
        out += tables.objects("refine-mix ablation base", ab)
    out += tables.binding("pure base", base)
    if ab:
        out += tables.binding("refine-mix ablation base", ab)
    return out + tables.visual_probe(base.get("visual_probe", {}))


def _grpo(results: Path, full: Path) -> list[str]:
    """Notebook 04's extra section: the longer-run curve and the rollout sweep, both on validation only."""
    out = []
    curve, _ = _load(results, "grpo_curve.json")
    if curve:
        from ..analysis.grpo_curve import table as curve_table

        out += ["### Longer GRPO runs, validation only (`python -m ivt_lib.analysis.grpo_curve`)", "",
                "The paper-credit GRPO runs continued past the default tier's 80 updates (the same prompts and seeds "
                "as one longer run). Greedy validation degradation / last-step Acc@0.5 on the fixed validation "
                "subset; the test split is not evaluated. Figure: `figures/grpo_curve.png`.", "",
                *curve_table(curve), ""]
    sweep, _ = _load(results, "grpo_sweep.json")
    sweep_tier = ""
    if not sweep:
        sweep, _ = _load(full, "grpo_sweep.json")
        sweep_tier = ", **full tier** (its arms start from the full tier's SFT models)"
    if sweep:
        from .grpo_sweep import table as sweep_table

        out += ["### GRPO rollout temperature, learning rate and batch, validation only "
                f"(`python -m ivt_lib.reproduction.grpo_sweep`){sweep_tier}", "",
                "The paper does not report them. Each arm is one GRPO run (seed 0) from an SFT model with the tier's "
                f"other settings, evaluated greedily (T={sweep['T']}) on {sweep['n_val']} validation samples; the last "
                "column is the arm's last step minus its SFT start's, paired. The test split is not evaluated.", "",
                *sweep_table(sweep), ""]
    return out or ["GRPO's test-split rows are in the training-seeds and evaluation sections.", ""]


def _seeds(results: Path, base: dict | None) -> list[str]:
    """The training seeds' section: mean ± sd of every row over seeds, per-seed contrasts, wall times."""
    seeds, _ = _load(results, "seeds.json")
    if not seeds:
        return []
    from .seeds import EXTRA_ROWS, markdown, run_note

    extra = any(len(seeds["summary"].get(r, {}).get("seeds", [])) > 1 for r in EXTRA_ROWS)
    out = ["## Training seeds (notebooks 03-04)", "",
           "Mean ± sd, greedy T=2 (`python -m ivt_lib.reproduction.seeds`). Seed 0 is the main run; the other seeds "
           "rerun notebooks 03 and 04 on the same teacher traces ("
           + ("paper-recipe rows and ours: keep data, refine credit; jittered-GT and single-step stay one seed"
              if extra else "paper-recipe rows only; the labelled extra rows are one seed")
           + "). Per-seed values: `results/seeds.json`."
           + (" For reference, the base grounder (before Phase 1) single shot: "
              f"{tables.pct(base['overall']['acc@0.5'])} Acc@0.5." if base else ""), "", *markdown(seeds)]
    if seeds.get("seconds"):
        runs = [f"seed {k}: " + ", then ".join(run_note(r) for r in v.get("runs", [v]))
                for k, v in sorted(seeds["seconds"].items())]
        out += ["Wall time of notebooks 03 and 04 per seed, as run (2 CPU cores, or 1 thread beside another lane "
                "in `make reproduce`; a rerun loads finished training): " + "; ".join(runs) + ".", ""]
    return out


def _times(results: Path, figures: Path, tier: str) -> list[str]:
    """The run-time-per-notebook table of one tier, from its results' (and figures') provenance."""
    times = [(nb, _load(results, r)[1]) for nb, r in NOTEBOOK_RESULTS]
    for nb, fig in NOTEBOOK_FIGURES:
        prov = figures / Path(fig).with_suffix(".provenance.json")
        times.append((nb, json.loads(prov.read_text()) if prov.exists() else None))
    times = [(n, p) for n, p in times if p and p.get("wall_s") is not None]
    if not times:
        return []
    return ["### Run time per notebook (" + tier + ", measured)", "",
            "| notebook | wall time | machine | load avg at end (1/15 min) | note |", "|---|---|---|---|---|",
            *[f"| {n} | {p['wall_s']:.0f} s | {p['cpus']} CPUs, {p['machine']}, torch {p['packages']['torch']} | "
              f"{'/'.join(map(str, p['load_avg_1_15'])) if p.get('load_avg_1_15') else 'not recorded'} | "
              f"{p.get('note') or _loaded_note(n, results)} |" for n, p in times], ""]


def _full_tier(full: Path, figures: Path) -> list[str]:
    """The full tier's extra rows: its Phase-1 table (with the jittered-GT ablation and ours for its epochs), its
    seeds' mean ± sd, and its run times."""
    sft, seeds = _load(full, "sft.json")[0], _load(full, "seeds.json")[0]
    if not sft:
        return []
    from .seeds import markdown

    out = ["## Full tier (`make reproduce TIER=full`, `results/full/`)", "",
           "The default tier plus the jittered-GT SFT ablation and the single-step GRPO ablation (seed 0), with ours' "
           f"SFT for its epochs ({(sft.get('ours_recipe') or {}).get('steps', '?')} steps) instead of the paper "
           f"recipe's step count ({sft['sft']['steps']}). The paper-recipe rows use the default tier's settings.", ""]
    sub = tables.phase1(sft) + (["### Training seeds, mean ± sd, greedy T=2", "", *markdown(seeds)] if seeds else [])
    sub += _times(full, figures, "as run")
    return out + [line.replace("### ", "### Full tier: ", 1) if line.startswith("### ") else line for line in sub]


def update(results: Path = ROOT / "results") -> list[Path]:
    """Rewrite the report, the README's headline block, the findings page and the results-only figures; return the
    files that changed."""
    from . import findings

    changed = []
    for path, text in ((results / "README.md", render(results)),
                       (ROOT / "README.md", findings.with_headline((ROOT / "README.md").read_text(), results)),
                       (ROOT / "docs" / "findings.md", findings.render(results))):
        if not path.exists() or path.read_text() != text:
            atomic_write_bytes(path, text.encode())
            changed.append(path)
    return changed + findings.draw_figures(results, ROOT / "figures")


def main() -> int:
    """CLI entry point."""
    changed = update()
    print("\n".join(f"updated {p.relative_to(ROOT)}" for p in changed) or "report, README and findings in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())

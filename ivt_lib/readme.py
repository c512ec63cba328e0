"""Generate the README's results section from ``results/`` (``python -m ivt_lib.readme`` rewrites it in place).

The section sits between ``<!-- results:start -->`` and ``<!-- results:end -->``; ``tests/test_readme.py`` fails
when the committed README and the committed results disagree.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import ROOT

START, END = "<!-- results:start -->", "<!-- results:end -->"

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
    ("The gain may need oracle step selection (v2)", "05_evaluation", "accuracy_vs_compute.png",
     "evaluation.json", "oracle"),
    ("Every configuration side by side, and vs the paper", "05_evaluation",
     "per_step_all.png, stability_all.png, ours_vs_paper.png, loop_illustration.png, trajectory_grid.png",
     "evaluation.json", "measured"),
    ("Step through any sample", "06_explore", "explorer_view.png, explorer_jupyterlab.png", "-", "measured"),
]
NOTEBOOK_RESULTS = [("00_base_model", "base_model.json"), ("01_naive_iteration_collapse", "naive_iteration.json"),
                    ("02_teacher_data_synthesis", "teacher_traces.json"), ("03_sft", "sft.json"),
                    ("04_grpo", "grpo.json"), ("05_evaluation", "evaluation.json")]
# notebook 06 writes no result JSON; its figure's provenance carries the wall time
NOTEBOOK_FIGURES = [("06_explore", "explorer_view.png")]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _row(name: str, m: dict, passes: str = "") -> str:
    return (f"| {name} | {_pct(m['acc@0.5'])} | {_pct(m['acc@0.7'])} | {_pct(m['acc@0.9'])} | {m['mean_iou']:.3f} | "
            f"{_pct(m['parse_rate'])} | {passes or format(m.get('mean_passes', float('nan')), '.2f')} |")


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
            return f"measured: {_pct(b['overall']['acc@0.5'])} % (a 5 M stand-in, synthetic scenes)" if b else "untested"
        if kind == "collapse":
            n = get("naive_iteration.json")
            c = n["paired_last_vs_step0"]
            lo, hi = c["ci_acc@0.5"]
            txt = (f"Δ {100 * c['d_acc@0.5']:+.1f} pp {_ci(lo, hi)}, p = {c['mcnemar']['p']:.2g}; last-step parse "
                   f"{_pct(n['last']['parse_rate'])} %")
            return ("**reproduced**: " if c["significant"] and c["d_acc@0.5"] < 0 else "**not reproduced**: ") + txt
        if kind == "presence":
            g = get("naive_iteration.json")["presence_probe"]["gt_box_drawn"]
            ok = g["away_from_truth"] >= 0.5
            return (("**reproduced**" if ok else "**not reproduced**")
                    + f": a drawn ground-truth box is moved away in {_pct(g['away_from_truth'])} %")
        if kind == "scripted":
            return "stand-in: a **scripted** teacher that knows the truth (the paper's is a VLM)"
        if kind == "sft":
            sft, naive = get("sft.json"), get("naive_iteration.json")
            c = next(v for k, v in sft["paired"].items() if k.endswith("vs base single shot") and k.startswith("last"))
            better = sft["stability"]["degradation"] < naive["stability"]["degradation"]
            ok = better and not (c["significant"] and c["d_acc@0.5"] < 0)
            return (("**reproduced**" if ok else "**not reproduced**") + f": degradation "
                    f"{sft['stability']['degradation']:.3f} vs naive {naive['stability']['degradation']:.3f}; last step "
                    f"vs base single shot Δ {100 * c['d_acc@0.5']:+.1f} pp {_ci(*c['ci_acc@0.5'])}")
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


def _ci(lo: float, hi: float) -> str:
    return f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _paired(c: dict) -> str:
    """A paired comparison in one cell: Δ Acc@0.5 pp [95 % CI], gained/lost, McNemar p."""
    m = c["mcnemar"]
    return (f"{100 * c['d_acc@0.5']:+.1f} {_ci(*c['ci_acc@0.5'])} | {m['gained']}/{m['lost']} | {m['p']:.3g} | "
            f"{c['d_mean_iou']:+.3f} [{c['ci_mean_iou'][0]:+.3f}, {c['ci_mean_iou'][1]:+.3f}]")


def _deployable(ev: dict) -> list[str]:
    rows = ev.get("deployable_vs_oracle") or []
    if not rows:
        return []
    out = ["### Deployable vs oracle (505-sample synthetic test split; 05_evaluation)", "",
           "Every answer against **base single shot** on the same samples: Δ Acc@0.5 in pp with its paired 95 % "
           "bootstrap CI, the Acc@0.5 flips gained/lost and the exact McNemar p. Passes = forward passes per sample the "
           "rule must run. **ORACLE** rows use the ground truth and are not deployable; the move gate and the verifier "
           "were fitted on the validation split. The last column compares the answer with the configuration's **own step 0** "
           "(what refinement and answer selection add to that model's single shot).", "",
           "| configuration | answer | passes | Acc@0.5 | Δ Acc@0.5 [95 % CI] | gained/lost | p | Δ mIoU [95 % CI] | "
           "Acc@0.7 | Acc@0.9 | mean IoU | Δ Acc@0.5 vs own step 0 [95 % CI], p |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rule = r["rule"].replace("ORACLE", "**ORACLE**")
        c = {"d_acc@0.5": r["d_acc@0.5"], "ci_acc@0.5": r["ci_acc@0.5"], "d_mean_iou": r["d_mean_iou"],
             "ci_mean_iou": r["ci_mean_iou"], "mcnemar": {"gained": r["gained"], "lost": r["lost"], "p": r["p"]}}
        own = (f"{100 * r['d_acc@0.5_vs_step0']:+.1f} {_ci(*r['ci_acc@0.5_vs_step0'])}, {r['p_vs_step0']:.3g}"
               if "d_acc@0.5_vs_step0" in r else "–")
        out.append(f"| {r['configuration']} | {rule} | {r['passes']:.2f} | {_pct(r['acc@0.5'])} | {_paired(c)} | "
                   f"{_pct(r['acc@0.7'])} | {_pct(r['acc@0.9'])} | {r['mean_iou']:.3f} | {own} |")
    out.append("")
    if ev.get("verdict"):
        out += [f"**Verdict (generated from the numbers):** {ev['verdict']['text']}", ""]
    return out


def _naive(naive: dict, label: str) -> list[str]:
    T = naive["T"] if "T" in naive else len(naive["per_step"]) - 1
    head = ("| answer | Acc@0.5 | Acc@0.7 | Acc@0.9 | mean IoU | parse % | passes |\n"
            "|---|---|---|---|---|---|---|")
    out = [f"#### {label}", "", head, _row("step 0 (single shot)", naive["step0"], "1"),
           _row(f"last step (T={T})", naive["last"], str(T + 1)),
           _row("**ORACLE** best step (uses ground truth)", naive["oracle_best_step (uses GT)"]),
           _row("stop-when-still (label-free)", naive["stop_when_still"]),
           _row("confidence: max mean log-prob (label-free)", naive["confidence"]), ""]
    s = naive["stability"]
    out += ["| per-step IoU degradation | mean ΔIoU per step | improve % | degrade % | stay % |", "|---|---|---|---|---|",
            f"| {s['degradation']:.3f} | {s['mean_delta_iou']:+.3f} | {_pct(s['improve'])} | {_pct(s['degrade'])} | "
            f"{_pct(s['stay'])} |", ""]
    if naive.get("paired_last_vs_step0"):
        out += ["| last step vs step 0 | Δ Acc@0.5 [95 % CI] | gained/lost | p | Δ mIoU [95 % CI] |", "|---|---|---|---|---|",
                f"| step {T} | {_paired(naive['paired_last_vs_step0'])} |"]
        if naive.get("paired_curve_last_vs_step0"):
            Tc = len(naive["curve_per_step"]) - 1
            out.append(f"| step {Tc} (curve run) | {_paired(naive['paired_curve_last_vs_step0'])} |")
        out.append("")
    curve = naive.get("curve_per_step", [])
    if curve:
        out += ["Acc@0.5 by step: " + " → ".join(f"{_pct(m['acc@0.5'])}" for m in curve), ""]
    pr = naive.get("presence_probe")
    if pr:
        out += ["Presence probe (one refine step from each start):", "",
                "| start | IoU before | IoU after | toward truth % | away % | unchanged % |", "|---|---|---|---|---|---|"]
        out += [f"| {k} | {v['iou_before']:.3f} | {v['iou_after']:.3f} | {_pct(v['toward_truth'])} | "
                f"{_pct(v['away_from_truth'])} | {_pct(v['unchanged'])} |" for k, v in pr.items()]
        out.append("")
    dd = naive.get("drop_drivers")
    if dd:
        out += ["What drives the drop (one refine step from the own step-0 box; flips against step 0, exact McNemar):", "",
                "| arm | Acc@0.5 before → after | gained/lost | p | Δ Acc@0.5 vs naive arm [95 % CI], p | parse % after | "
                "after, colour named | after, no colour named |", "|---|---|---|---|---|---|---|---|"]
        out += [f"| {k} | {_pct(v['acc@0.5_before'])} → {_pct(v['acc@0.5_after'])} | "
                f"{v['mcnemar_vs_step0']['gained']}/{v['mcnemar_vs_step0']['lost']} | {v['mcnemar_vs_step0']['p']:.3g} | "
                + (f"{100 * v['vs_naive']['d_acc@0.5']:+.1f} {_ci(*v['vs_naive']['ci_acc@0.5'])}, "
                   f"{v['vs_naive']['p']:.3g}" if "vs_naive" in v else "–")
                + f" | {_pct(v['parse_rate_after'])} | {_pct(v['acc@0.5_after_colour_named'])} | "
                f"{_pct(v['acc@0.5_after_no_colour_named'])} |" for k, v in dd.items()]
        out.append("")
    an = naive.get("failure_anatomy")
    if an and an.get("n_degrading"):
        out += [f"Failure anatomy of the {an['n_degrading']} degrading samples: " + ", ".join(
            f"{k} {_pct(v)} %" for k, v in an["shares_of_degrading"].items()), ""]
    return out


def _objects(name: str, rep: dict) -> list[str]:
    rows = [(f, k, v) for f, a in rep.get("selection_anatomy", {}).items() for k, v in a["acc_by_objects"].items()]
    if not rows:
        return []
    return [f"Acc@0.5 by object count, {name} (chance = 1 / objects): " + "; ".join(
        f"{f} {k} obj. {_pct(v['acc@0.5'])} (chance {_pct(v['chance'])}, n={v['n']})" for f, k, v in rows), ""]


def _phase1(sft: dict) -> list[str]:
    """Phase-1 recipes side by side: the paper's, and the labelled extra rows beside it."""
    rows = [("paper recipe (IoU filter [0, 0.85], linear-path targets)", sft)]
    rows += [(label, sft[k]) for k, label in (("jittered_gt_ablation", "ablation: jittered-GT starts (paper's ablation)"),
                                              ("ours_recipe", "ours (extra row): keep trajectories, object-first misses"))
             if sft.get(k)]
    out = ["### Phase 1 (SFT) recipes, greedy T=2 (03_sft)", "",
           "| recipe | step 0 | last | **ORACLE** best step | degradation | degrade % | last vs own step 0 [95 % CI], p | "
           "step 0 vs base single shot [95 % CI], p |", "|---|---|---|---|---|---|---|---|"]
    for label, r in rows:
        pr = r.get("paired", {})
        cell = lambda k: (f"{100 * pr[k]['d_acc@0.5']:+.1f} {_ci(*pr[k]['ci_acc@0.5'])}, {pr[k]['mcnemar']['p']:.3g}"  # noqa: E731
                          if k in pr else "–")
        T = len(r["per_step"]) - 1 if "per_step" in r else 2
        out.append(f"| {label} | {_pct(r['step0']['acc@0.5'])} | {_pct(r['last']['acc@0.5'])} | "
                   f"{_pct(r['oracle_best_step (uses GT)']['acc@0.5'])} | {r['stability']['degradation']:.3f} | "
                   f"{_pct(r['stability']['degrade'])} | {cell(f'last step (T={T}) vs own step 0')} | "
                   f"{cell('step 0 vs base single shot')} |")
    vs = (sft.get("ours_recipe") or {}).get("vs_paper_recipe_last")
    if vs:
        out += ["", f"Ours vs the paper recipe at the last step: Δ Acc@0.5 {100 * vs['d_acc@0.5']:+.1f} pp "
                f"{_ci(*vs['ci_acc@0.5'])}, {vs['mcnemar']['gained']}/{vs['mcnemar']['lost']} flips, "
                f"p = {vs['mcnemar']['p']:.3g}. One training seed each."]
    return out + [""]


def render(results: Path = ROOT / "results") -> str:
    """Markdown for the results section, from the JSON files in ``results``."""
    out = [START, "", "_Generated by `python -m ivt_lib.readme` from `results/`; do not edit by hand._", ""]
    head = ("| configuration | Acc@0.5 | Acc@0.7 | Acc@0.9 | mean IoU | parse % | passes |\n"
            "|---|---|---|---|---|---|---|")
    base, _ = _load(results, "base_model.json")
    naive, _ = _load(results, "naive_iteration.json")
    ev, _ = _load(results, "evaluation.json")
    if ev:
        out += _deployable(ev)
    if base:
        out += ["### Base grounders, single shot (505-sample synthetic test split)", "", head,
                _row("pure base (data/base_model), overall", base["overall"], "1")]
        out += [_row(f"pure base, {f}-like", m, "1") for f, m in base["by_family"].items()]
        ab = base.get("ablation_base")
        if ab:
            out.append(_row("refine-mix ablation base, overall", ab["overall"], "1"))
            out += [_row(f"refine-mix ablation base, {f}-like", m, "1") for f, m in ab["by_family"].items()]
        out.append("")
        out += _objects("pure base", base)
        if ab:
            out += _objects("refine-mix ablation base", ab)
    if naive:
        out += [f"### Naive iteration (T={naive['T']}): step 0, last step, oracle and label-free stopping", ""]
        out += _naive(naive, "pure base (data/base_model)")
        if naive.get("ablation_base"):
            out += _naive({"T": naive["T"], **naive["ablation_base"]}, "refine-mix ablation base")
    sft, _ = _load(results, "sft.json")
    if sft:
        out += _phase1(sft)
    seeds, _ = _load(results, "seeds.json")
    if seeds:
        from .seeds import table

        out += ["### Training seeds: mean ± sd, greedy T=2 (`python -m ivt_lib.seeds`)", "",
                "Seed 0 is the main run above; the other seeds rerun notebooks 03 and 04 on the same teacher traces "
                "(paper-recipe rows only; the labelled extra rows are one seed). Per-seed values: `results/seeds.json`."
                + (f" For reference, the untrained base single shot: {_pct(base['overall']['acc@0.5'])} Acc@0.5."
                   if base else ""), "", *table(seeds["summary"]), ""]
    if ev:
        out += ["### Stability of every iterative configuration (05_evaluation)", "",
                "| configuration | T | degradation | improve % | degrade % | stay % |", "|---|---|---|---|---|---|"]
        for r in ev["table"]:
            if "degradation" in r and r["selection"].startswith("last step (T="):
                T = r["selection"][len("last step (T="):].rstrip(")")
                out.append(f"| {r['configuration']} | {T} | {r['degradation']:.3f} | {_pct(r['improve'])} | "
                           f"{_pct(r['degrade'])} | {_pct(r['stay'])} |")
        out.append("")
        conf = ev.get("confidence_correlation", {})
        if conf:
            out += ["Confidence (mean token log-prob) vs correctness, Pearson r (paper: ≈ 0.22): " + "; ".join(
                f"{k} {v['r_correct']:.2f}" for k, v in conf.items() if v.get("n", 0) >= 3), ""]
        if ev.get("versus_paper"):
            out += ["Ours beside the paper's (**different models and data**: compare the shape, not the values):", "",
                    "| configuration | ours Acc@0.5 | paper Acc@0.5 | ours mean IoU | paper mean IoU |",
                    "|---|---|---|---|---|"]
            for r in ev["versus_paper"]:
                pm = r["paper mean_iou"]
                out.append(f"| {r['configuration']} | {_pct(r['ours acc@0.5'])} | {_pct(r['paper acc@0.5'])} | "
                           f"{r['ours mean_iou']:.3f} | {'–' if pm is None else f'{pm:.3f}'} |")
            out.append("")
    out += ["### Claim → notebook → figure", "", "| claim | do we reproduce it? (read from `results/`) | notebook | "
            "figure(s) in `figures/` | result |", "|---|---|---|---|---|"]
    out += [f"| {c} | {_status(k, results)} | `notebooks/{nb}.ipynb` | {f} | {'`results/' + r + '`' if r != '-' else '–'} |"
            for c, nb, f, r, k in CLAIMS]
    out.append("")
    times = [(nb, _load(results, r)[1]) for nb, r in NOTEBOOK_RESULTS]
    for nb, fig in NOTEBOOK_FIGURES:
        prov = results.parent / "figures" / Path(fig).with_suffix(".provenance.json")
        times.append((nb, json.loads(prov.read_text()) if prov.exists() else None))
    times = [(n, p) for n, p in times if p and p.get("wall_s") is not None]
    if times:
        out += ["### Run time per notebook (default tier, measured)", "",
                "| notebook | wall time | machine | load avg at end (1/15 min) | note |", "|---|---|---|---|---|"]
        out += [f"| {n} | {p['wall_s']:.0f} s | {p['cpus']} CPUs, {p['machine']}, torch {p['packages']['torch']} | "
                f"{'/'.join(map(str, p['load_avg_1_15'])) if p.get('load_avg_1_15') else 'not recorded'} | "
                f"{p.get('note', '')} |" for n, p in times]
        out.append("")
    out.append(END)
    return "\n".join(out)


def update(readme: Path = ROOT / "README.md", results: Path = ROOT / "results") -> bool:
    """Rewrite the README's results section; return True if it changed."""
    text = readme.read_text()
    a, b = text.index(START), text.index(END) + len(END)
    new = text[:a] + render(results) + text[b:]
    if new != text:
        readme.write_text(new)
    return new != text


if __name__ == "__main__":
    changed = update()
    print("README results section", "updated" if changed else "already in sync")
    sys.exit(0)

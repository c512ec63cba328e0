"""The report's section on box perception and the zoom feedback view (ours, a labelled extra), from
``box_probe.json`` (the bases), ``box_probe_trained.json`` (the models trained on the zoom view) and
``feedback_view.json`` (the IVT chain in that view)."""
from __future__ import annotations

import json
from pathlib import Path

from ..analysis import perception_tables, trace_corrections
from . import feedback_summary

ANCHOR = "box-perception-and-the-zoom-feedback-view-ours"


def _read(results: Path, name: str) -> dict | None:
    p = results / name
    return json.loads(p.read_text()) if p.exists() else None


def seeds_summary(view: dict) -> list[str]:
    """Mean ± sd over seeds of each rule's Acc@0.5 and its Δ vs base single shot; seeds significantly better/worse."""
    lines = ["| configuration | seeds | rule | Acc@0.5 mean ± sd | Δ vs base single shot, pp, mean ± sd | seeds "
             "better / worse (p < 0.05) |", "|---|---|---|---|---|---|"]
    for name, c in view["configurations"].items():
        seeds = ", ".join(map(str, c["per_seed"]))
        for rule in feedback_summary.MEAN_OF:
            a = c["across_seeds"].get(rule)
            if not a:
                continue
            sd = lambda m: "" if m["sd"] is None else f" ± {100 * m['sd']:.1f}"  # noqa: E731
            lines.append(f"| {name} | {seeds} | {rule} | {100 * a['acc@0.5']['mean']:.1f}{sd(a['acc@0.5'])} | "
                         f"{100 * a['d_acc@0.5']['mean']:+.1f}{sd(a['d_acc@0.5'])} | "
                         f"{a['seeds_better_p<0.05']} / {a['seeds_worse_p<0.05']} |")
    return lines


def section(results: Path) -> list[str]:
    """The whole section (empty when neither probes nor the view's chain have results)."""
    probes, trained = _read(results, "box_probe.json"), _read(results, "box_probe_trained.json")
    view = _read(results, "feedback_view.json")
    if not (probes or view):
        return []
    out = ["## Box perception and the zoom feedback view (ours)", "",
           "Can the loop see where its box sits? Linear probes on validation (`python -m ivt_lib.analysis.box_probe`; "
           "folds grouped by scene; accuracy % [Wilson 95 % CI], chance 50 %): drawn vs no box, the ground-truth box vs "
           "the same box shifted 2 / 4 / 8 px, and the horizontal offset (ridge RMSE beside guessing the mean). "
           "**grid** keeps the token layout, **pooled** averages the tokens under the box; `merged` is what the "
           "language model receives. The **zoom** view (`ivt_lib.core.feedback`, a labelled extra; the paper's "
           "overlay stays every other row's view) adds a second image, the window around the previous box enlarged "
           "(margin m of the box's side on each side, s px), placed as the loop places it; the model answers in the "
           "window's frame and the loop maps the answer back.", ""]
    if probes:
        out += ["### The bases", "", *perception_tables.representation(probes, ("vision", "merged", "lm_4")), "",
                "One refine step (the base has never seen the zoom view):", "", *perception_tables.behaviour(probes), ""]
    if view:
        v = view["view"]
        out += [f"### The IVT chain in the zoom view (margin {v['zoom_margin']}, {v['zoom_size']} px; "
                "`python -m ivt_lib.reproduction.feedback_view`)", "",
                "Teacher traces (both recipes), SFT and GRPO rerun in the zoom view; the paper's rows over seeds "
                f"{', '.join(map(str, view['seeds']))}, the labelled extra rows seed 0; the paper's ablation, SFT on "
                "traces that start from jittered ground truth, at every seed (its traces demonstrate small "
                "corrections but never a keep; see the trace sizes below). Test split, T=2, each rule paired against "
                "base single shot.", "", *feedback_summary.markdown(view)[2:], "",
                "Over seeds:", "", *seeds_summary(view), "", *feedback_summary.bands_table(view), "",
                *feedback_summary.keep_table(view), "", *feedback_summary.step0_table(view), ""]
    ablation = _read(results, "view_ablation.json")
    if ablation:
        out += ["### Does the model use the window? (`python -m ivt_lib.analysis.view_ablation`, validation)", "",
                "One refine step from the truth shifted 4 px; the window as the loop shows it, blanked, or cut around a "
                "box 10 px further off, with the prompt and the full image unchanged. % [Wilson 95 % CI].", "",
                "| model | window | ended closer | Acc@0.5 | answer changed vs the window as shown |", "|---|---|---|---|---|"]
        cell = lambda x: f"{100 * x['share']:.0f} [{100 * x['ci'][0]:.0f}, {100 * x['ci'][1]:.0f}]"  # noqa: E731
        out += [f"| {m} | {arm} | {cell(x['closer'])} | {cell(x['acc@0.5'])} | "
                f"{cell(x['changed_vs_shown']) if 'changed_vs_shown' in x else '–'} |"
                for m, r in ablation.items() for arm, x in r["arms"].items()] + [""]
    if trained:
        out += ["### Probes of the trained models, each in the view it was trained on (validation; "
                "`python -m ivt_lib.reproduction.probe_trained`)", "",
                "Mean ± sd over seeds, %: the grid probe at the language model's 4th layer, one refine step from the "
                "truth (kept: IoU ≥ 0.9 with the start), from the truth shifted 4 / 8 px (ended closer), from the "
                "model's own step-0 box, and the keep signal from right starts (step-0 IoU ≥ 0.85; greedy, and 6 "
                "samples at temperature 1 as GRPO's rollouts).", "", *perception_tables.trained_summary(trained), "",
                "Per model:", "", *perception_tables.behaviour(trained), "",
                *feedback_summary.keep_table({"keep_signal": perception_tables.keep_signals(trained)}), ""]
    sizes = _read(results, "trace_corrections.json")
    if sizes:
        out += ["### Which corrections do the SFT traces teach? (`python -m ivt_lib.analysis.trace_corrections`)", "",
                "Each refine row's correction: the distance between the stated box's centre and the teacher's, over "
                "the stated box's longer side (frame-free; on these scenes a 4 px miss is about 0.14, an 8 px miss "
                "about 0.28). % of refine rows per size.", "", *trace_corrections.table(sizes), ""]
    return out

"""The findings, every number read from ``results/*.json``: the README's headline block and ``docs/findings.md``.

Nothing here is typed by hand except the sentences around the numbers; :mod:`report` writes both files and
``tests/test_report.py`` fails when they disagree with the committed results.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..analysis import forest
from ..analysis.perception_tables import beh_value, rep_value
from .report_tables import ci, pct

START, END = "<!-- headline:start -->", "<!-- headline:end -->"
BASE = "base, single shot"
NB = "../notebooks/"  # links from docs/findings.md
# (row label, configuration in evaluation.json, rule, seeds.json row or None)
HEADLINE = [
    ("base, single shot", BASE, "step 0", None),
    ("base + naive iteration, last step", "base + naive iteration", "last step (T=2)", None),
    ("SFT + IVT, last step", "SFT + IVT", "last step (T=2)", "SFT + IVT"),
    ("SFT + GRPO + IVT, last step", "SFT + GRPO + IVT", "last step (T=2)", "SFT + GRPO + IVT"),
    ("SFT + GRPO + IVT, **ORACLE** best step (uses GT)", "SFT + GRPO + IVT", "ORACLE best step (uses GT)", None),
    ("ours (extra row): keep-data SFT + IVT, last step", "SFT (ours: keep data) + IVT", "last step (T=2)",
     "SFT (ours: keep data) + IVT"),
    ("ours (extra row): GRPO refine credit + IVT, last step", "SFT + GRPO (ours: refine credit) + IVT",
     "last step (T=2)", "SFT + GRPO (ours: refine credit) + IVT"),
]


def load(results: Path) -> dict[str, dict]:
    """Every results file the findings read, by stem (missing files are absent)."""
    names = ("base_model", "naive_iteration", "sft", "grpo", "evaluation", "seeds", "box_probe", "feedback_view",
             "box_probe_trained", "trace_corrections")
    return {n: json.loads((results / f"{n}.json").read_text()) for n in names if (results / f"{n}.json").exists()}


def _row(ev: dict, conf: str, rule: str) -> dict | None:
    return next((r for r in ev["deployable_vs_oracle"] if r["configuration"] == conf and r["rule"] == rule), None)


def _spread(seeds: dict | None, row: str | None, metric: str = "last Acc@0.5") -> str:
    s = (seeds or {}).get("summary", {}).get(row or "", {}).get(metric)
    return f"{pct(s['mean'])} ± {pct(s['sd'])} ({len(s['per_seed'])} seeds)" if s and len(s["per_seed"]) > 1 else "–"


def headline(r: dict[str, dict]) -> list[str]:
    """The README's table: paper vs ours, Δ vs base single shot with its paired CI, and the seed spread."""
    ev, seeds = r["evaluation"], r.get("seeds")
    paper = {p["configuration"]: p["paper acc@0.5"] for p in ev.get("versus_paper", [])}
    out = ["| configuration (505 test samples, T=2) | paper Acc@0.5 | ours Acc@0.5, seed 0 | Δ vs base single shot "
           "[95 % CI], p | ours over seeds, mean ± sd |", "|---|---|---|---|---|"]
    for label, conf, rule, srow in HEADLINE:
        x = _row(ev, conf, rule)
        if x is None:
            continue
        p = paper.get(conf) if rule != "ORACLE best step (uses GT)" else None
        d = "–" if conf == BASE else f"{100 * x['d_acc@0.5']:+.1f} {ci(*x['ci_acc@0.5'])}, {x['p']:.2g}"
        out.append(f"| {label} | {pct(p) if p else '–'} | {pct(x['acc@0.5'])} | {d} | {_spread(seeds, srow)} |")
    b = ev["verdict"]["best_deployable"]
    out.append(f"| best **label-free** answer: {b['configuration']}, {b['rule']} | – | {pct(b['acc@0.5'])} | "
               f"{100 * b['d_acc@0.5']:+.1f} {ci(*b['ci_acc@0.5'])}, {b['p']:.2g} | – |")
    return out


def bullets(r: dict[str, dict], nb: str = NB, res: str = "../results/") -> list[str]:
    """The findings, one line each, with the notebook and the results file behind it."""
    n, ev, base, seeds = r["naive_iteration"], r["evaluation"], r["base_model"], r.get("seeds", {})
    c, g = n["paired_last_vs_step0"], n["presence_probe"]["gt_box_drawn"]
    link = lambda stem, f: f"([notebook]({nb}{stem}.ipynb), [`{f}`]({res}{f}))"  # noqa: E731
    pairs = seeds.get("paired_by_seed", {})

    def per_seed(key: str) -> str:
        return "; ".join(f"seed {k} {100 * v['contrasts'][key]['d_acc@0.5']:+.1f} {ci(*v['contrasts'][key]['ci_acc@0.5'])}"
                         for k, v in sorted(pairs.items()) if key in v.get("contrasts", {}))

    summ = seeds.get("summary", {})
    deg = lambda row: (f"{summ[row]['degradation']['mean']:.3f} ± {summ[row]['degradation']['sd']:.3f}"  # noqa: E731
                       if row in summ else "–")
    v, vp = ev["verdict"], base.get("visual_probe", {}).get("pure grounder", {}).get("colour")
    gap = v["best_of_n_share_of_oracle_gain"]
    wins = sum(x["best_of_n_gain_pp"] > x["oracle_gain_pp"] for x in gap.values())
    out = [
        f"**Naive iteration collapses**: Acc@0.5 {pct(n['step0']['acc@0.5'])} → {pct(n['last']['acc@0.5'])} at "
        f"T={n['T']} (Δ {100 * c['d_acc@0.5']:+.1f} pp {ci(*c['ci_acc@0.5'])}, p = {c['mcnemar']['p']:.2g}; paper "
        f"79.6 → 48.7) {link('01_naive_iteration_collapse', 'naive_iteration.json')}",
        f"**The loop reacts to a drawn box, not to whether it is right**: a drawn ground-truth box is moved away in "
        f"{pct(g['away_from_truth'])} % of samples (IoU {g['iou_before']:.2f} → {g['iou_after']:.2f}) "
        f"{link('01_naive_iteration_collapse', 'naive_iteration.json')}",
        f"**SFT on the paper's traces does not stop the loss**: degradation {deg('SFT + IVT')} over seeds vs naive "
        f"{n['stability']['degradation']:.3f} {link('03_sft', 'seeds.json')}",
        f"**GRPO adds nothing measurable**: GRPO vs SFT at the last step, per seed: "
        f"{per_seed('SFT + GRPO + IVT vs SFT + IVT, last step')} pp {link('04_grpo', 'seeds.json')}",
        f"**Keep data (ours, labelled) lowers the degradation**: {deg('SFT (ours: keep data) + IVT')} vs the paper "
        f"recipe's {deg('SFT + IVT')}; last step vs the paper recipe, per seed: "
        f"{per_seed('SFT (ours: keep data) + IVT vs SFT + IVT, last step')} pp {link('03_sft', 'seeds.json')}",
        f"**No label-free rule beats base single shot**: the best deployable answer is {v['best_deployable']['configuration']}"
        f", {v['best_deployable']['rule']}: Δ {100 * v['best_deployable']['d_acc@0.5']:+.1f} pp "
        f"{ci(*v['best_deployable']['ci_acc@0.5'])}, p = {v['best_deployable']['p']:.2g} "
        f"{link('05_evaluation', 'evaluation.json')}",
        f"**The ORACLE best step gains less than best-of-N sampling at the same compute** in {wins} of {len(gap)} "
        f"configurations (both use the ground truth to pick) {link('05_evaluation', 'evaluation.json')}",
    ]
    out += view_bullets(r, link)
    if vp:
        out.append(f"**The base cannot read colour where the language model looks**: a linear probe reads an object's "
                   f"colour from pixels at {pct(vp['pixels'])} %, from the merged image token at {pct(vp['lm_token'])} % "
                   f"(chance {pct(vp['majority'])} %) {link('00_base_model', 'base_model.json')}")
    return out


def _a4(view: dict) -> str:
    """Aligned vs 4 px at the merged tokens, grid / pooled, and the offset RMSE beside guessing."""
    rep = view["representation"]
    g, p = rep["merged"], rep["merged/pooled"]
    return (f"{pct(g['aligned_vs_4px']['acc'])} % / {pct(p['aligned_vs_4px']['acc'])} % (grid / pooled; offset RMSE "
            f"{g['offset']['rmse']:.1f} px vs guessing {g['offset']['guess_rmse']:.1f})")


def view_bullets(r: dict[str, dict], link) -> list[str]:
    """The box-perception and zoom-view findings (ours), when their results exist."""
    out, probes, view = [], r.get("box_probe", {}).get("data/base_model"), r.get("feedback_view")
    if probes and "overlay" in probes:
        zoom = next((k for k in probes if k.startswith("zoom m0.5 s128")), None) or next(
            (k for k in probes if k.startswith("zoom")), None)
        out.append(f"**In the paper's overlay the model cannot see where its box sits**: a probe tells the true box "
                   f"from one shifted 4 px at the language model's input at {_a4(probes['overlay'])}; in the **zoom "
                   f"view** (ours, an enlarged second image of the box's window) at {_a4(probes[zoom])}"
                   f" {link('01_naive_iteration_collapse', 'box_probe.json')}" if zoom else "")
    if view:
        summ = r.get("seeds", {}).get("summary", {})
        for name in ("SFT + IVT", "SFT + GRPO + IVT"):
            c = view["configurations"].get(name)
            if not c:
                continue
            a, per = c["across_seeds"], c["per_seed"].values()
            own = [x["rules"]["last step"] for x in per]
            own_d = ", ".join(f"{100 * x['d_acc@0.5_vs_step0']:+.1f}" for x in own)
            ov = summ.get(name, {}).get("degradation")
            out.append(f"**{name} in the zoom view (ours)**, {len(own)} seeds: degradation "
                       f"{', '.join(f'{x:.3f}' for x in a['degradation']['per_seed'])}"
                       + (f" (overlay: {ov['mean']:.3f} ± {ov['sd']:.3f})" if ov and ov.get("sd") is not None else "")
                       + "; last step vs its own step 0 "
                       f"{own_d} pp (significant in "
                       f"{sum(x['significant_vs_step0'] for x in own)}); vs base single shot: step 0 "
                       f"{_signed_pp(a['step 0']['d_acc@0.5'])} pp, last step "
                       f"{_signed_pp(a['last step']['d_acc@0.5'])} pp "
                       f"({a['last step']['seeds_worse_p<0.05']} of {len(own)} seeds worse at p < 0.05) "
                       f"{link('05_evaluation', 'feedback_view.json')}")
    out += trained_bullets(r.get("box_probe_trained"), link, r.get("trace_corrections"))
    return [b for b in out + [jittered_bullet(view, r.get("box_probe_trained"), link, r.get("trace_corrections"))] if b]


def _signed_pp(m: dict) -> str:
    """A ``{"mean", "sd"}`` share over seeds as signed percentage points, ± sd when there is one."""
    return f"{100 * m['mean']:+.1f}" + (f" ± {100 * m['sd']:.1f}" if m["sd"] is not None else "")


def _mean(rs: list[dict], get) -> str:
    xs = [x for x in map(get, rs) if x is not None]
    return f"{pct(sum(xs) / len(xs))} %" if xs else "–"


ABLATION = "SFT (paper ablation: jittered-GT traces) + IVT"  # feedback_view.json / box_probe_trained.json row
TRACE_SETS = ("paper recipe (own errors)", "paper ablation: jittered ground truth")  # trace_corrections.json names


def _cos(rs: list[dict], start: str = "gt shifted 8 px") -> str:
    xs = [c for r in rs if (c := beh_value(r, start, "cosine_move_vs_needed")) is not None]
    return f"{sum(xs) / len(xs):+.2f}" if xs else "–"


def trained_bullets(trained: dict | None, link, sizes: dict | None = None) -> list[str]:
    """The trained models' probes, overlay vs zoom (means over configurations and seeds), when probed; with
    ``sizes`` (``trace_corrections.json``), how often the traces demonstrate a correction of about 4-8 px."""
    by_view: dict[str, list[dict]] = {}
    for name, views in (trained or {}).items():
        if name.startswith(ABLATION):
            continue  # its own finding (jittered_bullet); these means are the paper recipe's and ours
        for v, res in views.items():
            by_view.setdefault("zoom" if v.startswith("zoom") else "overlay", []).append(res)
    if "overlay" not in by_view:
        return []
    a4 = lambda r: rep_value(r, "lm_4", "aligned_vs_4px")  # noqa: E731
    beh = lambda start, k: lambda r: beh_value(r, start, k)  # noqa: E731
    views = [v for v in ("overlay", "zoom") if v in by_view]
    both = lambda get: " / ".join(_mean(by_view[v], get) for v in views)  # noqa: E731
    text = (f"**What the trained models see of their box** (validation; means over the models trained in the "
            + " / ".join(f"{v} view ({len(by_view[v])})" for v in views) + f"): aligned vs 4 px read at {both(a4)} "
            f"(language model layer 4); one refine step keeps a true box in {both(beh('gt', 'kept'))} and ends closer "
            f"from a 4 px shift in {both(beh('gt shifted 4 px', 'closer'))}, from 8 px in "
            f"{both(beh('gt shifted 8 px', 'closer'))} (cosine of that move with the needed correction: "
            + " / ".join(_cos(by_view[v]) for v in views) + ")")
    mid = "[0.14, 0.28)"
    own, jit = ((sizes or {}).get(k, {}).get("bins", {}).get(mid) for k in TRACE_SETS)
    if own is not None:
        text += (f"; the paper recipe's traces demonstrate a correction of about 4-8 px (0.14-0.28 box sides) in "
                 f"{pct(own)} % of refine rows" + (f", the jittered-ground-truth traces in {pct(jit)} %" if jit is not None
                                                   else ""))
    return [text + f" {link('05_evaluation', 'box_probe_trained.json')}"]


def _zoom_models(trained: dict | None, row: str) -> list[dict]:
    return [res for name, views in (trained or {}).items() if name.startswith(row + ", zoom view")
            for res in views.values()]


def jittered_bullet(view: dict | None, trained: dict | None, link, sizes: dict | None = None) -> str:
    """The paper's jittered-ground-truth SFT ablation in the zoom view: what one refine step does from an 8 px miss
    beside SFT on the own-error traces (validation), and its test accuracy, when both were run; with ``sizes``
    (``trace_corrections.json``), how many of its refine rows keep the box."""
    c = (view or {}).get("configurations", {}).get(ABLATION)
    jit, own = _zoom_models(trained, ABLATION), _zoom_models(trained, "SFT + IVT")
    if not c or not jit or not own:
        return ""
    a, per = c["across_seeds"], [x["rules"]["last step"] for x in c["per_seed"].values()]
    keep = (sizes or {}).get(TRACE_SETS[1] + ", zoom view", {}).get("bins", {}).get("[0, 1e-09)")
    beh = lambda rs, start, k: _mean(rs, lambda r: beh_value(r, start, k))  # noqa: E731
    return (f"**The paper's jittered-ground-truth SFT in the zoom view** (a labelled extra, {len(per)} seeds; its "
            f"traces demonstrate the small corrections the own-error traces lack): from an 8 px shift one refine step "
            f"ends closer in {beh(jit, 'gt shifted 8 px', 'closer')} (cosine {_cos(jit)}) against "
            f"{beh(own, 'gt shifted 8 px', 'closer')} ({_cos(own)}) after SFT on the own-error traces, from 4 px in "
            f"{beh(jit, 'gt shifted 4 px', 'closer')} against {beh(own, 'gt shifted 4 px', 'closer')}; but it keeps a "
            f"true box in only {beh(jit, 'gt', 'kept')} against {beh(own, 'gt', 'kept')} (validation"
            + (f"; its traces keep the box in {pct(keep)} % of refine rows" if keep is not None else "")
            + "). Test: last step vs its own step 0 "
            + ", ".join(f"{100 * x['d_acc@0.5_vs_step0']:+.1f}" for x in per) + " pp (significant in "
            f"{sum(x['significant_vs_step0'] for x in per)}); vs base single shot: step 0 "
            f"{_signed_pp(a['step 0']['d_acc@0.5'])} pp, last step {_signed_pp(a['last step']['d_acc@0.5'])} pp, "
            f"ORACLE best step {_signed_pp(a['ORACLE best step (uses GT)']['d_acc@0.5'])} pp "
            f"{link('05_evaluation', 'feedback_view.json')}")


def render(results: Path) -> str:
    """``docs/findings.md``: the headline table and every finding with its numbers, notebook and results file."""
    r = load(results)
    return "\n".join([
        "# What we found", "",
        "_Generated by `python -m ivt_lib.reproduction.report` from `results/*.json` (default tier); do not edit by "
        "hand. The stand-in is a 4.9 M-parameter Qwen3-VL on synthetic scenes with a **scripted** teacher: compare "
        "the shape of each effect with the paper's, not its values. Full tables: [the report](../results/README.md)._",
        "", "## Headline", "", *headline(r), "", "## Findings", "",
        *[f"{i}. {b}" for i, b in enumerate(bullets(r), 1)], "",
        "## The verdict of notebook 05, as generated", "", r["evaluation"]["verdict"]["text"], ""])


def with_headline(readme: str, results: Path) -> str:
    """``readme`` with its block between the headline markers regenerated."""
    r = load(results)
    block = [START, *headline(r), "", *[f"* {b}" for b in bullets(r, "notebooks/", "results/")], END]
    a, b = readme.index(START), readme.index(END) + len(END)
    return readme[:a] + "\n".join(block) + readme[b:]


def draw_figures(results: Path, figures: Path) -> list[Path]:
    """The figures drawn from results alone (the forest plot) and, with the zoom view's results, the illustration of
    the two views on the first validation scene; return the files that changed."""
    ev = results / "evaluation.json"
    out = forest.save(json.loads(ev.read_text()), figures / "forest_acc05.png") if ev.exists() else []
    view = results / "feedback_view.json"
    if view.exists():
        from ..analysis.plots import view_illustration
        from ..corpora.splits import load_split

        v = json.loads(view.read_text())["view"]
        fig = view_illustration(load_split("validation", limit=1)[0], 4.0, v["zoom_margin"], v["zoom_size"])
        out += forest.save_figure_if_changed(fig, figures / "zoom_view.png")
    return out

"""``feedback_view.json``: the IVT chain in a feedback view, every seed and answer rule against base single shot.

Reads the trajectories that :mod:`ivt_lib.reproduction.feedback_view` left under ``<runs_dir>/view_<feedback>/``,
adds the naive base in the view and in the overlay (run here: no training), and the keep-signal diagnostic of the
view's SFT models on validation (run here), and writes one result file with its provenance.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from ..analysis import deployable
from ..analysis.seed_stats import trajectories_dir
from ..analysis.step0_changes import step0_changes, table as step0_lines
from ..configs import load_tier, model_source, resolve_path, stage_config
from ..core import metrics
from ..core.feedback import ViewSettings
from ..core.io import write_result
from ..core.trajectory import load_trajectories, save_trajectories

# configuration -> trajectory file in a seed's folder (the paper's rows first; ours, labelled extras, seed 0 only;
# the paper's jittered-GT ablation every seed)
CONFIGS = {"SFT + IVT": "sft.jsonl", "SFT + GRPO + IVT": "grpo.jsonl",
           "SFT (ours: keep data) + IVT": "sft_ours.jsonl",
           "SFT + GRPO (ours: refine credit) + IVT": "grpo_refine_credit.jsonl",
           "SFT (paper ablation: jittered-GT traces) + IVT": "sft_jittered_gt.jsonl"}
MAIN = ("SFT + IVT", "SFT + GRPO + IVT")
MEAN_OF = ("step 0", "last step", "ORACLE best step (uses GT)", "stop-when-still (label-free)")


def view_dir(tier: str, view: ViewSettings) -> Path:
    """The view's scratch folder inside the tier's runs folder."""
    return resolve_path(load_tier(tier)["03_sft"]["runs_dir"]) / f"view_{view.feedback}"


def _rule_key(rule: str) -> str:
    return "last step" if rule.startswith("last step") else rule


def config_result(trajs, base, still_eps: float, seed: int = 0) -> dict:
    """One configuration: every answer rule paired against base single shot, stability at the three dead bands."""
    both = deployable.common_samples({"base": base, "cfg": trajs})
    ref = metrics.step_ious(both["base"], 0)
    rows = deployable.rows_for("cfg", deployable.rule_answers(both["cfg"], still_eps), ref, seed)
    return {"n": len(both["cfg"]), "rules": {_rule_key(r["rule"]): {k: v for k, v in r.items() if k != "configuration"}
                                             for r in rows},
            "stability": metrics.stability(both["cfg"]), "stability_bands": metrics.stability_bands(both["cfg"]),
            "step0_vs_base": step0_changes(both["base"], both["cfg"])}


def naive(tier: str, view: ViewSettings, folder: Path) -> dict[str, list]:
    """The base refining its own boxes (T of notebook 01) in the overlay and in ``view``; cached as trajectories."""
    from ..core.loop import run_loop
    from ..core.models import load_policy
    from ..corpora.splits import load_split

    stem = "01_naive_iteration_collapse"
    c = stage_config(tier, stem, load_tier(tier)[stem])
    out, policy = {}, None
    for name, fb in (("overlay", ViewSettings()), (view.feedback, view)):
        path = folder / f"naive_{name}.jsonl"
        if not path.exists():
            if policy is None:
                policy = load_policy(model_source(c.model), **{**c.policy_kwargs(), "show_progress": False})
                samples = load_split(c.split, c.path("dataset"), c.limit, c.max_pixels)
            save_trajectories(path, run_loop(policy, samples, T=c.T, coord_format=c.coord_format, feedback=fb,
                                             show_progress=False))
        out[name] = load_trajectories(path)
    return out


def keep_signals(vd: Path, view: ViewSettings, n: int = 0) -> dict:
    """The keep-signal diagnostic (validation) of the view's seed-0 SFT models and of the base, in the view."""
    from ..analysis.keep_signal import keep_signal
    from ..corpora.splits import load_split

    val = load_split("validation", limit=n or None)
    models = {"base": "data/base_model", "SFT + IVT": vd / "seed_0" / "sft" / "student" / "merged",
              "SFT (ours: keep data) + IVT": vd / "seed_0" / "sft" / "ours" / "merged"}
    return {k: keep_signal(str(m), val, feedback=view) for k, m in models.items() if resolve_path(str(m)).exists()}


def across(per_seed: dict[int, dict]) -> dict:
    """Mean ± sd over seeds of each rule's Acc@0.5 and its Δ against base single shot; significant seeds counted."""
    out = {}
    for rule in MEAN_OF:
        have = [r["rules"][rule] for r in per_seed.values() if rule in r["rules"]]
        for k in ("acc@0.5", "d_acc@0.5", "mean_iou", "d_mean_iou"):
            xs = [h[k] for h in have]
            out.setdefault(rule, {})[k] = {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else None}
        out[rule]["seeds_better_p<0.05"] = sum(h["d_acc@0.5"] > 0 and h["p"] < 0.05 for h in have)
        out[rule]["seeds_worse_p<0.05"] = sum(h["d_acc@0.5"] < 0 and h["p"] < 0.05 for h in have)
    lastv0 = [r["rules"]["last step"] for r in per_seed.values()]
    out["last vs own step 0: seeds significantly below"] = sum(
        h["d_acc@0.5_vs_step0"] < 0 and h["significant_vs_step0"] for h in lastv0)
    out["degradation"] = {"per_seed": [r["stability"]["degradation"] for r in per_seed.values()]}
    return out


def write(tier: str, view: ViewSettings, seeds: list[int], wall_s: float | None = None,
          threads: int | None = None, keep_n: int = 0) -> dict:
    """Collect every seed's trajectories in ``view``, compare, write ``<results_dir>/feedback_view.json``."""
    vd = view_dir(tier, view)
    c3 = stage_config(tier, "03_sft", load_tier(tier)["03_sft"])
    still_eps = c3.still_eps
    base = load_trajectories(c3.path("runs_dir") / "trajectories" / "base_single_shot.jsonl")
    configs: dict[str, dict] = {}
    for name, fname in CONFIGS.items():
        per_seed = {s: config_result(load_trajectories(f), base, still_eps, s) for s in seeds
                    if (f := vd / f"seed_{s}" / "trajectories" / fname).exists()}
        if per_seed:
            configs[name] = {"per_seed": per_seed, "across_seeds": across(per_seed)}
    overlay = {name: per for name, fname in CONFIGS.items()  # the tier's own overlay rows, where they exist
               if (per := {s: step0_changes(base, load_trajectories(f)) for s in seeds
                           if (f := trajectories_dir(c3.path("runs_dir"), s) / fname).exists()})}
    nv = naive(tier, view, vd)
    out = {"view": {"feedback": view.feedback, "zoom_margin": view.margin, "zoom_size": view.size},
           "tier": tier, "seeds": seeds, "configurations": configs,
           "naive_base": {k: config_result(v, base, still_eps) for k, v in nv.items()},
           "keep_signal": keep_signals(vd, view, keep_n), "overlay_step0_vs_base": overlay}
    write_result(c3.path("results_dir") / "feedback_view.json", out,
                 {"tier": tier, "seeds": seeds, "view": out["view"], "threads": threads}, wall_s)
    return out


def _rows(out: dict) -> list[tuple[str, str, dict]]:
    """(configuration, seed, result) of the naive base in each view, then of every configuration and seed."""
    rows = [(f"base + naive iteration ({k})", "–", r) for k, r in out["naive_base"].items()]
    return rows + [(name, str(s), r) for name, c in out["configurations"].items() for s, r in c["per_seed"].items()]


def _cell(r: dict) -> str:
    lo, hi = r["ci_acc@0.5"]
    return f"{100 * r['acc@0.5']:.1f} ({100 * r['d_acc@0.5']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], p={r['p']:.3g})"


def markdown(out: dict) -> list[str]:
    """The result as markdown lines: per configuration and seed, Acc@0.5 of each rule with Δ vs base single shot."""
    v = out["view"]
    lines = [f"Feedback view: {v['feedback']} (margin {v['zoom_margin']}, {v['zoom_size']} px). Acc@0.5 % (Δ pp vs "
             "base single shot [95 % paired bootstrap CI], McNemar p); test split.", "",
             "| configuration | seed | step 0 | last step | ORACLE best step | stop-when-still | degradation |",
             "|---|---|---|---|---|---|---|"]
    for name, seed, r in _rows(out):
        cells = [_cell(r["rules"][k]) if k in r["rules"] else "–" for k in MEAN_OF]
        lines.append(f"| {name} | {seed} | " + " | ".join(cells) + f" | {r['stability']['degradation']:.3f} |")
    return lines


def bands_table(out: dict) -> list[str]:
    """Last step vs step 0 at each dead band: improve / degrade / stay, stay split into kept-good and stayed-bad (%)."""
    lines = ["Stability, last step vs step 0, at dead bands 0.01 / 0.05 / 0.10 IoU: improve / degrade / stay "
             "(kept good: step-0 IoU ≥ 0.5; stayed bad: below), % of samples.", "",
             "| configuration | seed | band | improve | degrade | stay | kept good | stayed bad |",
             "|---|---|---|---|---|---|---|---|"]
    for name, seed, r in _rows(out):
        for band, b in r["stability_bands"].items():
            lines.append(f"| {name} | {seed} | {band} | " + " | ".join(
                f"{100 * b[k]:.1f}" for k in ("improve", "degrade", "stay", "kept_good", "stayed_bad")) + " |")
    return lines


def step0_table(out: dict) -> list[str]:
    """Step-0 answers each trained row changes against base single shot, in the view and (the tier's own rows) in the
    overlay: lost (base right, model wrong) split by the wrong answer's IoU, won, net."""
    rows = [(f"{name}, {out['view']['feedback']}", str(s), r["step0_vs_base"])
            for name, c in out["configurations"].items() for s, r in c["per_seed"].items() if "step0_vs_base" in r]
    rows += [(f"{name}, overlay", str(s), r) for name, per in out.get("overlay_step0_vs_base", {}).items()
             for s, r in per.items()]
    if not rows:
        return []
    return ["Step-0 answers changed against base single shot (test; lost: base right, model wrong, split by the "
            "model's IoU with the truth, IoU < 0.01 meaning it chose another object; won: the reverse).", "",
            *step0_lines(rows)]


def keep_table(out: dict) -> list[str]:
    """The keep-signal diagnostic: from right starts, how often one refine step keeps the box (greedy, sampled)."""
    lines = ["Keep signal (validation): from starts with step-0 IoU ≥ 0.85, one refine step in the view; kept = IoU ≥ 0.9 "
             "with the start; % [Wilson 95 % CI].", "",
             "| model | right starts | greedy keep | sampled keep | groups with a keep | step-1 IoU, kept / moved |",
             "|---|---|---|---|---|---|"]
    for name, k in out.get("keep_signal", {}).items():
        if not k.get("good_starts"):
            lines.append(f"| {name} | 0 | – | – | – | – |")
            continue
        c = lambda key: f"{100 * k[key]:.0f} [{100 * k[key + '_ci'][0]:.0f}, {100 * k[key + '_ci'][1]:.0f}]"  # noqa: E731
        iou = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(f"| {name} | {k['good_starts']} | {c('greedy_keep')} | {c('sampled_keep')} | "
                     f"{c('groups_with_a_keep')} | {iou(k['sampled_iou_keep'])} / {iou(k['sampled_iou_move'])} |")
    return lines

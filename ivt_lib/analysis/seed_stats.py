"""Per-seed paired statistics between training configurations, from the saved trajectories of every seed.

The seeds' results files (``ivt_lib.reproduction.seeds``) carry each configuration against its own step 0 and against the base.
What they lack is the comparison *between* configurations trained with the same seed, and the hard cases:

* **contrasts:** B's last step minus A's last step on the same test samples (``stats.compare``: Δ, 95 % paired
  bootstrap CI, exact McNemar), one per seed, e.g. SFT + GRPO against SFT alone;
* **hard cases:** samples whose step-0 IoU is below 0.5 (the paper's hard cases); their mean IoU at step 0 and at
  the last step, and the gain's 95 % paired bootstrap CI. "Refinement still refines" needs this gain above 0.

* **stability at dead bands:** each seed's improve / degrade / stay (kept good, stayed bad) at 0.01 / 0.05 / 0.10 IoU
  (``metrics.stability_bands``), comparable with the paper's stability table.

* **validation curves:** each GRPO run's greedy validation curve (the SFT start, then every ``val_every`` updates):
  its first- and last-quarter mean degradation. The curve shows learning when the mean fall over seeds exceeds the
  spread (sd) of that fall over seeds.

A difference whose CI contains 0 is no difference; the tables say so per seed.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from ..core import stats
from ..core.metrics import per_step, stability_bands
from .evaluation import hard_cases
from ..core.trajectory import load_trajectories

# row -> its trajectories file, in <runs>/trajectories (seed 0) or <runs>/seed_k/trajectories
TRAJECTORIES = {"SFT + IVT": "sft.jsonl", "SFT + GRPO + IVT": "grpo.jsonl",
                "SFT (ours: keep data) + IVT": "sft_ours.jsonl",
                "SFT + GRPO (ours: refine credit) + IVT": "grpo_refine_credit.jsonl"}
# (B, A): B's last step minus A's, per seed
CONTRASTS = [("SFT + GRPO + IVT", "SFT + IVT"), ("SFT (ours: keep data) + IVT", "SFT + IVT"),
             ("SFT + GRPO (ours: refine credit) + IVT", "SFT + GRPO + IVT")]
HARD = 0.5


def trajectories_dir(runs: Path, seed: int) -> Path:
    """Where one seed's trajectories are: the main run's for seed 0, the seed's own folder otherwise."""
    return runs / "trajectories" if seed == 0 else runs / f"seed_{seed}" / "trajectories"


def _last(trajs) -> list[float]:
    return [t.steps[-1].iou for t in trajs]


def hard_gain(trajs, seed: int = 0, threshold: float = HARD) -> dict:
    """Hard cases (step-0 IoU < threshold): mean IoU at step 0 and last, the gain and its paired bootstrap CI."""
    h = hard_cases(trajs, threshold)
    if not h["n"]:
        return h
    d = [t.steps[-1].iou - t.steps[0].iou for t in trajs if t.steps[0].iou < threshold]
    return {**h, "gain": statistics.fmean(d), "ci_gain": list(stats.bootstrap_ci(d, seed))}


def per_seed(runs: Path, seeds: list[int]) -> dict[int, dict]:
    """``{seed: {"hard_cases": {row: ...}, "stability_bands": {row: ...}, "contrasts": {"B vs A, last step":
    compare}}}`` for the rows on disk."""
    out = {}
    for s in [0, *seeds]:
        folder = trajectories_dir(runs, s)
        trajs = {row: load_trajectories(folder / f) for row, f in TRAJECTORIES.items() if (folder / f).exists()}
        if not trajs:
            continue
        if len({len(t) for t in trajs.values()}) > 1:
            raise ValueError(f"seed {s}: trajectories of different lengths in {folder}; rerun that seed")
        out[s] = {"hard_cases": {row: hard_gain(t, s) for row, t in trajs.items()},
                  "stability_bands": {row: stability_bands(t) for row, t in trajs.items()},
                  "contrasts": {f"{b} vs {a}, last step": stats.compare(_last(trajs[a]), _last(trajs[b]), s)
                                for b, a in CONTRASTS if a in trajs and b in trajs}}
    return out


def per_step_by_seed(runs: Path, seeds: list[int]) -> dict[str, dict[int, list[dict]]]:
    """``{row: {seed: per-step metrics}}`` for every row whose trajectories are on disk (seed 0 and ``seeds``)."""
    out: dict[str, dict[int, list[dict]]] = {}
    for s in [0, *seeds]:
        folder = trajectories_dir(runs, s)
        for row, f in TRAJECTORIES.items():
            if (folder / f).exists():
                out.setdefault(row, {})[s] = per_step(load_trajectories(folder / f))
    return out


def _cell(c: dict) -> str:
    lo, hi = c["ci_acc@0.5"]
    tail = "" if c["significant"] else ", no difference"
    return f"{100 * c['d_acc@0.5']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], p={c['mcnemar']['p']:.2g}{tail}"


def contrast_table(ps: dict[int, dict]) -> list[str]:
    """Markdown: one row per seed, one column per contrast (ΔAcc@0.5 pp of the last steps, CI, McNemar p)."""
    names = [f"{b} vs {a}, last step" for b, a in CONTRASTS]
    names = [n for n in names if any(n in v["contrasts"] for v in ps.values())]
    lines = ["| seed | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for s, v in sorted(ps.items()):
        lines.append(f"| {s} | " + " | ".join(_cell(v["contrasts"][n]) if n in v["contrasts"] else "–"
                                               for n in names) + " |")
    return lines


def bands_table(ps: dict[int, dict]) -> list[str]:
    """Markdown: per configuration and dead band, improve / degrade / stay / kept good / stayed bad (% of samples,
    last step vs step 0), mean ± sd over the seeds that have it."""
    keys = ("improve", "degrade", "stay", "kept_good", "stayed_bad")
    lines = ["| configuration | seeds | band | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for row in TRAJECTORIES:
        have = {s: v["stability_bands"][row] for s, v in sorted(ps.items()) if row in v.get("stability_bands", {})}
        for band in next(iter(have.values()), {}):
            cells = []
            for k in keys:
                xs = [100 * b[band][k] for b in have.values()]
                cells.append(f"{statistics.fmean(xs):.1f}" + (f" ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else ""))
            lines.append(f"| {row} | {', '.join(map(str, have))} | {band} | " + " | ".join(cells) + " |")
    return lines


def hard_table(ps: dict[int, dict]) -> list[str]:
    """Markdown: per configuration, the hard cases' mean IoU step 0 → last (mean ± sd over seeds) and each seed's
    gain with its CI."""
    lines = ["| configuration | seeds | hard cases (n) | mean IoU step 0 | mean IoU last | gain per seed [95 % CI] |",
             "|---|---|---|---|---|---|"]
    for row in TRAJECTORIES:
        have = {s: v["hard_cases"][row] for s, v in sorted(ps.items()) if v["hard_cases"].get(row, {}).get("n")}
        if not have:
            continue

        def ms(key: str) -> str:
            xs = [h[key] for h in have.values()]
            return f"{statistics.fmean(xs):.3f}" + (f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else "")

        gains = "; ".join(f"{s}: {h['gain']:+.3f} [{h['ci_gain'][0]:+.3f}, {h['ci_gain'][1]:+.3f}]"
                          for s, h in have.items())
        ns = ", ".join(str(h["n"]) for h in have.values())
        lines.append(f"| {row} | {', '.join(map(str, have))} | {ns} | {ms('mean_iou_step0')} | {ms('mean_iou_last')} "
                     f"| {gains} |")
    return lines


def validation_points(result: dict, key: str = "degradation") -> list[float]:
    """A GRPO result's validation curve: the start (``val0``, the SFT policy) then every logged validation."""
    return [result["val0"][key], *[e["val"][key] for e in result.get("training_log", []) if "val" in e]]


def validation_curves(per_seed_results: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per GRPO row: each seed's first/last-quarter degradation, the fall's mean and sd, and whether it shows
    learning (mean fall > sd of the fall; needs >= 2 seeds)."""
    out = {}
    for row in ("SFT + GRPO + IVT", "SFT + GRPO (ours: refine credit) + IVT"):
        points = {s: validation_points(r[row]) for s, r in sorted(per_seed_results.items()) if r.get(row, {}).get("val0")}
        have = {s: stats.quarter_trend(p) for s, p in points.items() if len(p) >= 2}
        if not have:
            continue
        falls = [-t["change"] for t in have.values()]
        sd = statistics.stdev(falls) if len(falls) > 1 else None
        out[row] = {"per_seed": have, "fall_mean": statistics.fmean(falls), "fall_sd": sd,
                    "learning": None if sd is None else bool(statistics.fmean(falls) > sd)}
    return out


def validation_table(curves: dict[str, dict]) -> list[str]:
    """Markdown: per GRPO row, each seed's first → last quarter degradation, and the fall's mean ± sd."""
    lines = ["| GRPO run | first → last quarter degradation, per seed | fall, mean ± sd over seeds | learning? |",
             "|---|---|---|---|"]
    for row, c in curves.items():
        per = "; ".join(f"{s}: {t['first_quarter']:.3f} → {t['last_quarter']:.3f}" for s, t in c["per_seed"].items())
        sd = f" ± {c['fall_sd']:.3f}" if c["fall_sd"] is not None else ""
        verdict = ("one seed: no spread" if c["learning"] is None else
                   "yes (fall > sd)" if c["learning"] else "no (fall within the seed spread)")
        lines.append(f"| {row} | {per} | {c['fall_mean']:+.3f}{sd} | {verdict} |")
    return lines

"""The full evaluation: every configuration side by side (step 0, last step, ORACLE best step, label-free rules),
per family, hard cases, confidence-correctness correlation, accuracy vs compute, and the paper's numbers beside ours.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..core import metrics
from ..core.trajectory import load_trajectories
from ..core.loop import Trajectory

# name -> trajectories file written by notebooks 00-04 (under runs_dir/trajectories)
CONFIG_FILES = {
    "base, single shot": "base_single_shot.jsonl",
    "base + naive iteration": "naive.jsonl",
    "refine-mix base + naive iteration (ablation)": "naive_refine_mix.jsonl",
    "SFT + IVT": "sft.jsonl",
    "SFT (ours: keep data) + IVT": "sft_ours.jsonl",
    "SFT + GRPO + IVT": "grpo.jsonl",
    "SFT + GRPO (ours: refine credit) + IVT": "grpo_refine_credit.jsonl",
    "single-step GRPO (trl), no iteration": "single_step_grpo.jsonl",
}
# The paper's table (505 test samples, Qwen3-VL-4B-Instruct), as quoted by the project brief (arXiv 2606.13156).
PAPER = {
    "base, single shot": {"acc@0.5": 0.796, "acc@0.7": 0.709, "acc@0.9": 0.455, "mean_iou": 0.719},
    "base + naive iteration": {"acc@0.5": 0.487, "acc@0.7": 0.442, "acc@0.9": 0.283, "mean_iou": 0.442},
    "SFT + IVT": {"acc@0.5": 0.820, "acc@0.7": 0.741, "acc@0.9": 0.483, "mean_iou": 0.743},
    "SFT + GRPO + IVT": {"acc@0.5": 0.806, "acc@0.7": 0.725, "acc@0.9": None, "mean_iou": 0.729},
    "single-step GRPO (trl), no iteration": {"acc@0.5": 0.800, "acc@0.7": None, "acc@0.9": None, "mean_iou": None},
}
PAPER_STABILITY = {"SFT + IVT": {"degradation": 0.140, "degrade": 0.634},
                   "SFT + GRPO + IVT": {"degradation": 0.029, "degrade": 0.248}}


def config_models(model: str, ablation_model: str, runs_dir: str | Path) -> dict[str, str]:
    """The model behind each iterative configuration whose folder exists (the deployable rules need passes)."""
    from ..configs import model_source

    runs = Path(runs_dir)
    out = {"base + naive iteration": model_source(model)}
    if ablation_model:
        out["refine-mix base + naive iteration (ablation)"] = model_source(ablation_model)
    for name, sub in (("SFT + IVT", runs / "sft" / "student" / "merged"),
                      ("SFT (ours: keep data) + IVT", runs / "sft" / "ours" / "merged"),
                      ("SFT + GRPO + IVT", runs / "grpo" / "merged"),
                      ("SFT + GRPO (ours: refine credit) + IVT", runs / "grpo_refine_credit" / "merged")):
        if (sub / "config.json").exists():
            out[name] = str(sub)
    return out


def load_configs(traj_dir: str | Path) -> dict[str, list[Trajectory]]:
    """The trajectories of every configuration that has been run (missing files are skipped)."""
    d = Path(traj_dir)
    return {name: load_trajectories(d / f) for name, f in CONFIG_FILES.items() if (d / f).exists()}


def table(configs: Mapping[str, Sequence[Trajectory]], still_eps: float = 0.05) -> list[dict]:
    """One row per (configuration, answer-selection rule), with stability columns per configuration."""
    rows = []
    for name, trajs in configs.items():
        rep = metrics.report(trajs, still_eps)
        T = len(trajs[0].steps) - 1
        for rule, m in metrics.selection_rows(rep, T).items():
            rows.append({"configuration": name, "selection": rule, **{k: m[k] for k in
                         ("acc@0.5", "acc@0.7", "acc@0.9", "mean_iou", "parse_rate")},
                         "passes": m.get("mean_passes", 1.0 if rule == "step 0" else T + 1),
                         **(rep["stability"] if T > 0 else {})})
    return rows


def per_family(configs: Mapping[str, Sequence[Trajectory]]) -> list[dict]:
    """Acc@0.5 at step 0 and at the last step, per family and configuration."""
    out = []
    for name, trajs in configs.items():
        last_by_family = metrics.by_family(trajs, len(trajs[0].steps) - 1)
        for fam, m0 in metrics.by_family(trajs, 0).items():
            mT = last_by_family[fam]
            out.append({"configuration": name, "family": fam, "acc@0.5 step 0": m0["acc@0.5"],
                        "acc@0.5 last": mT["acc@0.5"], "mean_iou last": mT["mean_iou"], "n": m0["n"]})
    return out


def confidence_correlation(trajs: Sequence[Trajectory]) -> dict:
    """Pearson r between the mean token log-probability of an answer and (a) its IoU, (b) its correctness (IoU>=0.5),
    over every parsed step (the paper reports r ~ 0.22 for self-verification confidence)."""
    lp, iou = [], []
    for tr in trajs:
        for s in tr.steps:
            if s.parse_ok and np.isfinite(s.mean_logprob) and not s.stopped:
                lp.append(s.mean_logprob)
                iou.append(s.iou)
    if len(lp) < 3 or np.std(lp) == 0:
        return {"r_iou": float("nan"), "r_correct": float("nan"), "n": len(lp)}
    lp_a, iou_a = np.asarray(lp), np.asarray(iou)
    correct = (iou_a >= 0.5).astype(float)
    r_c = float(np.corrcoef(lp_a, correct)[0, 1]) if correct.std() > 0 else float("nan")
    return {"r_iou": float(np.corrcoef(lp_a, iou_a)[0, 1]), "r_correct": r_c, "n": len(lp)}


def hard_cases(trajs: Sequence[Trajectory], threshold: float = 0.5) -> dict:
    """Samples whose step-0 IoU is below ``threshold``: mean IoU at step 0, at the last step and with the oracle."""
    hard = [tr for tr in trajs if tr.steps[0].iou < threshold]
    if not hard:
        return {"n": 0}
    return {"n": len(hard), "mean_iou_step0": float(np.mean([t.steps[0].iou for t in hard])),
            "mean_iou_last": float(np.mean([t.steps[-1].iou for t in hard])),
            "mean_iou_oracle (uses GT)": float(np.mean([max(t.ious) for t in hard])),
            "acc@0.5_last": float(np.mean([t.steps[-1].iou >= 0.5 for t in hard]))}


def versus_paper(rows: Sequence[dict]) -> list[dict]:
    """Our deployable answer (last step, or step 0 for single-shot rows) next to the paper's number."""
    out = []
    for name, paper in PAPER.items():
        ours = [r for r in rows if r["configuration"] == name]
        if not ours:
            continue
        pick = next((r for r in ours if r["selection"].startswith("last")), ours[0])
        out.append({"configuration": name, "ours: selection": pick["selection"],
                    **{f"ours {k}": pick[k] for k in ("acc@0.5", "mean_iou")},
                    **{f"paper {k}": paper[k] for k in ("acc@0.5", "mean_iou")}})
    return out

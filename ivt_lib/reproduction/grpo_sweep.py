"""Rollout temperature, learning rate, batch and credit of multi-step GRPO, chosen on validation (the paper reports
none).

``python -m ivt_lib.reproduction.grpo_sweep --tier default`` trains one GRPO run per arm (:data:`ARMS`, or ``--arm``) from notebook
03's merged SFT model (the paper recipe, seed 0; an arm may name another, e.g. ours), each with the tier's settings
plus the arm's overrides. It then evaluates every arm and its SFT start greedily for T steps on the **validation**
split (never the test split) and compares each arm's last step with its SFT start's, paired. Results go to
``<results_dir>/grpo_sweep.json``; runs to ``<runs_dir>/grpo_sweep/<arm>``. A finished arm is loaded from its
``eval.json`` (which must hold the same overrides), an interrupted one resumes from its checkpoint.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..core import io, stats
from ..configs import TIERS, model_source, tier_config
from ..core.metrics import stability, step_ious, step_metrics

# arm name -> notebook-04 parameter overrides ("{runs_dir}" in a value is the tier's runs folder); the first is the
# tier's own setting. These are the arms of the committed results/full/grpo_sweep.json.
OURS_SFT = "{runs_dir}/sft/ours/merged"
ARMS: dict[str, dict] = {
    "temp 1.0, lr 5e-4 (tier)": {"temperature": 1.0},
    "temp 0.5, lr 5e-4": {"temperature": 0.5},
    "temp 1.0, lr 2e-3": {"learning_rate": 0.002},
    "temp 0.5, lr 2e-3": {"temperature": 0.5, "learning_rate": 0.002},
    "temp 0.5, lr 2e-3, refine credit": {"temperature": 0.5, "learning_rate": 0.002, "credit": "refine"},
    "tier, 160 updates": {"iterations": 160},
    "tier, 16 prompts per update": {"prompts_per_iter": 16},
    "ours SFT, tier": {"sft_model": OURS_SFT},
    "ours SFT, tier, refine credit": {"sft_model": OURS_SFT, "credit": "refine"},
    "refine credit (tier)": {"credit": "refine"},
    "refine credit, greedy start": {"credit": "refine", "refine_start": "greedy"},
    "refine credit, greedy start, lr 2e-3": {"credit": "refine", "refine_start": "greedy", "learning_rate": 0.002},
    "refine credit, greedy start, step-0 anchor": {"credit": "refine", "refine_start": "greedy", "anchor_step0": True},
    "refine credit, greedy start, lr 2e-3, step-0 anchor": {"credit": "refine", "refine_start": "greedy",
                                                            "learning_rate": 0.002, "anchor_step0": True},
    # a stronger brake on the anchor: 10x the tier's KL coefficient (beta 0.04)
    "refine credit, greedy start, lr 2e-3, step-0 anchor, beta 0.4": {
        "credit": "refine", "refine_start": "greedy", "learning_rate": 0.002, "anchor_step0": True, "beta": 0.4},
}


def resolve(overrides: dict, runs_dir: str) -> dict:
    """The overrides with ``{runs_dir}`` in string values replaced by the tier's runs folder."""
    return {k: v.format(runs_dir=runs_dir) if isinstance(v, str) else v for k, v in overrides.items()}


def parse_arm(text: str) -> tuple[str, dict]:
    """``name=key:value,key:value`` → (name, overrides); values are parsed as int, float or kept as strings."""
    name, _, spec = text.partition("=")
    if not name or not spec:
        raise ValueError(f"arm {text!r}: expected name=key:value[,key:value]")
    out = {}
    for item in spec.split(","):
        k, sep, v = item.partition(":")
        if not sep:
            raise ValueError(f"arm {text!r}: {item!r} is not key:value")
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                continue
        out[k.strip()] = v
    return name, out


def arm_dir(name: str) -> str:
    """An arm's folder name: its name with spaces as underscores and without commas."""
    return name.replace(" ", "_").replace(",", "")


def summary(trajs, T: int) -> dict:
    """Step 0 and last-step metrics and the stability row of greedy trajectories."""
    return {"step0": step_metrics(trajs, 0), "last": step_metrics(trajs, T), "stability": stability(trajs)}


def greedy(model, processor, samples, stage) -> list:
    """Greedy T-step trajectories of ``model`` on ``samples`` (the evaluation protocol of notebooks 03-05)."""
    import torch

    from ..core.loop import HFPolicy, run_loop

    model.eval()
    with torch.no_grad():
        return run_loop(HFPolicy(model, processor, stage.max_new_tokens, stage.batch_size), samples, stage.T,
                        stage.coord_format, show_progress=False)


def run_arm(tier: str, overrides: dict, val_eval: list, out: Path, where: dict | None = None) -> dict:
    """Train one arm from the SFT model (resumable) and evaluate it greedily on ``val_eval``; cached in eval.json.
    ``where``: other notebook-04 parameters (folders) under the arm's ``overrides``."""
    import json

    from ..corpora import splits
    from ..training import grpo

    cached = out / "eval.json"
    if cached.exists():
        res = json.loads(cached.read_text())
        if res["overrides"] != overrides:
            raise ValueError(f"{out} holds a run with overrides {res['overrides']}, not {overrides}: "
                             "rename the arm or delete the folder")
        return res
    stage = tier_config(tier, "04_grpo", {**(where or {}), **overrides})
    ds = stage.path("dataset")
    train = splits.load_split("train", ds, stage.train_n or None, stage.max_pixels)
    curve = splits.load_split("validation", ds, stage.val_n, stage.max_pixels) if stage.val_every else []
    t = time.time()
    trainer = grpo.MultiStepGRPO(model_source(stage.sft_model), train, out, grpo.GRPORunConfig.from_stage(stage),
                                 stage.device, stage.dtype, curve)
    log = trainer.train(show_progress=False)
    seconds = time.time() - t
    trajs = greedy(trainer.model, trainer.processor, val_eval, stage)
    res = {"overrides": overrides, "train_seconds": round(seconds, 1), **summary(trajs, stage.T),
           "last_ious": step_ious(trajs, stage.T), "val0": trainer.val0,
           "training_log": [{k: e[k] for k in ("iteration", "reward_mean", "kl", "iou_per_step") if k in e}
                            | ({"val": e["val"]} if "val" in e else {}) for e in log]}
    io.atomic_write_json(cached, res)
    return res


def _row(name: str, r: dict, kl: str, vs: str) -> str:
    st = r["stability"]
    return (f"| {name} | {100 * r['step0']['acc@0.5']:.1f} | {100 * r['last']['acc@0.5']:.1f} | "
            f"{st['degradation']:.3f} | {100 * st['degrade']:.1f} | {100 * st['stay']:.1f} | {kl} | {vs} |")


def table(result: dict) -> list[str]:
    """Markdown: each SFT start, then each arm: validation step 0, last step, degradation, degrade and stay shares,
    the final KL, and the arm's last step vs its SFT start's (Acc@0.5, paired 95 % CI)."""
    lines = ["| arm | step 0 | last | degradation | degrade % | stay % | final KL | last vs SFT start, Acc@0.5 [95 % CI] |",
             "|---|---|---|---|---|---|---|---|"]
    for sft, r in result["starts"].items():
        lines.append(_row(f"SFT start (no GRPO): `{sft}`", r, "–", "–"))
    for name, a in result["arms"].items():
        c = a["vs_sft_start"]
        lo, hi = c["ci_acc@0.5"]
        kl = f"{a['training_log'][-1]['kl']:.3f}" if a["training_log"] else "–"
        vs = (f"{100 * c['d_acc@0.5']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] "
              f"{'sig.' if c['significant'] else 'no difference'}")
        lines.append(_row(name, a, kl, vs))
    return lines


def sweep(tier: str, arms: dict[str, dict], val_n: int = 0, where: dict | None = None) -> dict:
    """Every arm and its SFT start (an arm may override ``sft_model``), evaluated on the first ``val_n`` validation
    samples (0 = all); the result dict. ``where``: notebook-04 parameters under every arm (e.g. a test's folders)."""
    from ..corpora import splits
    from ..core.models import load_model

    where = dict(where or {})
    stage = tier_config(tier, "04_grpo", where)
    arms = {name: resolve(ov, stage.runs_dir) for name, ov in arms.items()}
    stages = {name: tier_config(tier, "04_grpo", {**where, **ov}) for name, ov in arms.items()}  # fail early
    val_eval = splits.load_split("validation", stage.path("dataset"), val_n or None, stage.max_pixels)
    starts, start_ious = {}, {}
    for sft in dict.fromkeys(st.sft_model for st in stages.values()):
        model, processor = load_model(model_source(sft), stage.device, stage.dtype)
        trajs = greedy(model, processor, val_eval, stage)
        starts[sft], start_ious[sft] = summary(trajs, stage.T), step_ious(trajs, stage.T)
        del model
    out = {"tier": tier, "T": stage.T, "n_val": len(val_eval), "starts": starts, "arms": {}}
    for name, ov in arms.items():
        a = run_arm(tier, ov, val_eval, stage.path("runs_dir") / "grpo_sweep" / arm_dir(name), where)
        sft = stages[name].sft_model
        out["arms"][name] = {**{k: v for k, v in a.items() if k != "last_ious"}, "sft_model": sft,
                             "vs_sft_start": stats.compare(start_ious[sft], a["last_ious"])}
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="GRPO rollout temperature, learning rate, batch and credit, chosen on "
                                             "validation.")
    ap.add_argument("--tier", default="default", choices=TIERS)
    ap.add_argument("--arm", action="append", default=[], metavar="NAME=key:value,...",
                    help="an arm (repeatable); default: the built-in arms (ARMS)")
    ap.add_argument("--val-n", type=int, default=0, help="validation samples evaluated (0 = the whole split)")
    a = ap.parse_args(argv)
    arms = dict(parse_arm(x) for x in a.arm) if a.arm else ARMS
    t0 = time.time()
    res = sweep(a.tier, arms, a.val_n)
    stage = tier_config(a.tier, "04_grpo")
    io.write_result(stage.path("results_dir") / "grpo_sweep.json", res, {"tier": a.tier, "arms": arms},
                    time.time() - t0)
    print("\n".join(table(res)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Longer GRPO validation curves: continue a finished GRPO run past its tier's iterations, on validation only.

The default tier's 80 GRPO updates are a CPU budget. To see where the validation curve flattens (the only honest way
to choose the iteration count), ``python -m ivt_lib.analysis.grpo_curve --tier default --seeds 0 1 --iterations 240`` copies
each seed's finished GRPO checkpoint (notebook 04's ``<runs_dir>/grpo``, or ``<runs_dir>/seed_k/grpo``) to
``<runs_dir>/grpo_curve/seed_k`` and resumes it to ``--iterations`` with the tier's settings. A resumed run sees
exactly the prompts and seeds that an uninterrupted longer run would (they are a function of seed and iteration),
so this *is* the longer run. Only the greedy validation curve is evaluated, never the test split. The curves go to
``<results_dir>/grpo_curve.json`` and ``<figures_dir>/grpo_curve.png``. The original runs are not touched.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from ..core import io, stats
from ..configs import TIERS, model_source, tier_config
from ..core.io import recover_dir
from ..core.state_io import has_state
from .seed_stats import validation_points


def source_dir(runs: Path, seed: int) -> tuple[Path, Path]:
    """A seed's finished GRPO folder and the SFT model it started from (seed 0: the main run)."""
    own = runs if seed == 0 else runs / f"seed_{seed}"
    return own / "grpo", own / "sft" / "student" / "merged"


def extend(tier: str, seed: int, iterations: int, overrides: dict | None = None) -> dict:
    """Resume one seed's GRPO run (a copy) to ``iterations`` updates; its validation curve and training log.
    ``overrides``: other notebook-04 parameters (e.g. the folders of a test run)."""
    from ..corpora import splits
    from ..training import grpo

    stage = tier_config(tier, "04_grpo", {**(overrides or {}), "seed": seed, "iterations": iterations})
    if not stage.val_every:
        raise ValueError("val_every=0: there is no validation curve to extend")
    runs = stage.path("runs_dir")
    src, sft = source_dir(runs, seed)
    ckpt = recover_dir(src / "checkpoint")
    if not has_state(ckpt):
        raise FileNotFoundError(f"seed {seed}: no finished GRPO checkpoint in {src} (run notebook 04 / ivt_lib.reproduction.seeds)")
    out = runs / "grpo_curve" / f"seed_{seed}"
    if not has_state(out / "checkpoint"):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(ckpt, out / "checkpoint")
    ds = stage.path("dataset")
    train = splits.load_split("train", ds, stage.train_n or None, stage.max_pixels)
    val = splits.load_split("validation", ds, stage.val_n, stage.max_pixels)
    cfg = grpo.GRPORunConfig.from_stage(stage)
    trainer = grpo.MultiStepGRPO(model_source(str(sft)), train, out, cfg, stage.device, stage.dtype, val)
    res = {"seed": seed, "iterations": iterations, "val0": trainer.val0,
           "training_log": [{**{k: e[k] for k in ("iteration", "reward_mean", "reward_std", "kl", "loss")},
                             **({"val": e["val"]} if "val" in e else {})} for e in trainer.train()]}
    return {**res, "degradation_trend": stats.quarter_trend(validation_points(res))}


def table(result: dict, every: int = 40) -> list[str]:
    """Markdown: per seed, validation degradation and last-step Acc@0.5 every ``every`` updates, and the trend."""
    seeds = sorted(result["seeds"].items())
    its = sorted({e["iteration"] for _, v in seeds for e in v["training_log"]
                  if "val" in e and e["iteration"] % every == 0})
    lines = ["| seed | " + " | ".join(["start", *map(str, its)]) + " | first → last quarter |",
             "|---|" + "---|" * (len(its) + 2)]
    for k, v in seeds:
        at = {e["iteration"]: e["val"] for e in v["training_log"] if "val" in e}
        cells = [v["val0"], *[at.get(i) for i in its]]
        fmt = [f"{c['degradation']:.3f} / {100 * c['last_acc@0.5']:.1f}" if c else "–" for c in cells]
        t = v["degradation_trend"]
        lines.append(f"| {k} | " + " | ".join(fmt) + f" | {t['first_quarter']:.3f} → {t['last_quarter']:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description="Continue finished GRPO runs on validation to see where the curve flattens.")
    ap.add_argument("--tier", default="default", choices=TIERS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--iterations", type=int, default=240)
    a = ap.parse_args(argv)
    stage = tier_config(a.tier, "04_grpo")
    if a.iterations <= stage.iterations:
        raise SystemExit(f"--iterations {a.iterations} must exceed the tier's {stage.iterations}")
    results, figures = stage.path("results_dir"), stage.path("figures_dir")
    path = results / "grpo_curve.json"
    done = json.loads(path.read_text()).get("seeds", {}) if path.exists() else {}
    t0 = time.time()
    for s in a.seeds:
        t = time.time()
        done[str(s)] = {**extend(a.tier, s, a.iterations), "seconds": round(time.time() - t, 1)}
        io.write_result(path, {"seeds": done}, {"tier": a.tier, "iterations": a.iterations}, time.time() - t0)
        print(f"seed {s}: {a.iterations} updates, degradation trend {done[str(s)]['degradation_trend']}", flush=True)
    from .plots import grpo_validation

    fig = grpo_validation({f"seed {k}": (v["val0"], v["training_log"]) for k, v in sorted(done.items())})
    io.save_figure(fig, figures / "grpo_curve.png", {"tier": a.tier, "iterations": a.iterations}, time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

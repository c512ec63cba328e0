"""Our GRPO step vs trl's GRPOTrainer on the same single-step data and model: seconds per completion, same run.

Usage: python benchmarks/grpo_vs_trl.py [--steps 6] [--prompts 4] [--group 6] [--threads 2]
Both sides: LoRA r=16 on the language model, G completions per prompt, max 32 new tokens, temperature 1.0, beta 0.04,
one optimiser step per generation batch. Prints the machine, the settings and the ratio ours/trl (target <= 1.0).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import ivt_lib  # noqa: F401  (compat shim first)
import torch

from ivt_lib.training import grpo, single_step
from ivt_lib.corpora.splits import load_split

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Time both trainers and print the per-completion ratio."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=str(ROOT / "data" / "base_model"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    train = load_split("train", limit=200)
    n_completions = a.steps * a.prompts * a.group
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, torch threads {a.threads}; model {a.model}; "
          f"{a.steps} steps x {a.prompts} prompts x {a.group} completions, single-step, max 32 new tokens")
    tmp = Path(tempfile.mkdtemp())
    try:
        cfg = grpo.GRPORunConfig(iterations=a.steps + 1, prompts_per_iter=a.prompts, group_size=a.group, T=0,
                                 max_new_tokens=32, save_every=10_000)
        ours = grpo.MultiStepGRPO(a.model, train, tmp / "ours", cfg, device="cpu")
        ours.step()  # warm-up
        t = time.perf_counter()
        for _ in range(a.steps):
            ours.step()
        t_ours = (time.perf_counter() - t) / n_completions

        ss = single_step.SingleStepConfig(max_steps=a.steps + 1, prompts_per_step=a.prompts, group_size=a.group,
                                          max_completion_length=32, save_steps=10_000)
        trainer = single_step.make_trainer(a.model, train, tmp / "trl", ss, device="cpu")
        times: list[float] = []

        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def on_step_begin(self, *args, **kw):
                times.append(time.perf_counter())

            def on_train_end(self, *args, **kw):
                times.append(time.perf_counter())

        trainer.add_callback(Clock())
        trainer.args.disable_tqdm = True
        trainer.train()
        t_trl = (times[-1] - times[1]) / n_completions  # skip the first (warm-up) step
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"ours (ivt_lib.training.grpo, T=0): {1000 * t_ours:.1f} ms per completion")
    print(f"trl GRPOTrainer:          {1000 * t_trl:.1f} ms per completion")
    print(f"ratio ours/trl: {t_ours / t_trl:.2f}x (target <= 1.0)")


if __name__ == "__main__":
    main()

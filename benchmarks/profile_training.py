"""Where the time of one SFT step and one GRPO iteration goes, phase by phase, on this machine.

Usage: python benchmarks/profile_training.py [--sft-steps 6] [--repeats 2] [--grpo-iters 3] [--threads 2] [--out F.json]

SFT (trl ``SFTTrainer``, the default tier's settings: LoRA r=64, batch 16, on notebook 02's traces if present,
else on conversations built here from ground-truth boxes): the collator (chat template + image processor +
tokenizer) timed on its own, and the whole optimiser step, measured with a ``TrainerCallback``; before (trl's
default, gradient checkpointing on, which every SFT run used until it became a parameter) and after (off, the
default and smoke tiers), alternating ``--repeats`` times in one run.
GRPO (``MultiStepGRPO``, the default tier's settings: 4 prompts x 6 trajectories x T=2): rollout generation,
row encoding, the reference (adapter-off) forward, the policy forward + backward, the optimiser, and the greedy
validation pass, each wrapped with a timer. The starting model is the default tier's SFT model if present, else the
shipped base. Prints the machine and settings; ``--out`` also writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import ivt_lib  # noqa: F401  (compat shim first)
import torch

ROOT = Path(__file__).resolve().parent.parent
TIMES: dict[str, list[float]] = defaultdict(list)


def timed(name: str, fn):
    """``fn`` wrapped so that each call's wall time is appended to ``TIMES[name]``."""
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            TIMES[name].append(time.perf_counter() - t)
    return wrapper


def sft_dataset(n: int):
    """Notebook 02's student traces of the default tier, or GT-answer conversations made here from the train split."""
    from datasets import Dataset, load_from_disk

    traces = ROOT / "runs" / "default" / "traces" / "student"
    if traces.exists():
        return load_from_disk(str(traces)).select(range(n)), str(traces)
    from ivt_lib.core import boxes, prompts
    from ivt_lib.corpora import splits

    rows = []
    for s in splits.load_split("train", limit=n):
        box = boxes.to_model_frame(s["bbox"], s["width"], s["height"], "qwen3")
        msgs = prompts.with_answer(prompts.step0_messages(s["expression"]), prompts.format_box(box))
        rows.append({"messages": msgs, "images": [s["image"]]})
    return Dataset.from_list(rows), "ground-truth answers (no traces on disk)"


def profile_sft(model: str, steps: int, batch: int, gradient_checkpointing: bool) -> dict:
    """Seconds per optimiser step of trl's SFTTrainer, and the collator's share of it."""
    from transformers import TrainerCallback

    from ivt_lib.training import sft

    ds, src = sft_dataset(batch * (steps + 2))
    step_times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            step_times.append(time.perf_counter() - self.t)

    from trl import SFTTrainer

    orig_init = SFTTrainer.__init__

    def init(self, *a, **k):  # add the clock and time the collator of the trainer run_sft builds
        orig_init(self, *a, **k)
        self.add_callback(Clock())
        self.data_collator = timed("sft collate", self.data_collator)

    SFTTrainer.__init__ = init
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg = sft.SFTRunConfig(max_steps=steps, train_batch_size=batch, save_steps=10_000, logging_steps=10_000,
                                   gradient_checkpointing=gradient_checkpointing)
            t = time.perf_counter()
            sft.run_sft(model, ds, d, cfg, "cpu")
            total = time.perf_counter() - t
    finally:
        SFTTrainer.__init__ = orig_init
    steady = step_times[1:] or step_times  # the first step pays one-off costs
    col = TIMES.pop("sft collate")
    return {"data": src, "batch": batch, "gradient_checkpointing": gradient_checkpointing, "steps": len(step_times),
            "s_per_step": statistics.median(steady),
            "collate_s_per_batch": statistics.median(col), "run_sft_total_s": total}


def profile_grpo(model: str, iters: int, val_n: int, micro_batch: int) -> dict:
    """Seconds per GRPO iteration by phase, and of one validation pass (the same seeded rollouts in every call)."""
    from ivt_lib.corpora import splits
    from ivt_lib.training import grpo, grpo_objective

    TIMES.clear()
    train, val = splits.load_split("train", limit=64), splits.load_split("validation", limit=val_n)
    cfg = grpo.GRPORunConfig(iterations=iters, val_every=0, save_every=10_000, micro_batch=micro_batch)
    with tempfile.TemporaryDirectory() as d:
        tr = grpo.MultiStepGRPO(model, train, d, cfg, "cpu", val_samples=val)
        tr.rollout = timed("rollout", tr.rollout)
        grpo.encode_rows = timed("encode rows", grpo_objective.encode_rows)
        real_logps = grpo_objective.token_logps

        def logps(m, *a, **k):  # the reference pass runs under no_grad, the policy pass with grad
            name = "reference forward" if not torch.is_grad_enabled() else "policy forward"
            return timed(name, real_logps)(m, *a, **k)

        grpo.token_logps = logps
        real_step = tr.opt.step
        tr.opt.step = timed("optimizer", real_step)
        loss_bw = torch.Tensor.backward
        torch.Tensor.backward = timed("policy backward", loss_bw)
        try:
            it_times = []
            for _ in range(iters):
                t = time.perf_counter()
                tr.step()
                it_times.append(time.perf_counter() - t)
        finally:
            torch.Tensor.backward = loss_bw
            grpo.token_logps, grpo.encode_rows = real_logps, grpo_objective.encode_rows
        t = time.perf_counter()
        tr.validate()
        val_s = time.perf_counter() - t
    phases = {k: sum(v) / iters for k, v in TIMES.items()}
    return {"iterations": iters, "s_per_iteration": statistics.mean(it_times), "phases_s_per_iteration": phases,
            "other_s_per_iteration": statistics.mean(it_times) - sum(phases.values()),
            "rows_per_iteration": tr.logs[-1]["rows"], "validation_s": val_s, "val_n": len(val),
            "losses": [e["loss"] for e in tr.logs],
            "config": {k: getattr(cfg, k) for k in ("prompts_per_iter", "group_size", "T", "micro_batch")}}


def main() -> None:
    """Profile both stages and print one line per phase."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--sft-steps", type=int, default=6)
    ap.add_argument("--sft-batch", type=int, default=16)
    ap.add_argument("--grpo-iters", type=int, default=3)
    ap.add_argument("--val-n", type=int, default=48)
    ap.add_argument("--micro-batches", type=int, nargs="+", default=[24], help="GRPO scoring micro-batch sizes to compare")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="alternating before/after SFT runs of each arm")
    ap.add_argument("--skip", choices=["sft", "grpo"], default=None)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    base = ROOT / "data" / "base_model"
    sft_model = ROOT / "runs" / "default" / "sft" / "student" / "merged"
    grpo_model = sft_model if (sft_model / "config.json").exists() else base
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, threads {a.threads}",
           "load_avg_1_15": [round(x, 2) for x in os.getloadavg()[::2]]}
    print(out["machine"], "load", out["load_avg_1_15"])
    if a.skip != "sft":  # before (trl's default, gradient checkpointing on) and after (off), alternating
        runs = [profile_sft(str(base), a.sft_steps, a.sft_batch, gc) for _ in range(a.repeats) for gc in (True, False)]
        out["sft"] = {}
        for gc, name in ((True, "before: gradient checkpointing on"), (False, "after: gradient checkpointing off")):
            mine = [r for r in runs if r["gradient_checkpointing"] == gc]
            out["sft"][name] = {**mine[-1], "s_per_step": statistics.median(r["s_per_step"] for r in mine),
                                "s_per_step_each_repeat": [r["s_per_step"] for r in mine]}
            s = out["sft"][name]
            print(f"SFT {name} ({s['data']}, batch {s['batch']}): {s['s_per_step']:.2f} s/step (median of "
                  f"{a.repeats}); collator {s['collate_s_per_batch']:.2f} s/batch")
        b, f = (out["sft"][k]["s_per_step"] for k in out["sft"])
        out["sft_speedup"] = b / f
        print(f"SFT speed-up: {b / f:.2f}x")
    if a.skip != "grpo":
        out["grpo"] = {}
        for mb in a.micro_batches:
            g = profile_grpo(str(grpo_model), a.grpo_iters, a.val_n, mb)
            g["model"] = str(grpo_model.relative_to(ROOT))
            out["grpo"][f"micro_batch {mb}"] = g
            print(f"GRPO ({g['model']}, {g['config']}, {g['rows_per_iteration']} rows): "
                  f"{g['s_per_iteration']:.1f} s/iteration; losses {['%.5f' % x for x in g['losses']]}")
            for k, v in sorted(g["phases_s_per_iteration"].items(), key=lambda kv: -kv[1]):
                print(f"  {k:<18} {v:6.2f} s ({100 * v / g['s_per_iteration']:.0f} %)")
            print(f"  {'other':<18} {g['other_s_per_iteration']:6.2f} s")
            print(f"validation pass ({g['val_n']} samples x T+1 steps, greedy): {g['validation_s']:.1f} s")
    out["load_avg_1_15_end"] = [round(x, 2) for x in os.getloadavg()[::2]]
    if a.out:
        from ivt_lib.core.io import atomic_write_json, relative_paths

        atomic_write_json(Path(a.out), relative_paths(out))


if __name__ == "__main__":
    main()

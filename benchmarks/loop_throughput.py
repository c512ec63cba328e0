"""Refinement-loop throughput: samples x steps per second at batch 1 vs batch 32, measured in the same run.

Usage: python benchmarks/loop_throughput.py [--n 64] [--T 2] [--threads 2]
Prints the machine, the settings and the ratio (target: >= 10x).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import ivt_lib  # noqa: F401  (compat shim first)
import torch

from ivt_lib.corpora.splits import load_split
from ivt_lib.core.loop import HFPolicy, run_loop
from ivt_lib.core.models import load_model

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Run the benchmark and print one line per batch size plus the ratio."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="samples")
    ap.add_argument("--T", type=int, default=2, help="refinement steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=str(ROOT / "data" / "base_model"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not (Path(a.model) / "config.json").exists():
        from ivt_lib.embedded.tiny_model import build_tiny
        a.model = "/tmp/ivt_bench_tiny"
        build_tiny(a.model)
    model, proc = load_model(a.model, device="cpu")
    samples = load_split("test", limit=a.n)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, torch threads {a.threads}; model {a.model}; "
          f"n={a.n} samples x {a.T + 1} steps, greedy, max_new_tokens=28")
    rates = {}
    for bs in (1, 32):
        run_loop(HFPolicy(model, proc, max_new_tokens=28, batch_size=bs), samples[:min(4, a.n)], T=1,
                 show_progress=False)  # warm-up
        t = time.perf_counter()
        run_loop(HFPolicy(model, proc, max_new_tokens=28, batch_size=bs), samples, T=a.T, show_progress=False)
        dt = time.perf_counter() - t
        rates[bs] = a.n * (a.T + 1) / dt
        print(f"batch {bs:>2}: {rates[bs]:7.1f} samples*steps/s ({dt:.1f} s)")
    print(f"ratio batch32/batch1: {rates[32] / rates[1]:.1f}x (target >= 10x)")


if __name__ == "__main__":
    main()

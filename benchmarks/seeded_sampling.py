"""Cost of seeded, batch-invariant sampling (ivt_lib.core.sampling) vs torch's global-RNG sampling in the refinement loop.

Same model, samples and settings; the two arms alternate ``--repeats`` times in one run and the median of each is
reported with their ratio. Run: ``python benchmarks/seeded_sampling.py``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

import ivt_lib  # noqa: F401
from ivt_lib.corpora import splits
from ivt_lib.core import loop, models
from ivt_lib.configs import ROOT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="test samples")
    ap.add_argument("--T", type=int, default=2, help="refinement steps")
    ap.add_argument("--batch", type=int, default=32, help="generation batch size")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats per arm")
    args = ap.parse_args()
    model, proc = models.load_model(ROOT / "data" / "base_model", "cpu")
    samples = splits.load_split("test", limit=args.n)
    pol = loop.HFPolicy(model, proc, 28, args.batch, temperature=1.0)
    seeds = list(range(args.n))
    times = {"torch RNG": [], "seeded": []}
    loop.run_loop(pol, samples[:4], T=1, show_progress=False)  # warm-up
    for _ in range(args.repeats):
        for arm in times:
            t = time.perf_counter()
            loop.run_loop(pol, samples, T=args.T, show_progress=False,
                          sample_seeds=seeds if arm == "seeded" else None)
            times[arm].append(time.perf_counter() - t)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}; "
          f"n={args.n} x {args.T + 1} steps, batch {args.batch}, temperature 1.0, max_new_tokens=28")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:>9}: {v:.2f} s median of {args.repeats} ({', '.join(f'{x:.2f}' for x in times[k])})")
    print(f"ratio seeded / torch RNG: {med['seeded'] / med['torch RNG']:.2f}x")


if __name__ == "__main__":
    main()

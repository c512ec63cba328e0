"""`make reproduce` one lane vs parallel lanes (ivt_lib.reproduction.lanes), measured side by side in one run.

Usage: python benchmarks/reproduce_lanes.py [--tier smoke] [--seeds 1] [--jobs 2] [--repeats 1] [--out F.json]
Each repeat runs the whole tier with ``--force`` twice, serial (``--jobs 1``) then in lanes, and records the wall
times (the tier's runs/ and results are overwritten, as a reproduction does). Prints the machine and the ratio.
The default tier takes hours this way; its end-to-end numbers are in the README (measured with ``make reproduce``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wall(tier: str, seeds: list[int], jobs: int) -> float:
    """Seconds of one forced reproduction of ``tier`` with ``jobs`` lanes."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ivt_lib.reproduction.reproduce", "--tier", tier, "--force", "--jobs", str(jobs),
                    "--seeds", *map(str, seeds)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    """Run the comparison and print one line per arm plus the ratio."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--tier", default="smoke")
    ap.add_argument("--seeds", type=int, nargs="*", default=[1])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    runs = {"serial (--jobs 1)": [], f"lanes (--jobs {a.jobs})": []}
    for _ in range(a.repeats):
        runs["serial (--jobs 1)"].append(wall(a.tier, a.seeds, 1))
        runs[f"lanes (--jobs {a.jobs})"].append(wall(a.tier, a.seeds, a.jobs))
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus", "tier": a.tier, "seeds": a.seeds,
           "load_avg_1_15": [round(x, 2) for x in (os.getloadavg()[0], os.getloadavg()[2])],
           "wall_s": {k: [round(x, 1) for x in v] for k, v in runs.items()}}
    serial, lane = (min(v) for v in runs.values())
    out["speedup"] = round(serial / lane, 2)
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Diagnostic (validation only): does GRPO's sampling ever propose "keep" where keeping is right?

For validation samples whose greedy step-0 box is good (IoU >= 0.85), refine that box once greedily and ``G`` times
sampled (temperature 1, the GRPO tier's rollouts), and report how often a step-1 answer keeps the drawn box (IoU with
it >= 0.9) and the IoU of keeps vs moves. Usage: ``python scripts/diag_keep_signal.py --model runs/default/sft/student/merged``.
"""
import argparse
import json

import numpy as np

from ivt_lib.core import boxes as bx
from ivt_lib.corpora import splits
from ivt_lib.core import loop, models


def keep_signal(model: str, n: int | None = None, group: int = 6, temperature: float = 1.0) -> dict:
    """Keep rates (greedy and sampled) and step-1 IoUs from the good step-0 starts of ``model`` on validation."""
    val = splits.load_split("validation", limit=n)
    pol = models.load_policy(model, device="cpu")
    s0 = loop.run_loop(pol, val, T=0, show_progress=False)
    good = [(s, tr.steps[0].box) for s, tr in zip(val, s0) if tr.steps[0].iou >= 0.85]
    if not good:
        return {"model": model, "n": len(val), "good_starts": 0}
    kept = lambda trs, starts: np.array([t.steps[1].box is not None and bx.iou(t.steps[1].box, b) >= 0.9  # noqa: E731
                                         for t, b in zip(trs, starts)])
    starts = [b for _, b in good]
    greedy = loop.run_loop(pol, [s for s, _ in good], T=1, start_boxes=starts, show_progress=False)
    exp = [g for g in good for _ in range(group)]
    sampled = loop.run_loop(models.sampling_copy(pol, temperature), [s for s, _ in exp], T=1,
                            start_boxes=[b for _, b in exp], show_progress=False, sample_seeds=list(range(len(exp))))
    k, iou = kept(sampled, [b for _, b in exp]), np.array([t.steps[1].iou for t in sampled])
    return {"model": model, "n": len(val), "good_starts": len(good), "greedy_keep": float(kept(greedy, starts).mean()),
            "greedy_step1_iou": float(np.mean([t.steps[1].iou for t in greedy])), "sampled_keep": float(k.mean()),
            "groups_with_a_keep": float(k.reshape(-1, group).any(1).mean()),
            "sampled_iou_keep": float(iou[k].mean()) if k.any() else None,
            "sampled_iou_move": float(iou[~k].mean()) if (~k).any() else None}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--n", type=int, default=0, help="validation samples (0 = all)")
    a = ap.parse_args()
    print(json.dumps([keep_signal(m, a.n or None) for m in a.model], indent=1))

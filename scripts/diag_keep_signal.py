"""Diagnostic (validation only): does GRPO's sampling ever propose "keep" where keeping is right?

A thin CLI over :func:`ivt_lib.analysis.keep_signal.keep_signal`: for validation samples whose greedy step-0 box is
good (IoU >= 0.85), refine that box once greedily and ``G`` times sampled (temperature 1, the GRPO tier's rollouts),
and report how often a step-1 answer keeps the drawn box (IoU with it >= 0.9), with Wilson CIs, and the IoU of keeps
vs moves. Usage: ``python scripts/diag_keep_signal.py --model runs/default/sft/student/merged``.
"""
import argparse
import json

from ivt_lib.analysis import keep_signal as ks
from ivt_lib.core.feedback import FEEDBACK_VIEWS
from ivt_lib.corpora import splits


def keep_signal(model: str, n: int | None = None, group: int = 6, temperature: float = 1.0, good_iou: float = 0.85,
                feedback: str = "overlay", device: str = "cpu") -> dict:
    """The library's keep signal of ``model`` on the first ``n`` validation samples (None = all)."""
    val = splits.load_split("validation", limit=n)
    return ks.keep_signal(model, val, group=group, temperature=temperature, good_iou=good_iou, feedback=feedback,
                          device=device)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--n", type=int, default=0, help="validation samples (0 = all)")
    ap.add_argument("--group", type=int, default=6, help="sampled step-1 answers per good start")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--good-iou", type=float, default=0.85, help="step-0 IoU of a good start")
    ap.add_argument("--feedback", default="overlay", choices=FEEDBACK_VIEWS, help="how a refine step shows the box")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    print(json.dumps([keep_signal(m, a.n or None, a.group, a.temperature, a.good_iou, a.feedback, a.device)
                      for m in a.model], indent=1))

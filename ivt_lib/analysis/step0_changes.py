"""Which step-0 answers a trained model changes against base single shot, and how: another object, or a slip.

Training lowers step 0 in some rows (the zoom view's most); a paired count says whether the lost answers are
wrong-object choices (IoU with the truth near 0) or near misses of the right object, and how many the model wins back.
Lost: base right (IoU ≥ ``thr``), model wrong; won: the reverse. Only trajectories are read (no model).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.trajectory import Trajectory

# IoU bins of a wrong step-0 answer: another object, a partial overlap, a near miss of the right one
BINS = {"another object (IoU < 0.01)": (0.0, 0.01), "partial (0.01-0.3)": (0.01, 0.3), "near miss (0.3-0.5)": (0.3, 0.5)}


def _bins(ious: np.ndarray) -> dict[str, int]:
    return {k: int(((ious >= lo) & (ious < hi)).sum()) for k, (lo, hi) in BINS.items()}


def step0_changes(base: Sequence[Trajectory], model: Sequence[Trajectory], thr: float = 0.5) -> dict:
    """Paired on the samples both cover (same ids): lost and won step-0 answers, each split by the wrong answer's IoU
    (the model's for lost, base's for won)."""
    by_id = {t.sample_id: t for t in base}
    pairs = [(by_id[t.sample_id].steps[0].iou, t.steps[0].iou) for t in model if t.sample_id in by_id]
    if not pairs:
        raise ValueError("base and model share no sample: step-0 changes need paired answers")
    b, m = np.array(pairs, dtype=float).T
    lost, won = (b >= thr) & (m < thr), (b < thr) & (m >= thr)
    return {"n": len(pairs), "lost": int(lost.sum()), "won": int(won.sum()), "net": int(won.sum() - lost.sum()),
            "lost_by_model_iou": _bins(m[lost]), "won_by_base_iou": _bins(b[won])}


def table(rows: Sequence[tuple[str, str, dict]]) -> list[str]:
    """Markdown lines: one row per (configuration, seed, :func:`step0_changes` result)."""
    head = " | ".join(f"lost: {k}" for k in BINS)
    out = [f"| configuration | seed | n | lost | won | net | {head} |", "|---|---|---|---|---|---|" + "---|" * len(BINS)]
    for name, seed, c in rows:
        cells = " | ".join(str(c["lost_by_model_iou"][k]) for k in BINS)
        out.append(f"| {name} | {seed} | {c['n']} | {c['lost']} | {c['won']} | {c['net']:+d} | {cells} |")
    return out

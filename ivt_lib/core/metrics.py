"""Metrics over trajectories: per-step accuracy, oracle best step, label-free stopping rules, stability.

Definitions used by every notebook (one place, so they never drift):
* ``acc@k``: share of samples whose box has IoU >= k with the ground truth (parse failures count as IoU 0).
* **Per-step IoU degradation**: the mean over samples and steps t=1..T of ``max(0, IoU(t-1) - IoU(t))``.
  ``mean_delta_iou`` is the signed mean of ``IoU(t) - IoU(t-1)`` over the same pairs.
* **improve / degrade / stay**: comparing IoU(T) with IoU(0) per sample; ``|delta| < 0.01`` is "stay".
  :func:`stability_bands` repeats it at dead bands 0.01/0.05/0.10 and splits "stay" by the step-0 IoU into
  ``kept_good`` (>= 0.5: a right box left alone) and ``stayed_bad`` (< 0.5: a wrong box never fixed).
* **oracle best step** (uses the ground truth; not deployable): per sample, the step with the highest IoU.
* **stop-when-still** (label-free): take the first step whose box moved less than ``eps`` (1 - IoU) from the previous.
* **confidence** (label-free): take the step with the highest mean token log-probability.
* **passes**: the forward passes a rule must run before it answers: T+1 for the oracle and confidence (they compare
  every step), up to the stopping step for stop-when-still.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .boxes import is_degenerate, is_still
from .loop import Trajectory

THRESHOLDS = (0.5, 0.7, 0.9)
STAY_EPS = 0.01


def summarize(ious: Sequence[float], parse_ok: Sequence[bool] | None = None,
              degenerate: Sequence[bool] | None = None) -> dict:
    """Accuracy at 0.5/0.7/0.9, mean IoU, parse and degenerate rates for one set of per-sample IoUs."""
    a = np.asarray(ious, dtype=float)
    if a.size == 0:
        raise ValueError("summarize got no samples")
    out = {f"acc@{k}": float((a >= k).mean()) for k in THRESHOLDS}
    out["mean_iou"] = float(a.mean())
    out["mean_iou_se"] = float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else 0.0
    out["parse_rate"] = float(np.mean(parse_ok)) if parse_ok is not None else 1.0
    if degenerate is not None:
        out["degenerate_rate"] = float(np.mean(degenerate))
    out["n"] = int(a.size)
    return out


def step_metrics(trajs: Sequence[Trajectory], step: int) -> dict:
    """Metrics of the boxes at ``step`` (0 = grounding)."""
    st = [tr.steps[step] for tr in trajs]
    return summarize([s.iou for s in st], [s.parse_ok for s in st],
                     [is_degenerate(s.box, tr.width, tr.height) for s, tr in zip(st, trajs)])


def step_ious(trajs: Sequence[Trajectory], step: int) -> list[float]:
    """Per-sample IoU at ``step`` (the paired input of :func:`ivt_lib.core.stats.compare`)."""
    return [tr.steps[step].iou for tr in trajs]


def per_step(trajs: Sequence[Trajectory]) -> list[dict]:
    """:func:`step_metrics` for every step."""
    return [step_metrics(trajs, t) for t in range(len(trajs[0].steps))]


def select(trajs: Sequence[Trajectory], rule: Callable[[Trajectory], int], runs_all_steps: bool = False) -> dict:
    """Metrics when each sample's answer is the step a selection rule picks, with ``mean_passes``: the forward passes
    the rule must run before it answers. A rule that compares every step (the oracle, confidence) runs all T+1
    (``runs_all_steps=True``) whichever it picks; a stopping rule runs up to the step it stops at."""
    idx = [rule(tr) for tr in trajs]
    st = [tr.steps[i] for tr, i in zip(trajs, idx)]
    out = summarize([s.iou for s in st], [s.parse_ok for s in st])
    out["mean_passes"] = float(np.mean([len(tr.steps) if runs_all_steps else i + 1 for tr, i in zip(trajs, idx)]))
    return out


def selected_ious(trajs: Sequence[Trajectory], rule: Callable[[Trajectory], int]) -> list[float]:
    """Per-sample IoU of the step a rule picks (paired statistics)."""
    return [tr.steps[rule(tr)].iou for tr in trajs]


def oracle_rule(tr: Trajectory) -> int:
    """ORACLE (uses ground truth): the step with the highest IoU."""
    return int(np.argmax(tr.ious))


def still_rule(eps: float = 0.05) -> Callable[[Trajectory], int]:
    """Label-free: stop at the first refine step whose box moved less than ``eps`` (1 - IoU) from the previous."""
    def rule(tr: Trajectory) -> int:
        for t in range(1, len(tr.steps)):
            if is_still(tr.steps[t - 1].box, tr.steps[t].box, eps):
                return t
        return len(tr.steps) - 1
    return rule


def confidence_rule(tr: Trajectory) -> int:
    """Label-free: the step whose answer has the highest mean token log-probability (parse failures last)."""
    scores = [s.mean_logprob if (s.parse_ok and math.isfinite(s.mean_logprob)) else -math.inf for s in tr.steps]
    return int(np.argmax(scores))


def selection_rows(rep: dict, T: int) -> dict[str, dict]:
    """The answers of a :func:`report` side by side: step 0, last step, ORACLE best step and label-free rules."""
    rows = {"step 0": rep["step0"]}
    if T > 0:
        rows.update({f"last step (T={T})": rep["last"], "ORACLE best step (uses GT)": rep["oracle_best_step (uses GT)"],
                     "stop-when-still (label-free)": rep["stop_when_still"],
                     "confidence (label-free)": rep["confidence"]})
    return rows


def _iou_matrix(trajs: Sequence[Trajectory], name: str) -> np.ndarray:
    """Samples x steps IoUs (refuses no trajectories or unequal lengths)."""
    if not trajs:
        raise ValueError(f"{name} got no trajectories")
    if len({len(tr.steps) for tr in trajs}) != 1:
        raise ValueError(f"{name} needs trajectories of equal length")
    return np.asarray([tr.ious for tr in trajs], dtype=float)


def stability(trajs: Sequence[Trajectory]) -> dict:
    """Per-step degradation, signed mean delta IoU, improve/degrade/stay shares (T vs 0)."""
    m = _iou_matrix(trajs, "stability")
    if m.shape[1] < 2:
        return {"degradation": 0.0, "mean_delta_iou": 0.0, "improve": 0.0, "degrade": 0.0, "stay": 1.0,
                "n": int(m.shape[0])}
    d = np.diff(m, axis=1)
    end = m[:, -1] - m[:, 0]
    return {"degradation": float(np.maximum(0.0, -d).mean()), "mean_delta_iou": float(d.mean()),
            "improve": float((end >= STAY_EPS).mean()), "degrade": float((end <= -STAY_EPS).mean()),
            "stay": float((np.abs(end) < STAY_EPS).mean()), "n": int(m.shape[0])}


BANDS = (0.01, 0.05, 0.10)
BAND_TOL = 1e-9  # a delta within this of the band counts as on it (0.35 - 0.30 is 0.0499999... in floats)


def stability_bands(trajs: Sequence[Trajectory], bands: Sequence[float] = BANDS, good_iou: float = 0.5) -> dict:
    """improve/degrade/stay shares (T vs 0) per dead band, "stay" split into kept_good / stayed_bad by step-0 IoU.

    Keyed by the band (``f"{b:g}"``: "0.01", "0.05", "0.1"); each value holds ``improve`` (delta >= b), ``degrade``
    (delta <= -b), ``stay`` (|delta| < b), ``kept_good`` (stayed, step-0 IoU >= ``good_iou``), ``stayed_bad``
    (stayed, step-0 IoU < ``good_iou``) and ``n``. A delta equal to the band counts as a move, as in
    :func:`stability`; improve + degrade + stay = 1 and kept_good + stayed_bad = stay.
    """
    m = _iou_matrix(trajs, "stability_bands")
    start, end = m[:, 0], m[:, -1] - m[:, 0]
    n, good, out = int(m.shape[0]), start >= good_iou, {}
    for b in bands:
        if not b > 0:
            raise ValueError(f"stability_bands needs bands > 0, got {b!r}")
        up, down = end >= b - BAND_TOL, end <= -b + BAND_TOL
        stay = ~(up | down)
        out[f"{b:g}"] = {"improve": int(up.sum()) / n, "degrade": int(down.sum()) / n, "stay": int(stay.sum()) / n,
                         "kept_good": int((stay & good).sum()) / n, "stayed_bad": int((stay & ~good).sum()) / n,
                         "n": n}
    return out


def by_family(trajs: Sequence[Trajectory], step: int = 0) -> dict[str, dict]:
    """:func:`step_metrics` per family."""
    fams = sorted({tr.family for tr in trajs})
    return {f: step_metrics([tr for tr in trajs if tr.family == f], step) for f in fams}


def report(trajs: Sequence[Trajectory], still_eps: float = 0.05) -> dict:
    """The standard side-by-side report: step 0, last step, oracle (labelled), label-free rules, stability (also per
    dead band)."""
    steps = per_step(trajs)
    return {
        "per_step": steps,
        # forward passes per sample, as the selection rules report theirs (tables showed NaN for these two)
        "step0": {**steps[0], "mean_passes": 1.0},
        "last": {**steps[-1], "mean_passes": float(len(steps))},
        "oracle_best_step (uses GT)": select(trajs, oracle_rule, runs_all_steps=True),
        "stop_when_still": select(trajs, still_rule(still_eps)),
        "confidence": select(trajs, confidence_rule, runs_all_steps=True),
        "stability": stability(trajs),
        "stability_bands": stability_bands(trajs),
        "by_family_step0": by_family(trajs, 0),
        "by_family_last": by_family(trajs, len(trajs[0].steps) - 1),
    }

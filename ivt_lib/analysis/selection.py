"""Which step to answer with: equal-compute baselines and label-free rules learned on the validation split.

Every rule here spends T+1 forward passes per sample (the oracle and confidence rules of ``metrics`` do too: they
must run every step before they can choose). Rules that use the ground truth are labelled ORACLE.

* **best-of-N** (ORACLE): the best of N = T+1 *sampled step-0* answers. The fair reference for the oracle best step:
  how much of the oracle's gain is only "best of N answers", without any refinement?
* **self-consistency** (label-free): the medoid of N sampled step-0 boxes (the box with the highest mean IoU to the
  others). The standard way to spend N passes, and the baseline that refinement must beat at equal compute.
* **move gate** (label-free, fitted): answer with the last refined box only when it moved more than ``tau``
  (1 - IoU with the step-0 box), else keep step 0; ``tau`` is chosen on validation.
* **verifier** (label-free, fitted): a logistic regression (scikit-learn) over per-step features the model itself
  gives, trained on validation to predict IoU >= 0.5, picking the step with the highest predicted probability.

Fitting takes validation trajectories only; the test split is only ever scored.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..core import boxes as bx
from ..core.loop import Trajectory

FEATURES = ("step_frac", "parse_ok", "moved_from_prev", "moved_from_step0", "mean_logprob", "min_logprob",
            "box_area_frac", "agreement")
_LP_MISSING = -10.0  # log-prob of a parse failure or an unknown value: far below any real answer's


def _moved(a, b) -> float:
    return 1.0 - bx.iou(a, b) if a is not None and b is not None else 1.0


def step_features(tr: Trajectory) -> np.ndarray:
    """``[T+1, len(FEATURES)]`` label-free features of each step of one trajectory."""
    T = len(tr.steps) - 1
    rows = []
    boxes = [s.box for s in tr.steps]
    for t, s in enumerate(tr.steps):
        others = [b for j, b in enumerate(boxes) if j != t and b is not None]
        agree = float(np.mean([bx.iou(s.box, b) for b in others])) if s.box is not None and others else 0.0
        lp = s.mean_logprob if math.isfinite(s.mean_logprob) else _LP_MISSING
        mn = s.min_logprob if math.isfinite(s.min_logprob) else lp
        rows.append([t / max(T, 1), float(s.parse_ok), _moved(boxes[t - 1], s.box) if t else 0.0,
                     _moved(boxes[0], s.box) if t else 0.0, lp if s.parse_ok else _LP_MISSING,
                     mn if s.parse_ok else _LP_MISSING,
                     bx.area(s.box) / (tr.width * tr.height) if s.box is not None else 0.0, agree])
    return np.asarray(rows, dtype=float)


def pick(trajs: Sequence[Trajectory], idx: Sequence[int]) -> list[float]:
    """The IoU of the step each sample answers with."""
    return [tr.steps[i].iou for tr, i in zip(trajs, idx)]


# --- the move gate -------------------------------------------------------------------------------------------------
def _gate_inputs(trajs: Sequence[Trajectory]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: how far the last box moved from step 0, whether it parsed, and the IoU at step 0 and at T."""
    T = len(trajs[0].steps) - 1
    moved = np.array([_moved(tr.steps[0].box, tr.steps[T].box) for tr in trajs])
    parsed = np.array([tr.steps[T].parse_ok for tr in trajs])
    return moved, parsed, np.array([tr.steps[0].iou for tr in trajs]), np.array([tr.steps[T].iou for tr in trajs])


def gate_choice(trajs: Sequence[Trajectory], tau: float) -> list[int]:
    """The move gate: the last step where it moved more than ``tau`` from step 0 (and parsed), else step 0."""
    T = len(trajs[0].steps) - 1
    moved, parsed, _, _ = _gate_inputs(trajs)
    return [T if take else 0 for take in (parsed & (moved > tau))]


def fit_move_gate(val: Sequence[Trajectory]) -> dict:
    """Choose ``tau`` on validation trajectories: the value with the best Acc@0.5 (ties: the larger ``tau``, i.e.
    fewer refined answers). ``tau = 1`` never takes the refined box (it equals step 0)."""
    if not val:
        raise ValueError("fit_move_gate needs validation trajectories")
    T = len(val[0].steps) - 1
    moved, parsed, iou0, iouT = _gate_inputs(val)
    grid = np.array(sorted({0.0, 1.0, *np.round(moved, 4).tolist()}))
    take = parsed[None, :] & (moved[None, :] > grid[:, None])          # [taus, samples]
    acc = np.where(take, iouT[None, :], iou0[None, :]) >= 0.5
    scores = acc.mean(1)
    best = max(range(len(grid)), key=lambda i: (scores[i], grid[i]))
    return {"rule": "move_gate", "tau": float(grid[best]), "val_acc@0.5": float(scores[best]), "n_val": len(val),
            "T": T, "val_acc@0.5_step0": float((iou0 >= 0.5).mean())}


# --- the verifier --------------------------------------------------------------------------------------------------
def fit_verifier(val: Sequence[Trajectory], seed: int = 0) -> dict:
    """Fit the logistic verifier (standardised features, L2, scikit-learn) on every step of the validation
    trajectories, target IoU >= 0.5. Returns the fitted rule as plain JSON (coefficients, scaling, what it saw)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if not val:
        raise ValueError("fit_verifier needs validation trajectories")
    X = np.concatenate([step_features(t) for t in val])
    y = np.concatenate([[s.iou >= 0.5 for s in t.steps] for t in val]).astype(int)
    if y.min() == y.max():
        raise ValueError("fit_verifier: every validation step has the same label; nothing to learn")
    scaler = StandardScaler().fit(X)
    clf = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(scaler.transform(X), y)
    rule = {"rule": "verifier", "features": list(FEATURES), "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(), "coef": clf.coef_[0].tolist(), "intercept": float(clf.intercept_[0]),
            "n_val": len(val), "n_steps": int(len(y)), "T": len(val[0].steps) - 1,
            "train_accuracy": float(clf.score(scaler.transform(X), y))}
    rule["val_acc@0.5"] = float(np.mean(np.asarray(pick(val, verifier_choice(val, rule))) >= 0.5))
    return rule


def verifier_scores(tr: Trajectory, rule: dict) -> np.ndarray:
    """The fitted verifier's logit for each step of one trajectory."""
    z = (step_features(tr) - np.asarray(rule["mean"])) / np.asarray(rule["scale"])
    return z @ np.asarray(rule["coef"]) + rule["intercept"]


def verifier_choice(trajs: Sequence[Trajectory], rule: dict) -> list[int]:
    """The step with the highest verifier score (first on ties)."""
    return [int(np.argmax(verifier_scores(tr, rule))) for tr in trajs]


# --- equal-compute baselines over N sampled step-0 answers ---------------------------------------------------------
def medoid(boxes: Sequence) -> int | None:
    """Index of the box with the highest mean IoU to the others (parse failures excluded); None if none parsed."""
    ok = [i for i, b in enumerate(boxes) if b is not None]
    if not ok:
        return None
    if len(ok) == 1:
        return ok[0]
    t = torch.tensor([boxes[i] for i in ok], dtype=torch.float64)
    m = bx.iou_pairwise(t, t).fill_diagonal_(0.0)  # every pair in one pass; a box's IoU with itself left out
    return ok[int(np.argmax((m.sum(1) / (len(ok) - 1)).numpy()))]


def sampled_baselines(sampled: Sequence[Sequence[Trajectory]]) -> dict[str, list[float]]:
    """Per-sample IoUs of best-of-N (ORACLE) and self-consistency, from N runs of step-0 sampling (each a list of
    trajectories over the same samples, in the same order)."""
    if not sampled:
        raise ValueError("sampled_baselines needs at least one sampled run")
    n = len(sampled[0])
    if any(len(r) != n for r in sampled):
        raise ValueError("sampled runs must cover the same samples")
    best, sc = [], []
    for i in range(n):
        steps = [r[i].steps[0] for r in sampled]
        best.append(max(s.iou for s in steps))
        m = medoid([s.box for s in steps])
        sc.append(steps[m].iou if m is not None else 0.0)
    return {"best-of-N ORACLE (uses GT)": best, "self-consistency (label-free)": sc}

"""Paired statistics for comparing two answers on the same samples (scipy, not home-made).

* **Paired bootstrap CI** of a difference in Acc@k or mean IoU: resample the samples (pairs) with replacement; the
  statistic is the mean of the per-sample differences, so resampling pairs is resampling those differences
  (``scipy.stats.bootstrap``, percentile interval, seeded).
* **Exact McNemar test** of the Acc@0.5 flips: under the null a flip is equally likely to be a gain or a loss, so the
  p-value is the two-sided binomial test of ``gained`` out of ``gained + lost`` (``scipy.stats.binomtest``).
  No flips gives p = 1.

A difference whose CI contains 0 (or whose p >= 0.05) is reported as no difference.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as sps

THRESHOLDS = (0.5, 0.7, 0.9)
N_RESAMPLES = 4000
ALPHA = 0.05


def bootstrap_ci(diffs: Sequence[float], seed: int = 0, n_resamples: int = N_RESAMPLES,
                 confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-sample paired differences (a constant gives ``[c, c]``)."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        raise ValueError("bootstrap_ci got no samples")
    if np.all(d == d[0]):  # every resample has the same mean: the interval is that point (scipy would warn)
        return float(d[0]), float(d[0])
    res = sps.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                        vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """Exact McNemar test of B against A: ``gained`` (B right, A wrong), ``lost`` (A right, B wrong) and p."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar needs paired samples: {a.shape} vs {b.shape}")
    gained, lost = int((b & ~a).sum()), int((a & ~b).sum())
    p = 1.0 if gained + lost == 0 else float(sps.binomtest(gained, gained + lost, 0.5).pvalue)
    return {"gained": gained, "lost": lost, "p": p}


def compare(ious_a: Sequence[float], ious_b: Sequence[float], seed: int = 0,
            n_resamples: int = N_RESAMPLES) -> dict:
    """B minus A on the same samples: Δ and 95 % paired bootstrap CI of Acc@0.5/0.7/0.9 and mean IoU, and the exact
    McNemar test of the Acc@0.5 flips. ``significant`` is True when the Acc@0.5 CI excludes 0 and p < 0.05."""
    a, b = np.asarray(ious_a, dtype=float), np.asarray(ious_b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"compare needs two equal, non-empty sets of paired IoUs: {a.shape} vs {b.shape}")
    out: dict = {"n": int(a.size)}
    for k in THRESHOLDS:
        d = (b >= k).astype(float) - (a >= k).astype(float)
        out[f"d_acc@{k}"] = float(d.mean())
        out[f"ci_acc@{k}"] = list(bootstrap_ci(d, seed, n_resamples))
    d = b - a
    out["d_mean_iou"] = float(d.mean())
    out["ci_mean_iou"] = list(bootstrap_ci(d, seed, n_resamples))
    out["mcnemar"] = mcnemar(a >= 0.5, b >= 0.5)
    lo, hi = out["ci_acc@0.5"]
    out["significant"] = bool((lo > 0 or hi < 0) and out["mcnemar"]["p"] < ALPHA)
    return out


def verdict(c: dict, what: str = "Acc@0.5") -> str:
    """One line from a :func:`compare` result: the Δ, its CI and p, and whether it is a difference at all."""
    d, (lo, hi), m = c["d_acc@0.5"], c["ci_acc@0.5"], c["mcnemar"]
    tail = ("a significant gain" if c["significant"] and d > 0 else "a significant loss" if c["significant"]
            else "no significant difference")
    return (f"Δ{what} {100 * d:+.1f} pp [95 % CI {100 * lo:+.1f}, {100 * hi:+.1f}], {m['gained']} gained / "
            f"{m['lost']} lost, McNemar p = {m['p']:.3g}: {tail}")


def proportion_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of a proportion (error bars on one configuration's Acc@k)."""
    if n <= 0:
        raise ValueError("proportion_ci needs n > 0")
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def quarter_trend(xs: Sequence[float]) -> dict:
    """First- and last-quarter means of a curve (``max(1, n // 4)`` points each) and their change (last - first)."""
    x = np.asarray(xs, dtype=float)
    if x.size < 2:
        raise ValueError(f"quarter_trend needs a curve of at least 2 points, got {x.size}")
    k = max(1, x.size // 4)
    first, last = float(x[:k].mean()), float(x[-k:].mean())
    return {"first_quarter": first, "last_quarter": last, "change": last - first, "points": int(x.size), "k": k}

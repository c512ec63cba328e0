"""Paired statistics: hand-computed McNemar p-values, bootstrap CIs against the normal approximation, the edges."""
import math

import numpy as np
import pytest

from ivt_lib.core import stats


def test_mcnemar_exact_matches_hand_computed_binomial():
    a = [True] * 6 + [False] * 2 + [True] * 10
    b = [False] * 6 + [True] * 2 + [True] * 10
    m = stats.mcnemar(a, b)
    assert (m["gained"], m["lost"]) == (2, 6)
    # two-sided exact: 2 * P(X <= 2), X ~ Bin(8, 1/2) = 2 * (1 + 8 + 28) / 256
    assert m["p"] == pytest.approx(74 / 256)


def test_no_flips_gives_zero_interval_and_p_one():
    ious = np.linspace(0, 1, 50)
    c = stats.compare(ious, ious)
    assert c["ci_acc@0.5"] == [0.0, 0.0] and c["ci_mean_iou"] == [0.0, 0.0]
    assert c["mcnemar"] == {"gained": 0, "lost": 0, "p": 1.0}
    assert not c["significant"]
    assert "no significant difference" in stats.verdict(c)


def test_every_sample_flipped_one_way_excludes_zero():
    a, b = np.zeros(30), np.ones(30)
    c = stats.compare(a, b)
    assert c["ci_acc@0.5"][0] > 0 and c["d_acc@0.5"] == 1.0
    assert c["mcnemar"]["p"] == pytest.approx(2 * 0.5 ** 30)
    assert c["significant"] and "significant gain" in stats.verdict(c)
    assert stats.compare(b, a)["ci_acc@0.5"][1] < 0


def test_bootstrap_ci_close_to_normal_approximation():
    rng = np.random.default_rng(1)
    d = rng.normal(0.1, 1.0, 2000)
    lo, hi = stats.bootstrap_ci(d, seed=0)
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert lo == pytest.approx(d.mean() - 1.96 * se, abs=0.15 * se * 1.96 + 2e-3)
    assert hi == pytest.approx(d.mean() + 1.96 * se, abs=0.15 * se * 1.96 + 2e-3)
    assert stats.bootstrap_ci(d, seed=0) == (lo, hi), "seeded: the same interval twice"


def test_compare_is_paired_not_pooled():
    """A small consistent shift on noisy IoUs: pairing sees it, a pooled comparison would not."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 400)
    b = np.clip(a + 0.02, 0, 1)
    c = stats.compare(a, b)
    assert c["ci_mean_iou"][0] > 0


def test_bad_input_raises():
    with pytest.raises(ValueError, match="paired"):
        stats.mcnemar([True], [True, False])
    with pytest.raises(ValueError, match="non-empty"):
        stats.compare([], [])


def test_wilson_interval():
    lo, hi = stats.proportion_ci(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35
    lo, hi = stats.proportion_ci(50, 100)
    assert lo == pytest.approx(1 - hi)


def test_quarter_trend_compares_the_first_and_last_quarter_means():
    from ivt_lib.core.stats import quarter_trend

    t = quarter_trend([0.10, 0.12, 0.09, 0.08, 0.07, 0.05, 0.06, 0.04, 0.06])  # 9 points: 2 per quarter
    assert t["k"] == 2 and t["first_quarter"] == pytest.approx(0.11) and t["last_quarter"] == pytest.approx(0.05)
    assert t["change"] == pytest.approx(-0.06)
    assert quarter_trend([1.0, 0.0])["change"] == -1.0
    with pytest.raises(ValueError, match="at least 2 points"):
        quarter_trend([0.1])

"""The bootstrap behind the evaluation's intervals and verdicts: confidence intervals, paired
differences with p-values, and the Holm adjustment across metrics."""

from __future__ import annotations

import numpy as np
import pytest

from eval.bootstrap import bootstrap_ci, holm_adjust, paired_difference_ci


def test_holm_adjustment():
    assert holm_adjust([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm_adjust([0.5, 0.9]) == [1.0, 1.0]


def test_paired_difference_has_a_bootstrap_p_value():
    better = paired_difference_ci([1.0] * 30, [0.0] * 15 + [1.0] * 15, samples=500)
    assert better.verdict == "better" and better.p < 0.01
    same = paired_difference_ci([1.0, 0.0] * 10, [1.0, 0.0] * 10, samples=500)
    assert same.p == 1.0


def test_bootstrap_ci_of_a_known_distribution():
    sigma, n = 0.1, 400
    values = np.random.default_rng(42).normal(0.5, sigma, n)
    mean, low, high, count = bootstrap_ci(values.tolist(), samples=4000, seed=1)
    assert count == n and low < 0.5 < high and low < mean < high
    expected_width = 2 * 1.96 * sigma / np.sqrt(n)
    assert high - low == pytest.approx(expected_width, rel=0.15)


def test_bootstrap_ci_skips_none_and_is_repeatable():
    values = [1.0, None, 0.0, 1.0, None, 1.0]
    first = bootstrap_ci(values, samples=500, seed=3)
    assert first == bootstrap_ci(values, samples=500, seed=3)
    assert first.n == 4 and first.mean == 0.75
    assert bootstrap_ci([None, None]) == (None, None, None, 0)
    assert bootstrap_ci([0.4]) == (0.4, None, None, 1)
    assert bootstrap_ci([0.3] * 10) == pytest.approx((0.3, 0.3, 0.3, 10))


def test_bootstrap_rejects_bad_settings():
    with pytest.raises(ValueError, match="confidence level"):
        bootstrap_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="one value per question"):
        paired_difference_ci([1.0], [1.0, 2.0])


def test_paired_difference_verdicts():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    same = paired_difference_ci(base.tolist(), base.tolist())
    assert same.verdict == "no clear difference" and same.mean == 0.0
    shifted = (base + 0.1 + rng.normal(0, 0.05, 200)).tolist()
    better = paired_difference_ci(shifted, base.tolist())
    assert better.verdict == "better" and 0 < better.low < 0.1 < better.high
    assert paired_difference_ci(base.tolist(), shifted).verdict == "worse"
    # Lower latency is better; a metric with no direction says 'higher'/'lower'.
    assert paired_difference_ci(base.tolist(), shifted, higher_is_better=False).verdict == "better"
    assert paired_difference_ci(shifted, base.tolist(), higher_is_better=None).verdict == "higher"
    noise = paired_difference_ci(rng.random(30).tolist(), rng.random(30).tolist())
    assert noise.verdict == "no clear difference"


def test_paired_difference_uses_questions_defined_in_both():
    a = [1.0, None, 0.5, 0.2]
    b = [0.0, 1.0, None, 0.2]
    difference = paired_difference_ci(a, b, samples=200)
    assert difference.n == 2 and difference.mean == pytest.approx(0.5)
    assert paired_difference_ci([1.0, None], [None, 1.0]).verdict == "not comparable"

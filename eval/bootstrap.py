"""Percentile bootstrap confidence intervals for a mean and for a paired difference of means.

Questions are resampled with replacement; the interval is the central `level` share of the
resampled means. For two modes answered on the same questions the resampling is paired: the
same questions are drawn for both, which is the bootstrap of the per-question differences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

# Resampled means are computed in blocks of at most this many drawn indices, so that a large
# question set does not allocate samples x questions integers at once.
_BLOCK_CELLS = 4_000_000

NOT_COMPARABLE = "not comparable"
NO_CLEAR_DIFFERENCE = "no clear difference"


class Interval(NamedTuple):
    """A mean and its confidence interval over the `n` defined values (None when n < 2)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int


class Difference(NamedTuple):
    """Mean of a - b over the `n` questions where both are defined, its interval, a verdict."""

    mean: float | None
    low: float | None
    high: float | None
    n: int
    verdict: str
    p: float | None = None
    """Two-sided bootstrap p-value of 'no difference': twice the smaller share of resampled
    mean differences on either side of 0 (at most 1); None when not comparable."""
    """'better' / 'worse' (or 'higher' / 'lower' for a metric with no better direction) when
    the interval excludes 0, 'no clear difference' when it contains 0, 'not comparable' when
    fewer than 2 questions have both values."""


def _defined(values: Sequence[float | None]) -> np.ndarray:
    return np.array([v for v in values if v is not None], dtype=np.float64)


def _resampled_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    count = len(values)
    block = max(1, _BLOCK_CELLS // count)
    means = np.empty(samples)
    for start in range(0, samples, block):
        stop = min(samples, start + block)
        indices = rng.integers(0, count, size=(stop - start, count))
        means[start:stop] = values[indices].mean(axis=1)
    return means


def _interval(
    values: np.ndarray, samples: int, seed: int, level: float
) -> tuple[Interval, np.ndarray | None]:
    if not 0 < level < 1:
        raise ValueError(f"confidence level {level}: must be between 0 and 1, e.g. 0.95")
    if samples < 1:
        raise ValueError(f"bootstrap samples {samples}: must be at least 1, e.g. 2000")
    count = len(values)
    if count == 0:
        return Interval(None, None, None, 0), None
    mean = float(values.mean())
    if count < 2:
        return Interval(mean, None, None, count), None
    means = _resampled_means(values, samples, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(mean, float(low), float(high), count), means


def bootstrap_ci(
    values: Sequence[float | None], samples: int = 2000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Mean of the values and its percentile-bootstrap confidence interval; None values skipped.

    Args:
        values: one value per question; None where the metric is undefined.
        samples: bootstrap resamples.
        seed: seeds the resampling, so a report can be repeated exactly.
        level: the confidence level, e.g. 0.95.

    Returns:
        Interval(mean, low, high, n); mean is None when no value is defined, low and high are
        None when fewer than 2 are.
    """
    return _interval(_defined(values), samples, seed, level)[0]


def paired_difference_ci(
    a: Sequence[float | None],
    b: Sequence[float | None],
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    higher_is_better: bool | None = True,
) -> Difference:
    """Mean of a - b over the questions where both are defined, with a paired bootstrap interval.

    Args:
        a: one value per question for the first mode.
        b: the values of the second mode, for the same questions in the same order.
        samples: bootstrap resamples.
        seed: seeds the resampling.
        level: the confidence level.
        higher_is_better: direction of the metric; None words the verdict 'higher'/'lower'.

    Returns:
        Difference(mean, low, high, n, verdict); see `Difference.verdict`.

    Raises:
        ValueError: `a` and `b` have different lengths.
    """
    if len(a) != len(b):
        raise ValueError(
            f"paired values need one value per question in both modes: got {len(a)} and {len(b)}"
        )
    differences = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    interval, means = _interval(np.array(differences, dtype=np.float64), samples, seed, level)
    p = None
    if means is not None:
        if np.all(np.asarray(differences) == 0):
            p = 1.0
        else:
            p = float(min(1.0, 2 * min(np.mean(means <= 0), np.mean(means >= 0))))
    if interval.low is None:
        verdict = NOT_COMPARABLE
    elif interval.low <= 0 <= interval.high:
        verdict = NO_CLEAR_DIFFERENCE
    else:
        up = interval.low > 0
        if higher_is_better is None:
            verdict = "higher" if up else "lower"
        else:
            verdict = "better" if up == higher_is_better else "worse"
    return Difference(*interval, verdict, p)


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values for a family of tests (None stays None).

    The k-th smallest of m p-values is multiplied by m - k + 1, and the adjusted values are
    made non-decreasing in that order, so a family-wise error rate of alpha holds when each
    adjusted value is compared with alpha.
    """
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, p * (len(order) - rank)))
        adjusted[i] = running
    return adjusted

"""How long an evaluation report's confidence intervals take: one interval per mode and metric
and one paired difference per compared pair of modes, each over the report's questions, at the
report's 2000 resamples (`eval.bootstrap`).

    python bench/bootstrap.py [--questions 500] [--modes 4] [--smoke]

Prints one row per kind of interval: how many, seconds in all, milliseconds each. The values
are random (the interval's cost depends on the question count, not on the values).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from machine import OtherLoad

from eval.bootstrap import bootstrap_ci, paired_difference_ci
from eval.metrics import METRICS
from eval.report import comparison_pairs
from retrieval.answer import MODES


def timed(call, columns: list[list[float]]) -> float:
    start = time.perf_counter()
    for values in columns:
        call(values)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--modes", type=int, default=len(MODES), help="the first N of MODES")
    parser.add_argument("--smoke", action="store_true", help="50 questions: checks the script")
    args = parser.parse_args()
    questions = 50 if args.smoke else args.questions
    rng = np.random.default_rng(0)
    load = OtherLoad()
    # What `eval.report` computes: each metric's interval per mode and per compared pair.
    modes, metrics = MODES[: args.modes], len(METRICS)
    intervals = [rng.random(questions).tolist() for _ in range(len(modes) * metrics)]
    pairs = [
        (rng.random(questions).tolist(), rng.random(questions).tolist())
        for _ in range(len(comparison_pairs(modes)) * metrics)
    ]
    rows = [
        ("mean, one mode", len(intervals), timed(bootstrap_ci, intervals)),
        ("paired difference", len(pairs), timed(lambda p: paired_difference_ci(*p), pairs)),
    ]
    total = sum(seconds for _, _, seconds in rows)
    print(f"{questions} questions, 2000 resamples; others' CPU share {load.share():.0%}")
    print(f"{'interval':<20}  {'count':>5}  {'seconds':>8}  {'ms each':>8}")
    for label, count, seconds in rows:
        print(f"{label:<20}  {count:>5}  {seconds:>8.3f}  {1000 * seconds / count:>8.2f}")
    print(f"{'report':<20}  {len(intervals) + len(pairs):>5}  {total:>8.3f}")


if __name__ == "__main__":
    main()

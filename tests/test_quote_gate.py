"""The quote gate's calibration: the bound that best tells answerable cases from lacking ones,
its best-sentence statistic, and its file."""

import json

import numpy as np
import pytest

from retrieval.quote_gate import best_quote_scores, calibrate, read_bounds, write_bounds


def test_the_bound_separates_the_cases_and_is_the_lowest_of_equals():
    bound = calibrate([0.8, 0.7, 0.65, 0.3], [0.2, 0.4, 0.5, 0.9])
    # 0.65 keeps 3 of 4 answerable and refuses 3 of 4 lacking; 0.5 and 0.7 do worse.
    assert bound.bound == pytest.approx(0.65)
    assert (bound.kept, bound.refused) == (0.75, 0.75)
    assert (bound.answerable, bound.lacking) == (4, 4)
    separable = calibrate([0.8, 0.9], [0.1, 0.2])
    assert separable.bound == pytest.approx(0.8)  # the lowest bound that keeps both
    assert (separable.kept, separable.refused) == (1.0, 1.0)


def test_no_bound_when_nothing_is_told_apart_or_a_side_is_empty():
    assert calibrate([0.1, 0.2], [0.5, 0.6]) is None  # a bound only loses
    assert calibrate([0.5, 0.5], [0.5, 0.5]) is None
    assert calibrate([], [0.3]) is None and calibrate([0.3], []) is None


def test_the_statistic_is_the_best_candidates_cosine():
    table = {"q": [1.0, 0.0], "near": [0.8, 0.6], "far": [0.0, 1.0]}

    def encode(texts):
        return np.array([table[t] for t in texts])

    assert best_quote_scores(["q", "q", "q"], [["far", "near"], ["far"], []], encode) == [
        pytest.approx(0.8),
        pytest.approx(0.0),
        None,
    ]


def test_bounds_round_trip_and_a_broken_file_says_what_to_do(tmp_path):
    path = tmp_path / "quote_gate.json"
    assert read_bounds(path) == {}
    write_bounds(path, {"embedding": calibrate([0.9], [0.1]), "selector": None}, "abc")
    assert read_bounds(path) == {"embedding": pytest.approx(0.9)}
    assert json.loads(path.read_text())["inputs"] == "abc"
    path.write_text('{"bounds": {"embedding": {"bound": "high"}}}')
    with pytest.raises(ValueError, match="not a quote gate file.*rerun `ragtune tune`"):
        read_bounds(path)

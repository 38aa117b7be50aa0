"""Which synthesized pairs a run trains on: kinds balanced, files in turn, seeded."""

from collections import Counter

import pytest

from finetune.config import TuneConfig
from finetune.pairs import QAPair
from finetune.sampling import sample_pairs


def pairs(kinds: dict[str, int], files: int = 3) -> list[QAPair]:
    made = []
    for kind, count in kinds.items():
        for i in range(count):
            made.append(
                QAPair(f"{kind} {i}?", "a", f"{kind}-{i}", f"f{i % files}.md", None, None, "e",
                       "rules", kind=kind)
            )  # fmt: skip
    return made


def test_kind_gives_each_kind_an_equal_share_and_a_small_kind_all_it_has():
    chosen = sample_pairs(pairs({"heading": 120, "sentence": 75, "table": 30, "faq": 10}), 120,
                          "kind", seed=0)  # fmt: skip
    assert len(chosen) == 120 and len({p.chunk_id for p in chosen}) == 120
    assert Counter(p.kind for p in chosen) == {
        "heading": 40,
        "sentence": 40,
        "table": 30,
        "faq": 10,
    }


def test_within_a_kind_the_files_take_turns():
    chosen = sample_pairs(pairs({"heading": 90}, files=3), 30, "kind", seed=1)
    assert Counter(p.source for p in chosen) == {"f0.md": 10, "f1.md": 10, "f2.md": 10}


def test_none_keeps_the_proportions_roughly_and_both_are_seeded():
    everything = pairs({"heading": 300, "table": 100})
    one = sample_pairs(everything, 100, "none", seed=3)
    assert one == sample_pairs(everything, 100, "none", seed=3)
    assert sample_pairs(everything, 100, "kind", seed=3) == sample_pairs(everything, 100, "kind", 3)
    assert Counter(p.kind for p in one)["heading"] > 55


def test_under_the_budget_every_pair_is_kept():
    everything = pairs({"heading": 5, "table": 2})
    assert sample_pairs(everything, 120, "kind", seed=0) == everything
    assert sample_pairs(everything, 0, "kind", seed=0) == everything


def test_an_unknown_balance_is_a_config_problem():
    assert any(
        "balance = 'sources'" in problem for problem in TuneConfig(balance="sources").problems()
    )
    with pytest.raises(ValueError, match="unknown balance"):
        sample_pairs(pairs({"heading": 5}), 2, "sources", seed=0)


def test_yes_and_no_share_one_kind_half_each():
    chosen = sample_pairs(pairs({"heading": 60, "factoid": 60, "yes": 40, "no": 40}), 60, "kind",
                          seed=2)  # fmt: skip
    assert Counter(p.kind for p in chosen) == {"heading": 20, "factoid": 20, "yes": 10, "no": 10}
    # an odd share: the labels differ by one at most, and the budget is spent
    odd = sample_pairs(pairs({"heading": 60, "yes": 40, "no": 40}), 45, "kind", seed=2)
    counts = Counter(p.kind for p in odd)
    assert len(odd) == 45 and abs(counts["yes"] - counts["no"]) <= 1


def test_yes_without_no_is_left_out_of_a_balanced_draw():
    chosen = sample_pairs(pairs({"heading": 60, "yes": 40}), 30, "kind", seed=0)
    assert Counter(p.kind for p in chosen) == {"heading": 30}

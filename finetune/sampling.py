"""Which synthesized pairs a run trains on when there are more than `tune.max_examples`.

A plain random sample keeps the synthesis's proportions, and those follow the corpus's layout, not
what users ask: a handbook of short sections yields mostly section-heading questions. Balanced,
each kind of question gets an equal share of the budget (a kind with fewer pairs gives its unused
share to the others; yes and no questions are one kind, half of each), and within a kind the
files take turns, so that no one template or file fills the run.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVar

from finetune.config import BALANCES
from finetune.pairs import QAPair

T = TypeVar("T")
YES_NO = "yes/no"


def take_turns(queues: Sequence[Sequence[T]]) -> list[T]:
    """Every item of `queues`, the queues taking turns: the first of each, then the second of
    each, and so on, in the queues' order."""
    return [
        queue[rank]
        for rank in range(max(map(len, queues), default=0))
        for queue in queues
        if rank < len(queue)
    ]


def sample_pairs(pairs: Sequence[QAPair], limit: int, balance: str, seed: int) -> list[QAPair]:
    """`limit` of `pairs` (all when there are no more), chosen as `balance` says, seeded.

    Raises:
        ValueError: an unknown `balance`.
    """
    if balance not in BALANCES:
        raise ValueError(f"unknown balance {balance!r}: choose one of {', '.join(BALANCES)}")
    if not limit or len(pairs) <= limit:
        return list(pairs)
    rng = random.Random(seed)
    if balance == "none":
        return rng.sample(list(pairs), limit)
    by_kind: dict[str, list[QAPair]] = defaultdict(list)
    for pair in pairs:
        by_kind[pair.kind or "?"].append(pair)
    # Yes and no questions share one kind's share, half each: a label is not a kind of
    # question, and a share each would train twice as many yes/no questions as any other kind.
    yes, no = by_kind.pop("yes", []), by_kind.pop("no", [])
    sizes = {kind: len(group) for kind, group in by_kind.items()}
    if yes and no:
        sizes[YES_NO] = 2 * min(len(yes), len(no))
    quotas = _equal_shares(sizes, limit)
    chosen: list[QAPair] = []
    for kind in sorted(by_kind):
        chosen.extend(_files_in_turn(by_kind[kind], quotas[kind], rng))
    both = quotas.get(YES_NO, 0)
    chosen.extend(_files_in_turn(yes, both - both // 2, rng))
    chosen.extend(_files_in_turn(no, both // 2, rng))
    rng.shuffle(chosen)
    return chosen


def _equal_shares(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """Split `limit` across the groups as evenly as their sizes allow (water filling)."""
    quotas = dict.fromkeys(sizes, 0)
    left = limit
    open_groups = sorted(sizes, key=lambda name: (sizes[name], name))
    while left > 0 and open_groups:
        share = max(1, left // len(open_groups))
        still_open = []
        for name in open_groups:
            take = min(share, sizes[name] - quotas[name], left)
            quotas[name] += take
            left -= take
            if quotas[name] < sizes[name]:
                still_open.append(name)
        open_groups = still_open
    return quotas


def _files_in_turn(group: list[QAPair], count: int, rng: random.Random) -> list[QAPair]:
    """`count` pairs of one kind, the files taking turns (each file's pairs in a seeded order)."""
    by_file: dict[str, list[QAPair]] = defaultdict(list)
    for pair in group:
        by_file[pair.source].append(pair)
    queues = [by_file[name] for name in sorted(by_file)]
    for queue in queues:
        rng.shuffle(queue)
    rng.shuffle(queues)
    return take_turns([queue[::-1] for queue in queues])[:count]

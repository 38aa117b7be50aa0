"""Yes/no questions made from kept pairs, in any language the persona files cover: a question
with a short key fact becomes a check of a proposed answer, once with the right one (answered
yes) and once with a false premise (answered no, followed by the right answer).

    'PubMed 1: What was the response rate?'  (45%)
    -> 'PubMed 1: What was the response rate? Is it 45%?'   Yes. <the pair's answer>
    -> 'PubMed 1: What was the response rate? Is it 62%?'   No. <the pair's answer>

No grammar is needed: the proposal is appended in the answer language's form of the question
(`retrieval.persona.Verdicts`), and the false answer is another key fact of the same shape (digits
replaced, case folded) from the corpus, the same document first; a number without one gets its
first digit changed. Made from pairs that already passed the filters, so a twin inherits its
checks (grounding, round trip, the base model's reading); they share the pair's evidence and so
land on the same side of the held-out split (`finetune.split`). The key fact of a twin is its
label word, which the evaluation scores and the own-answer check looks for at the answer's start.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from finetune.filters import MAX_QUESTION_WORDS
from finetune.pairs import QAPair
from finetune.sampling import take_turns
from finetune.text import token_text, tokens
from retrieval.persona import Verdicts

ELIGIBLE_KINDS = ("factoid", "table", "key_value")
"""Kinds whose answer is, or holds, one short fact."""
MAX_FACT_TOKENS = 8
_DIGIT = re.compile(r"\d")


def key_fact(pair: QAPair) -> str:
    """The pair's short fact to propose ('' when it has none): its span, or a table or
    key-value pair's whole answer."""
    fact = pair.span or (pair.answer if pair.kind in ("table", "key_value") else "")
    fact = fact.strip()
    return fact if fact and len(tokens(fact)) <= MAX_FACT_TOKENS else ""


def shape(fact: str) -> str:
    """What a false answer must share with the right one: its digits' places, its letters."""
    return _DIGIT.sub("0", fact.casefold())


def shifted_number(fact: str) -> str:
    """`fact` with the first digit of its first number changed (1 -> 2, 9 -> 1), or ''."""
    match = _DIGIT.search(fact)
    if match is None:
        return ""
    digit = int(match.group())
    return fact[: match.start()] + str(digit % 9 + 1) + fact[match.end() :]


def false_fact(pair: QAPair, fact: str, by_shape: dict[str, list[tuple[str, str]]]) -> str:
    """A fact of `fact`'s shape that `pair`'s evidence and answer do not hold, or ''."""
    held = token_text(f"{pair.evidence} {pair.answer}")
    candidates = by_shape.get(shape(fact), [])
    ordered = [c for s, c in candidates if s == pair.source] + [
        c for s, c in candidates if s != pair.source
    ]
    for candidate in [*ordered, shifted_number(fact)]:
        text = token_text(candidate)
        if candidate and text != token_text(fact) and text not in held:
            return candidate
    return ""


def files_in_turn(pairs: Sequence[QAPair], indices: Sequence[int]) -> list[int]:
    """`indices` reordered so that the files take turns, each file's in their order."""
    by_source: dict[str, list[int]] = defaultdict(list)
    for index in indices:
        by_source[pairs[index].source].append(index)
    return take_turns(list(by_source.values()))


def twin_pairs(pairs: Sequence[QAPair], verdicts: Verdicts, share: float) -> list[QAPair]:
    """Yes and no twins of the eligible `pairs`, the files taking turns, together at most
    `share` of `len(pairs)` (rounded down, an even number), a yes and a no per pair.

    Args:
        pairs: Kept pairs.
        verdicts: The answer language's yes, no and check question.
        share: The twins' share of the kept pairs (0 writes none).
    """
    wanted = int(share * len(pairs)) // 2 * 2
    if wanted <= 0:
        return []
    facts = [key_fact(pair) if pair.kind in ELIGIBLE_KINDS else "" for pair in pairs]
    by_shape: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pair, fact in zip(pairs, facts):
        if fact:
            by_shape[shape(fact)].append((pair.source, fact))
    twins: list[QAPair] = []
    for index in files_in_turn(pairs, [i for i, fact in enumerate(facts) if fact]):
        if len(twins) >= wanted:
            break
        pair, fact = pairs[index], facts[index]
        wrong = false_fact(pair, fact, by_shape)
        if not wrong:
            continue
        made = [
            replace(
                pair,
                question=verdicts.ask(pair.question, proposed),
                answer=f"{label}. {pair.answer.strip()}",
                kind=kind,
                span=label.casefold(),
            )
            for kind, label, proposed in (("yes", verdicts.yes, fact), ("no", verdicts.no, wrong))
        ]
        if all(len(tokens(twin.question)) <= MAX_QUESTION_WORDS for twin in made):
            twins.extend(made)
    return twins

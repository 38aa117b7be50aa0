"""Grounding scores of one answer: cited sources against the gold ones, the share of its
sentences that a shown chunk supports, facts missing from the cited chunk, and the rank of the
first gold source among those retrieved."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from eval.refusal import refusal_sentence
from retrieval.attribution import TermStatistics, split_claims, verify_claims
from retrieval.prompt import PromptDocument
from retrieval.text_units import fact_forms, facts_of

DEFAULT_FAITHFULNESS_THRESHOLD = 0.5


def _normalize_source(source: str) -> str:
    source = source.strip().replace("\\", "/").casefold()
    while source.startswith("./"):
        source = source[2:]
    return source.strip("/")


def same_source(a: str, b: str) -> bool:
    """Equal paths, or one path ends with the other at a folder boundary (case-insensitive)."""
    a, b = _normalize_source(a), _normalize_source(b)
    if not a or not b:
        return False
    shorter, longer = sorted((a, b), key=len)
    return longer == shorter or longer.endswith("/" + shorter)


def citation_precision_recall(
    cited_sources: Sequence[str], gold_sources: Collection[str]
) -> tuple[float | None, float | None]:
    """Precision and recall of the cited sources against the gold sources.

    Sources are compared with `same_source`, and each distinct cited source counts once.

    Returns:
        (precision, recall): precision is None when nothing is cited or there is no gold
        source; recall is None when there is no gold source, and 0.0 when nothing is cited.
    """
    gold = list(dict.fromkeys(gold_sources))
    if not gold:
        return None, None
    cited = list(dict.fromkeys(cited_sources))
    if not cited:
        return None, 0.0
    correct = sum(any(same_source(c, g) for g in gold) for c in cited)
    found = sum(any(same_source(c, g) for c in cited) for g in gold)
    return correct / len(cited), found / len(gold)


def checked_text(hit: dict) -> str:
    """A retrieved chunk of a report as the engine checks sentences against it (title and
    section above the shown text)."""
    return PromptDocument(
        source=hit.get("source", ""),
        text=hit.get("text", ""),
        section=hit.get("section"),
        title=hit.get("title"),
        table_header=hit.get("table_header"),
    ).checked_text


def faithfulness(
    answer: str,
    shown_texts: Sequence[str],
    threshold: float = DEFAULT_FAITHFULNESS_THRESHOLD,
    statistics: TermStatistics | None = None,
    refusal: str = "",
) -> float | None:
    """Share of the answer's sentences that one shown chunk supports (`retrieval.attribution`).

    Args:
        answer: the answer text, with or without [n] markers.
        shown_texts: each chunk shown to the model as the engine checks it (`checked_text`).
        threshold: the share of a sentence's word weight one chunk must hold.
        statistics: corpus word frequencies (None: frequencies among the shown chunks).
        refusal: the project's refusal sentence (see `is_refusal`); its sentences are no claim.

    Returns:
        The share in [0, 1] (0.0 when claims are made and no chunk was shown), or None when the
        answer makes no claim to check (a refusal, empty, or only 'Yes.').
    """
    claims = verify_claims(
        split_claims(answer, verdict=True),
        list(shown_texts),
        statistics=statistics,
        threshold=threshold,
        skip=lambda sentence: refusal_sentence(sentence, refusal),
    )
    checked = [c.supported for c in claims if c.supported is not None]
    if not checked:
        return None
    return sum(checked) / len(checked)


def fact_errors(claims: Sequence[Mapping[str, Any]], citations: Sequence[Mapping]) -> float:
    """How many claims marked supported have a fact that none of their cited chunks holds."""
    forms = {int(c["n"]): fact_forms(c.get("text", "")) for c in citations}
    errors = 0
    for claim in claims:
        if claim.get("supported"):
            held = set().union(*(forms.get(int(n), set()) for n in claim.get("cited") or []))
            errors += not facts_of(claim["text"]) <= held
    return float(errors)


def _first_gold_rank(retrieved: Sequence[str], gold: Collection[str], exact: bool) -> int | None:
    for rank, item in enumerate(retrieved, 1):
        if any(item == g if exact else same_source(item, g) for g in gold):
            return rank
    return None


def hit_at_k(
    retrieved: Sequence[str], gold: Collection[str], k: int, *, exact: bool = False
) -> float | None:
    """1.0 when a gold item is among the first `k` retrieved, else 0.0.

    Args:
        retrieved: retrieved sources (or chunk ids), best first.
        gold: the gold sources (or chunk ids).
        k: how many retrieved items count.
        exact: compare with `==` (chunk ids) instead of `same_source` (paths).

    Returns:
        None when there is no gold item.
    """
    if not gold:
        return None
    rank = _first_gold_rank(retrieved[:k], gold, exact)
    return float(rank is not None)


def reciprocal_rank(
    retrieved: Sequence[str], gold: Collection[str], *, exact: bool = False
) -> float | None:
    """1 / rank of the first gold item among `retrieved` (0.0 when absent; None without gold)."""
    if not gold:
        return None
    rank = _first_gold_rank(retrieved, gold, exact)
    return 0.0 if rank is None else 1.0 / rank

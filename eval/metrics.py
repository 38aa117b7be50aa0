"""Per-question scores of one answer: correctness, faithfulness, citations, retrieval, refusal.

Every metric returns a float, or None where it is undefined for that question (no gold
sources, nothing cited, a closed-book mode...); None is left out of the mode's mean, so each
mean is over the questions where the metric makes sense, and the report gives that count.

Answers come as dicts (or dataclasses, e.g. the engine's `Answer`) with the fields `answer`,
`citations` (each with `source`, `text`), `retrieved` (each with `source`, `chunk_id`),
`mode`, `refused` and `latency_s` (or `seconds`).
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eval.questions import EvalQuestion
from retrieval.answer_match import CITATION_MARKER, answer_tokens, holds_answer, normalize_answer
from retrieval.attribution import (
    TermStatistics,
    fact_forms,
    facts_of,
    split_claims,
    verify_claims,
)
from retrieval.prompt import NO_ANSWER, SENTENCE_STOPS, PromptDocument

DEFAULT_FAITHFULNESS_THRESHOLD = 0.5
LABELS = ("yes", "no", "maybe")

_SPACE_BEFORE_PUNCTUATION = re.compile(r"(?<!\s)\s+([.,;:!?])")
# A sentence ends at . ! or ? followed by space and a capital, digit or quote: "2.1 days" and
# "e.g. the" stay whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n+")
_DOCS = r"(documents?|context|texts?|sources?|passages?|excerpts?)"
_REFUSALS = tuple(
    re.compile(pattern)
    for pattern in (
        r"\b(could|can) ?not find\b",
        r"\b(couldn't|can't|unable to|not able to) find\b",
        r"\b(cannot|can not|can't|unable to|not able to) answer\b",
        rf"\b{_DOCS} (do|does|did)(?: not|n't) (contain|mention|say|provide|include|specify|state)",
        rf"\bnot (mentioned|stated|specified|provided|found|given|available) in the "
        rf"(provided |given )?{_DOCS}",
        r"\bi (do not|don't) (know|have (enough )?information)\b",
        r"\b(there is|there's) no information\b",
    )
)
# "..., but ..." joins a refusal clause to an answering one.
_CONTRAST = re.compile(r"[,;]?\s+(?:but|however|although|though|yet)\b,?", re.IGNORECASE)


@dataclass(frozen=True)
class MetricInfo:
    """How one metric reads in the report."""

    key: str
    label: str
    higher_is_better: bool | None
    """None: neither direction is better in itself (the report says 'higher' or 'lower')."""
    bounded: bool = True
    """The value lies in [0, 1]."""


HEADLINE_METRIC = "correct"
"""The pre-registered headline: is the answer right?"""

METRICS = (
    MetricInfo("correct", "correctness (gold answer contained)", True),
    MetricInfo("gold_recall", "gold-token recall", True),
    MetricInfo("token_f1", "token F1", True),
    MetricInfo("exact_match", "exact match", True),
    MetricInfo("label_accuracy", "label accuracy", True),
    MetricInfo("judge_score", "judge score (1-5)", True, bounded=False),
    MetricInfo("faithfulness", "faithfulness (sentences supported by a shown chunk)", True),
    MetricInfo("citation_precision", "citation precision (verified)", True),
    MetricInfo("citation_recall", "citation recall (verified)", True),
    MetricInfo("model_cited", "model wrote a valid [n] itself", True),
    MetricInfo(
        "fact_errors",
        "supported sentences with a fact missing from the cited chunk",
        False,
        bounded=False,
    ),
    MetricInfo("hit_at_k", "retrieval hit@k", True),
    MetricInfo("mrr", "retrieval MRR", True),
    MetricInfo("refusal", "refusal rate", None),
    MetricInfo("latency_s", "latency (s)", False, bounded=False),
)
METRIC_INFO = {info.key: info for info in METRICS}


def metric_definitions(faithfulness_threshold: float = DEFAULT_FAITHFULNESS_THRESHOLD) -> dict:
    """How each metric is computed, in words, for the report."""
    percent = f"{faithfulness_threshold:.0%}"
    return {
        "correct": "The headline. 1 when the answer is right: for a yes/no/maybe reference, its "
        "first label word is the reference; for a reference saying the documents lack the "
        "answer, the answer refuses; otherwise the normalized reference (lower case, no "
        "punctuation, articles or [n] markers, thousands separators removed: '9,000' = '9000') "
        "occurs as a whole in the normalized answer, which must not be a refusal. A refusal "
        "of an answerable question is wrong.",
        "gold_recall": "Share of the reference's normalized tokens that occur in the answer (0 "
        "for a refusal of an answerable question; for an unanswerable one, 1 when it refuses).",
        "token_f1": "Harmonic mean of token precision and recall between the answer and the "
        "reference after SQuAD normalization (lower case, punctuation, articles and [n] "
        "citation markers removed; in scripts written without spaces, such as Chinese and "
        "Japanese, each character is a token). A refusal scores 1 only when the reference is a "
        "refusal.",
        "exact_match": "1 when the normalized answer equals the normalized reference, else 0.",
        "label_accuracy": "Only for yes/no/maybe references: 1 when the first of the words "
        "yes, no, maybe in the answer is the reference label, else 0.",
        "judge_score": "Correctness from 1 (wrong) to 5 (fully correct) given by the judge "
        "model, which sees the question, the reference and the answer.",
        "faithfulness": "Share of the answer's sentences that one of the chunks shown to the "
        "model supports, cited or not: every number, date and code of the sentence occurs in "
        f"the chunk and the chunk holds at least {percent} of the sentence's word weight (words "
        "weighted by inverse document frequency over the index, so words found everywhere "
        "count little). Refusal sentences and sentences with nothing to check ('Yes.') are "
        "skipped. Lexical: a paraphrase can miss and a contradiction using the chunk's words "
        "can pass. RAG modes only; refusals are left out.",
        "citation_precision": "Share of the distinct sources of the verified citations (the "
        "chunks that support a sentence, whatever marker the model wrote) that are gold "
        "sources. Left out when nothing is cited, the answer refuses, or the question has no "
        "gold sources. RAG modes only.",
        "citation_recall": "Share of the gold sources among the verified citations (0 when "
        "nothing is cited). Left out for refusals and when the question has no gold sources. "
        "RAG modes only.",
        "model_cited": "1 when the model itself wrote a marker [n] that points at a shown "
        "chunk. RAG modes only; refusals left out.",
        "fact_errors": "Sentences marked supported whose cited chunk lacks one of their facts "
        "(numbers, dates, codes), counted per answer from the cited chunks' text: a check on "
        "the verifier, which should be 0. RAG modes only.",
        "hit_at_k": "1 when a gold chunk (or, without one, a chunk of a gold source) is among the "
        "k retrieved chunks. RAG modes only.",
        "mrr": "Reciprocal rank of the first retrieved chunk that is gold (0 when none is). RAG "
        "modes only.",
        "refusal": "Share of answers that decline to answer: the engine's refusal sentence (the "
        "English one or style.refusal) or a common phrasing such as 'the documents do not "
        "mention' in every sentence, or an empty answer.",
        "latency_s": "Seconds to produce the answer, retrieval included.",
        "sources": "A source matches a gold source when the paths are equal or one ends with "
        "the other ('leave.md' matches 'handbook/leave.md'), ignoring case and slashes.",
    }


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 between a prediction and a reference (1.0 when both are empty)."""
    predicted, gold = answer_tokens(prediction), answer_tokens(reference)
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def contains_gold(prediction: str, reference: str) -> float:
    """1.0 when the normalized reference occurs in the normalized prediction at word bounds."""
    return float(holds_answer(prediction, reference))


def gold_token_recall(prediction: str, reference: str) -> float:
    """Share of the reference's normalized tokens (counted with repeats) in the prediction."""
    gold = Counter(answer_tokens(reference))
    if not gold:
        return 0.0
    found = Counter(answer_tokens(prediction))
    return sum((gold & found).values()) / sum(gold.values())


def _plain(text: str) -> str:
    """`text` lower-cased with one apostrophe and single spaces, without its closing stop."""
    return " ".join(text.lower().replace("\u2019", "'").split()).rstrip(SENTENCE_STOPS)


def _refusal_sentence(sentence: str, refusal: str = "") -> bool:
    text = _plain(sentence)
    if text == _plain(NO_ANSWER) or (refusal and text == _plain(refusal)):
        return True
    return any(pattern.search(text) for pattern in _REFUSALS)


def is_refusal(answer: str, refusal: str = "") -> bool:
    """True when the answer declines to answer: it is empty, or each of its sentences is a
    refusal.

    A refusal sentence is the engine's `NO_ANSWER` text, the project's own refusal sentence
    (`refusal`, from `style.refusal`, in any language) or a common English phrasing ('I could
    not find', 'the documents do not mention', 'I don't know', 'there is no information'). An
    answer that refuses in one sentence or clause and answers in another ('... does not
    provide a date, but it says every four years') is not a refusal.
    """
    if refusal and _plain(answer) == _plain(refusal):  # whole, though it may hold a 'but'
        return True
    return all(
        _refusal_sentence(clause, refusal)
        for sentence in split_sentences(answer)
        for clause in _CONTRAST.split(sentence)
        if clause.strip(string.punctuation + " ")
    )


def extract_label(answer: str, labels: Sequence[str] = LABELS) -> str | None:
    """The first label word (as a whole word) in the answer, or None (also for refusals)."""
    if is_refusal(answer):
        return None
    wanted = set(labels)
    return next((word for word in answer_tokens(answer) if word in wanted), None)


def label_accuracy(
    answer: str,
    reference: str,
    extractor: Callable[[str], str | None] = extract_label,
    labels: Sequence[str] = LABELS,
) -> float | None:
    """1.0 when the label extracted from the answer is the reference label, else 0.0.

    Returns:
        None when the reference is not one of `labels` (not a label question).
    """
    gold = normalize_answer(reference)
    if gold not in labels:
        return None
    return float(extractor(answer) == gold)


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


def split_sentences(answer: str) -> list[str]:
    """The answer's sentences, without citation markers; empty pieces dropped."""
    pieces = _SENTENCE_END.split(answer.strip())
    cleaned = (
        _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(CITATION_MARKER.sub(" ", piece).split()))
        for piece in pieces
    )
    return [piece for piece in cleaned if piece.strip(string.punctuation + " ")]


def _checked_text(hit: dict) -> str:
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
        split_claims(answer),
        list(shown_texts),
        statistics=statistics,
        threshold=threshold,
        skip=lambda sentence: _refusal_sentence(sentence, refusal),
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


def uses_retrieval(mode: str) -> bool:
    """True for the modes that read retrieved chunks ('rag', 'rag+tuned')."""
    return "rag" in mode.split("+")


def as_record(answer: Any) -> dict:
    """An answer (dict, or a dataclass such as the engine's Answer) as a plain dict."""
    if dataclasses.is_dataclass(answer) and not isinstance(answer, type):
        return dataclasses.asdict(answer)
    if isinstance(answer, Mapping):
        return dict(answer)
    raise TypeError(f"expected an answer dict or dataclass, got {type(answer).__name__}")


def _items(record: dict, key: str) -> list[dict]:
    return [as_record(item) for item in record.get(key) or []]


def latency(record: dict) -> float | None:
    """The answer's latency in seconds (`latency_s`, or the engine's `seconds`)."""
    value = record.get("latency_s", record.get("seconds"))
    return None if value is None else float(value)


def score_answer(
    question: EvalQuestion,
    answer: Any,
    *,
    k: int | None = None,
    faithfulness_threshold: float = DEFAULT_FAITHFULNESS_THRESHOLD,
    label_extractor: Callable[[str], str | None] = extract_label,
    judge_score: float | None = None,
    statistics: TermStatistics | None = None,
    refusal: str = "",
) -> dict[str, float | None]:
    """Every metric of one answer to one question.

    Args:
        question: the question with its reference answer and gold sources.
        answer: the engine's answer (dict or dataclass; see the module docstring).
        k: retrieved chunks shown to the model (and counted by hit@k); None: all retrieved.
        faithfulness_threshold: see `faithfulness`.
        label_extractor: turns a free-form answer into a label for `label_accuracy`.
        judge_score: the judge model's 1-5 score, when a judge ran.
        statistics: corpus word frequencies for `faithfulness`.
        refusal: the engine's refusal sentence (`AnswerEngine.refusal`), counted as a refusal
            beside the English one and the common phrasings (see `is_refusal`).

    Returns:
        {metric key: value or None}, with the keys of `METRICS`.
    """
    record = as_record(answer)
    text = record.get("answer") or ""
    refused = bool(record.get("refused")) or is_refusal(text, refusal)
    label = label_accuracy(text, question.answer, label_extractor)
    # An unanswerable question: refusing is the right answer.
    if is_refusal(question.answer, refusal):
        correct = f1 = em = recall = float(refused)
    elif refused:
        correct = f1 = em = recall = 0.0
    else:
        f1 = token_f1(text, question.answer)
        em = exact_match(text, question.answer)
        recall = gold_token_recall(text, question.answer)
        correct = label if label is not None else contains_gold(text, question.answer)
    row: dict[str, float | None] = {
        "correct": correct,
        "gold_recall": recall,
        "token_f1": f1,
        "exact_match": em,
        "label_accuracy": label,
        "judge_score": judge_score,
        "faithfulness": None,
        "citation_precision": None,
        "citation_recall": None,
        "model_cited": None,
        "fact_errors": None,
        "hit_at_k": None,
        "mrr": None,
        "refusal": float(refused),
        "latency_s": latency(record),
    }
    if not uses_retrieval(str(record.get("mode", ""))):
        return row
    citations = _items(record, "citations")
    retrieved = _items(record, "retrieved")
    shown = retrieved if k is None else retrieved[:k]
    if not refused:
        row["faithfulness"] = faithfulness(
            text, [_checked_text(h) for h in shown], faithfulness_threshold, statistics, refusal
        )
        precision, recall_sources = citation_precision_recall(
            [c["source"] for c in citations], question.sources
        )
        row["citation_precision"], row["citation_recall"] = precision, recall_sources
        row["model_cited"] = float(bool(record.get("model_citations")))
        row["fact_errors"] = fact_errors(_items(record, "claims"), citations)
    if question.chunk_id:
        ranked, gold, exact = [h["chunk_id"] for h in retrieved], [question.chunk_id], True
    else:
        ranked, gold, exact = [h["source"] for h in retrieved], question.sources, False
    row["hit_at_k"] = hit_at_k(ranked, gold, len(ranked) if k is None else k, exact=exact)
    row["mrr"] = reciprocal_rank(ranked, gold, exact=exact)
    return row

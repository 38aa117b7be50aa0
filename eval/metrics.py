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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eval.grounding import (
    DEFAULT_FAITHFULNESS_THRESHOLD,
    checked_text,
    citation_precision_recall,
    fact_errors,
    faithfulness,
    hit_at_k,
    reciprocal_rank,
)
from eval.questions import EvalQuestion
from eval.refusal import is_refusal
from retrieval.answer_match import answer_tokens, holds_answer, normalize_answer
from retrieval.attribution import TermStatistics

LABELS = ("yes", "no", "maybe")


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
            text, [checked_text(h) for h in shown], faithfulness_threshold, statistics, refusal
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

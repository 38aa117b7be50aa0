"""The A/B summary of an evaluation: per mode and metric a mean with its bootstrap interval, per
pair of modes the paired difference with a verdict, the findings in words, and the saved
report (report.json with everything, report.html to read)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from eval.bootstrap import (
    NO_CLEAR_DIFFERENCE,
    NOT_COMPARABLE,
    bootstrap_ci,
    holm_adjust,
    paired_difference_ci,
)
from eval.grounding import DEFAULT_FAITHFULNESS_THRESHOLD
from eval.html_report import render_html
from eval.labels import format_interval, metric_info, mode_label, short_numbers
from eval.metrics import (
    HEADLINE_METRIC,
    METRICS,
    as_record,
    latency,
    metric_definitions,
)
from eval.questions import EvalQuestion

# The questions the report answers first: does each addition help on its own and together?
FOCUS_PAIRS = (("rag+tuned", "rag"), ("rag+tuned", "tuned"), ("rag", "base"), ("tuned", "base"))
HEADLINE = "headline"
EXPLORATORY = "exploratory"


def headline_pair(modes: Sequence[str]) -> tuple[str, str] | None:
    """The one comparison named before any data: does tuning help RAG on correctness? Without
    both modes, the first focus pair present."""
    return next(((a, b) for a, b in FOCUS_PAIRS if a in modes and b in modes), None)


def comparison_pairs(modes: Sequence[str]) -> list[tuple[str, str, bool]]:
    """Every pair of modes as (a, b, is_focus_pair): the focus pairs present first, then the
    others with the later mode first (a is compared against b as a - b)."""
    pairs = [(a, b, True) for a, b in FOCUS_PAIRS if a in modes and b in modes]
    seen = {frozenset((a, b)) for a, b, _ in pairs}
    for first, second in combinations(modes, 2):
        if frozenset((first, second)) not in seen:
            pairs.append((second, first, False))
    return pairs


def summarize(
    rows_by_mode: Mapping[str, Sequence[Mapping[str, float | None]]],
    *,
    samples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Means, confidence intervals and paired differences of every metric across modes.

    Args:
        rows_by_mode: per mode, one metric row (`metrics.score_answer`) per question; every
            mode lists the same questions in the same order.
        samples: bootstrap resamples per interval.
        seed: seeds every bootstrap, so the same rows give the same summary.
        level: confidence level of the intervals.

    Returns:
        A JSON-ready dict: `modes`, `questions`, `bootstrap` (samples, seed, confidence),
        `metrics` (keys with at least one value), `per_mode[mode][metric]` = {mean, low, high,
        n}, and `comparisons`, a list of {a, b, focus, metric, mean, low, high, n, verdict, p,
        role, p_holm} where mean is the mean of a - b over the questions where both are
        defined; role is 'headline' for the pre-registered comparison (`headline_pair` on
        `HEADLINE_METRIC`), else 'exploratory', and p_holm is p adjusted (Holm) over the
        exploratory focus comparisons.

    Raises:
        ValueError: no mode, or modes with different numbers of questions.
    """
    modes = list(rows_by_mode)
    if not modes:
        raise ValueError("no mode to summarize: give at least one mode's answers")
    counts = {mode: len(rows) for mode, rows in rows_by_mode.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"every mode must answer the same questions, got question counts {counts}")
    present = {
        key
        for rows in rows_by_mode.values()
        for row in rows
        for key, value in row.items()
        if value is not None
    }
    order = [info.key for info in METRICS]
    metrics = [key for key in order if key in present]
    metrics += sorted(present - set(order))
    settings = {"samples": samples, "seed": seed, "level": level}

    def column(mode: str, key: str) -> list[float | None]:
        return [row.get(key) for row in rows_by_mode[mode]]

    per_mode = {
        mode: {key: bootstrap_ci(column(mode, key), **settings)._asdict() for key in metrics}
        for mode in modes
    }
    comparisons = []
    for a, b, focus in comparison_pairs(modes):
        for key in metrics:
            difference = paired_difference_ci(
                column(a, key),
                column(b, key),
                higher_is_better=metric_info(key).higher_is_better,
                **settings,
            )
            comparisons.append(
                {"a": a, "b": b, "focus": focus, "metric": key, **difference._asdict()}
            )
    headline = headline_pair(modes)
    family = []
    for comparison in comparisons:
        is_headline = (comparison["a"], comparison["b"]) == headline and (
            comparison["metric"] == HEADLINE_METRIC
        )
        comparison["role"] = HEADLINE if is_headline else EXPLORATORY
        comparison["p_holm"] = None
        if not is_headline and comparison["focus"]:
            family.append(comparison)
    for comparison, adjusted in zip(family, holm_adjust([c["p"] for c in family])):
        comparison["p_holm"] = adjusted
    return {
        "modes": modes,
        "questions": counts[modes[0]],
        "bootstrap": {"samples": samples, "seed": seed, "confidence": level},
        "metrics": metrics,
        "per_mode": per_mode,
        "comparisons": comparisons,
    }


def comparison_sentence(comparison: Mapping[str, Any], confidence: float = 0.95) -> str | None:
    """One comparison in words, or None when it is not comparable.

    The headline comparison is judged by its interval. An exploratory one claims a difference
    only when its Holm-adjusted p-value is below 1 - confidence as well.
    """
    verdict = comparison["verdict"]
    if verdict == NOT_COMPARABLE:
        return None
    a, b = mode_label(comparison["a"]), mode_label(comparison["b"])
    label = metric_info(comparison["metric"]).label
    mean, low, high = comparison["mean"], comparison["low"], comparison["high"]
    ci = f"{confidence:.0%} CI"
    prefix = "Headline (pre-registered): " if comparison.get("role") == HEADLINE else ""
    adjusted = comparison.get("p_holm")
    corrected = (
        comparison.get("role") == EXPLORATORY
        and adjusted is not None
        and adjusted >= 1 - confidence
        and verdict != NO_CLEAR_DIFFERENCE
    )
    if verdict == NO_CLEAR_DIFFERENCE and mean == low == high == 0:
        return f"{prefix}{a} and {b} are equal on {label} for every question."
    if verdict == NO_CLEAR_DIFFERENCE or corrected:
        mean, low, high = short_numbers(mean, low, high)
        after = f", Holm-adjusted p {adjusted:.2f}" if corrected else ""
        return (
            f"{prefix}{a} and {b} show no clear difference on {label} "
            f"(difference {mean}, {ci} {low} to {high}{after})."
        )
    if mean < 0:  # state the size of the gap as a positive number, interval included
        mean, low, high = -mean, -high, -low
    mean, low, high = short_numbers(mean, low, high)
    span = f"by {mean} ({ci} {low} to {high})"
    if verdict == "better":
        return f"{prefix}{a} beats {b} on {label} {span}."
    if verdict == "worse":
        return f"{prefix}{a} is worse than {b} on {label} {span}."
    return f"{prefix}{a} has a {verdict} {label} than {b} {span}."


def sentences_in_words(summary: Mapping[str, Any], focus_only: bool = True) -> list[str]:
    """The paired comparisons as sentences: the headline first, then the exploratory focus
    pairs (all pairs when there are no focus pairs), each corrected for multiple comparisons.

    Example: 'Headline (pre-registered): RAG+tuned beats RAG on correctness by 0.12 (...).'
    """
    comparisons = summary["comparisons"]
    if focus_only and any(c["focus"] for c in comparisons):
        comparisons = [c for c in comparisons if c["focus"]]
    comparisons = sorted(comparisons, key=lambda c: c.get("role") != HEADLINE)
    confidence = summary["bootstrap"]["confidence"]
    sentences = (comparison_sentence(c, confidence) for c in comparisons)
    return [sentence for sentence in sentences if sentence]


def format_summary_table(summary: Mapping[str, Any]) -> str:
    """The per-mode means and intervals as a plain-text table for the terminal."""
    modes, questions = summary["modes"], summary["questions"]
    header = ["metric", *(mode_label(mode) for mode in modes)]
    rows = [
        [
            metric_info(key).label,
            *(format_interval(summary["per_mode"][mode][key], questions) for mode in modes),
        ]
        for key in summary["metrics"]
    ]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    confidence = summary["bootstrap"]["confidence"]
    title = f"{questions} questions; mean [{confidence:.0%} bootstrap CI]"
    return "\n".join([title, line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _answer_json(answer: Any) -> dict[str, Any]:
    record = as_record(answer)
    return {
        "answer": record.get("answer") or "",
        "citations": [as_record(c) for c in record.get("citations") or []],
        # The retrieved chunks' text stays in the index; their ids and ranks are kept.
        "retrieved": [
            {key: as_record(hit).get(key) for key in ("source", "chunk_id", "score")}
            for hit in record.get("retrieved") or []
        ],
        "refused": bool(record.get("refused")),
        "dropped_citations": int(record.get("dropped_citations") or 0),
        "latency_s": latency(record),
    }


def per_question_records(
    questions: Sequence[EvalQuestion],
    answers_by_mode: Mapping[str, Sequence[Any]],
    rows_by_mode: Mapping[str, Sequence[Mapping[str, float | None]]],
) -> list[dict[str, Any]]:
    """One JSON-ready record per question with each mode's answer, citations and scores.

    Args:
        questions: the evaluated questions.
        answers_by_mode: per mode, the engine's answers (dicts or dataclasses), in question order.
        rows_by_mode: per mode, the metric rows of those answers.

    Returns:
        [{question, reference, sources, chunk_id, modes: {mode: {answer, citations (full chunk
        text included), retrieved (source, chunk_id, score), refused, dropped_citations,
        latency_s, metrics}}}].
    """
    records = []
    for index, question in enumerate(questions):
        modes = {
            mode: {**_answer_json(answers[index]), "metrics": dict(rows_by_mode[mode][index])}
            for mode, answers in answers_by_mode.items()
        }
        records.append(
            {
                "question": question.question,
                "reference": question.answer,
                "sources": list(question.sources),
                "chunk_id": question.chunk_id,
                "modes": modes,
            }
        )
    return records


def write_report(
    out_dir: Path | str,
    summary: Mapping[str, Any],
    per_question: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    style: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Save report.json (everything) and a self-contained report.html into `out_dir`.

    Args:
        out_dir: created when missing.
        summary: from `summarize`.
        per_question: from `per_question_records`.
        meta: what was evaluated (project, model, questions file, k, ...), shown as given;
            `faithfulness_threshold` there is quoted in the metric definitions.
        style: the style measures (`eval.style.style_measures`), for a project with a style.

    Returns:
        (path of report.json, path of report.html).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threshold = meta.get("faithfulness_threshold", DEFAULT_FAITHFULNESS_THRESHOLD)
    report = {
        "meta": dict(meta),
        "definitions": metric_definitions(threshold),
        "summary": summary,
        "sentences": sentences_in_words(summary),
        "questions": list(per_question),
    }
    if style is not None:
        report["style"] = dict(style)
    json_path, html_path = out / "report.json", out / "report.html"
    # allow_nan=False: a NaN would make the file unreadable for strict JSON parsers.
    json_path.write_text(
        json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    html_path.write_text(render_html(report), encoding="utf-8")
    return json_path, html_path

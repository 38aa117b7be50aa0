"""Style measures beside correctness, for a project with a [style]: does each mode speak as the
persona, at the target length, in the answer language?

- persona: the share of the persona's held-out identity questions ("who am I talking to?",
  never a training question) whose answer names the persona;
- length: the mean answer length in words (characters for unspaced scripts) on the evaluation
  questions, and its mean distance from the target;
- language: the share of answers that a language identifier (langid, trained on 97 languages)
  assigns to the answer language;
- voice, when a judge is configured: its 1-5 grade of how well each answer follows the voice.

Whether a voice costs facts is what the correctness metrics already measure, per mode, against
the plain reference answers: the report's comparisons give it with its interval.
"""

from __future__ import annotations

import statistics as stats
from collections.abc import Mapping, Sequence
from typing import Any

from eval.judge import voice_messages
from retrieval.config import StyleConfig
from retrieval.persona import answer_length, identity

Progress = Any


def names_persona(answer: str, name: str) -> bool:
    return name.strip().casefold() in answer.casefold()


def language_share(answers: Sequence[str], code: str) -> tuple[float | None, int]:
    """The share of `answers` identified as language `code`, and how many were identified."""
    import langid

    texts = [a for a in answers if a.strip()]
    if not texts:
        return None, 0
    hits = sum(langid.classify(text)[0] == code for text in texts)
    return hits / len(texts), len(texts)


def length_summary(answers: Sequence[str], target: int) -> dict[str, float | int | None]:
    lengths = [answer_length(a) for a in answers]
    if not lengths:
        return {"mean_words": None, "target_words": target or None, "mean_distance": None, "n": 0}
    return {
        "mean_words": round(stats.fmean(lengths), 1),
        "median_words": stats.median(lengths),
        "target_words": target or None,
        "mean_distance": round(stats.fmean(abs(x - target) for x in lengths), 1)
        if target
        else None,
        "n": len(lengths),
    }


def style_measures(
    engine: Any,
    style: StyleConfig,
    modes: Sequence[str],
    answers_by_mode: Mapping[str, Sequence[Mapping[str, Any]]],
    judge: Any = None,
) -> dict[str, Any]:
    """The style section of the report: per mode, persona naming, length and language.

    Args:
        engine: the answer engine (asked the identity questions in every mode).
        style: the project's style.
        modes: the evaluated modes.
        answers_by_mode: the evaluation's answers (dicts with 'question', 'answer', 'refused').
        judge: the evaluation's judge, when one is configured: it grades each answer's voice
            against `style.voice` (1-5).
    """
    result: dict[str, Any] = {"modes": {}}
    identity_questions: list[str] = []
    if style.persona:
        identity_questions = list(identity(style).eval_questions)
        result["persona"] = style.name.strip()
        result["identity_questions"] = identity_questions
    for mode in modes:
        kept = [a for a in answers_by_mode[mode] if not a.get("refused")]
        answered = [a["answer"] for a in kept]
        entry: dict[str, Any] = {"length": length_summary(answered, style.answer_words)}
        if judge is not None and style.voice.strip() and kept:
            grades = judge.grade_batch(
                [voice_messages(style.voice, a["question"], a["answer"]) for a in kept]
            )
            graded = [g for g in grades if g is not None]
            entry["voice"] = {
                "mean": round(stats.fmean(graded), 2) if graded else None,
                "n": len(graded),
            }
        if style.language.strip():
            share, n = language_share(answered, style.language.strip())
            entry["language"] = {"share": share, "n": n, "code": style.language.strip()}
        if identity_questions:
            replies = engine.answer_many(identity_questions, mode)
            named = [names_persona(r.answer, style.name) for r in replies]
            entry["persona"] = {
                "share": sum(named) / len(named),
                "n": len(named),
                "answers": [r.answer for r in replies],
            }
        result["modes"][mode] = entry
    return result


def style_rows(section: Mapping[str, Any]) -> list[list[str]]:
    """The style table's rows (mode, persona named, mean length, language share, the judge's
    voice grade) as text."""
    rows = []
    for mode, entry in section.get("modes", {}).items():
        persona = entry.get("persona")
        length = entry["length"]
        language = entry.get("language")
        voice = entry.get("voice")
        target = length.get("target_words")
        rows.append(
            [
                mode,
                f"{persona['share']:.0%} (n={persona['n']})" if persona else "-",
                "-"
                if length["mean_words"] is None
                else f"{length['mean_words']}" + (f" (target {target})" if target else ""),
                f"{language['share']:.0%} (n={language['n']})"
                if language and language["share"] is not None
                else "-",
                f"{voice['mean']} (n={voice['n']})" if voice and voice["mean"] is not None else "-",
            ]
        )
    return rows

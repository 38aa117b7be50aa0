"""Training targets in the house voice: the teacher rewrites each answer into the style's voice,
length and language, and a filter keeps a rewrite only if every fact of the original survives.

A fact is what correctness rests on, found without word lists: every token holding a digit
(numbers, codes, dates), and every word of the answer that is rare in the corpus (in under a
tenth of the chunks: names, terms, products). A rewrite that loses one, adds a number, copies
prompt markup or refuses is dropped, and the pair keeps its original answer (or is left out,
with `keep_unstyled=False`), so a weak teacher costs voice, never facts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from finetune.pairs import UNANSWERABLE, QAPair
from finetune.teacher import Teacher
from retrieval.attribution import TermStatistics, strip_prompt_markup
from retrieval.config import StyleConfig
from retrieval.persona import answer_length, language_name
from retrieval.prompt import has_citation_marker, is_no_answer, refusal_sentences
from retrieval.text_units import fact_forms, facts_of, words_of

RARE_SHARE = 0.1
"""A word in fewer than this share of the chunks is a term the rewrite must keep."""
MAX_EXAMPLES = 4
"""Example answers shown to the teacher per prompt (small models read few examples better)."""
_LEAD_IN = re.compile(r"^(?:rewritten answer|answer)\s*:\s*", re.IGNORECASE)

Progress = Callable[[int, int], None]


class StyleExamplesError(ValueError):
    """The examples file cannot be read; the message names it and the reason."""


@dataclass
class RewriteReport:
    """What the rewrite did to the training targets."""

    pairs: int = 0
    rewritten: int = 0
    kept_original: int = 0
    left_out: int = 0
    not_rewritten: int = 0
    """Refusal targets: they stay the refusal sentence (the style's, else the English one)."""
    unchanged: int = 0
    """Rewrites identical to the original (but for spacing): counted apart, not as styled."""
    lost_facts: int = 0
    added_facts: int = 0
    markup_or_refusal: int = 0
    empty: int = 0
    words_before: float = 0.0
    words_after: float = 0.0
    """Mean target length before and after, in words (characters for unspaced scripts)."""
    target_words: int = 0
    samples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(vars(self))


def read_examples(path: Path) -> list[str]:
    """Example answers, one per line; blank lines are skipped.

    Raises:
        StyleExamplesError: the file is missing, not UTF-8 text, or empty.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise StyleExamplesError(f"{path}: style.examples file not found") from error
    except (UnicodeDecodeError, OSError) as error:
        raise StyleExamplesError(f"{path}: cannot read style.examples ({error})") from error
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise StyleExamplesError(f"{path}: style.examples holds no answers (one per line)")
    return lines


def rewrite_messages(
    style: StyleConfig, question: str, answer: str, examples: Sequence[str]
) -> list[dict[str, str]]:
    """The teacher's prompt: the voice, the length, the language, a few examples, the answer."""
    wants = []
    if style.voice.strip():
        wants.append(f"Voice: {' '.join(style.voice.split())}")
    if style.answer_words:
        wants.append(f"Length: about {style.answer_words} words")
    code = style.language.strip()
    if code:
        wants.append(f"Language: {language_name(code) or code}")
    shown = "".join(f"- {example}\n" for example in examples[:MAX_EXAMPLES])
    user = "\n".join(wants) + "\n\n"
    if shown:
        user += f"Answers written in this voice:\n{shown}\n"
    user += f"Question: {question.strip()}\nAnswer: {answer.strip()}\n\nRewritten answer:"
    system = (
        "Rewrite the answer in the requested voice. Keep every fact, name and number exactly. "
        "Reply with the rewritten answer only."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def key_terms(text: str, statistics: TermStatistics) -> set[str]:
    """The text's rare words: in under `RARE_SHARE` of the corpus's chunks."""
    limit = RARE_SHARE * statistics.documents
    return {w for w in words_of(text) if statistics.frequencies.get(w, 0) < limit}


def check_rewrite(
    original: str,
    rewrite: str,
    statistics: TermStatistics,
    allowed: str = "",
    style: StyleConfig | None = None,
) -> str | None:
    """Why `rewrite` cannot replace `original` ('lost_facts', ...), or None when it can.

    A rare word that neither the original nor `allowed` holds (the pair's evidence, the voice
    description and the example answers: the words a styled answer may bring in) is an added
    claim ("designed for the home"), refused like an added number. A rewrite that says the
    refusal sentence (the style's or the English one) is refused too."""
    text, markup = strip_prompt_markup(rewrite)
    if not text.strip():
        return "empty"
    if markup or is_no_answer(text, style) or has_citation_marker(text):
        return "markup_or_refusal"
    facts = facts_of(original)
    if not facts <= fact_forms(text):
        return "lost_facts"
    if facts_of(text) - fact_forms(original):
        return "added_facts"
    if not key_terms(original, statistics) <= words_of(text):
        return "lost_facts"
    if key_terms(text, statistics) - words_of(f"{original} {allowed}"):
        return "added_facts"
    return None


def _clean(reply: str) -> str:
    text = _LEAD_IN.sub("", reply.strip())
    first = text.split("\n\n")[0]
    return " ".join(first.split()).strip("\"' ")


def rewrite_pairs(
    pairs: Sequence[QAPair],
    teacher: Teacher,
    style: StyleConfig,
    statistics: TermStatistics,
    examples: Sequence[str] = (),
    keep_unstyled: bool = True,
    progress: Progress | None = None,
    batch: int = 32,
) -> tuple[list[QAPair], RewriteReport]:
    """Rewrite the answers of `pairs` into the style; keep each rewrite that keeps its facts.

    Args:
        pairs: training pairs (never the evaluation split).
        teacher: writes the rewrites.
        style: the voice, length and language to write in.
        statistics: word frequencies over the project's chunks (what counts as a rare term).
        examples: answers in the house voice, shown to the teacher.
        keep_unstyled: a pair whose rewrite fails keeps its original answer (else left out).
        progress: called with (done, total).
        batch: prompts per teacher call.

    Returns:
        The pairs with styled answers, and what happened.
    """
    report = RewriteReport(pairs=len(pairs), target_words=style.answer_words)
    voice_words = " ".join([style.voice, *examples])
    refusals = refusal_sentences(style)
    todo = [i for i, p in enumerate(pairs) if p.kind != UNANSWERABLE and p.answer not in refusals]
    report.not_rewritten = len(pairs) - len(todo)
    replies: dict[int, str] = {}
    for start in range(0, len(todo), batch):
        rows = todo[start : start + batch]
        prompts = [
            rewrite_messages(style, pairs[i].question, pairs[i].answer, examples) for i in rows
        ]
        for i, reply in zip(rows, teacher.generate(prompts)):
            replies[i] = _clean(reply[0] if reply else "")
        if progress:
            progress(min(start + batch, len(todo)), len(todo))
    out: list[QAPair] = []
    before: list[int] = []
    after: list[int] = []
    for i, pair in enumerate(pairs):
        if i not in replies:
            out.append(pair)
            continue
        before.append(answer_length(pair.answer))
        allowed = f"{pair.evidence} {voice_words}"
        reason = check_rewrite(pair.answer, replies[i], statistics, allowed, style)
        if reason is None and " ".join(pair.answer.split()) == replies[i]:
            reason = "unchanged"
        if reason is None:
            report.rewritten += 1
            out.append(replace(pair, answer=replies[i]))
            after.append(answer_length(replies[i]))
            if len(report.samples) < 5:
                report.samples.append({"before": pair.answer, "after": replies[i]})
            continue
        setattr(report, reason, getattr(report, reason) + 1)
        if keep_unstyled:
            report.kept_original += 1
            out.append(pair)
            after.append(before[-1])
        else:
            report.left_out += 1
    if before:
        report.words_before = round(sum(before) / len(before), 1)
    if after:
        report.words_after = round(sum(after) / len(after), 1)
    return out, report

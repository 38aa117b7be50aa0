"""Yes/no questions from statements: 'The R-24A rotor is autoclavable.' becomes 'Is the R-24A
rotor autoclavable?' (yes) and 'The lid was not opened during the run.' becomes 'Was the lid
opened during the run?' (no).

The auxiliary verb after the subject moves to the front and a 'not' after it is dropped; the
answer starts with the label and quotes the sentence, so a tuned model learns to say yes or no
first and to show where it read it.

Documents state facts, so nearly all such questions are answered yes. A model tuned on them
learns to say yes to anything; `false_number_question` adds the missing no: the same question
with a wrong number ('Is the rotor retired after 13,500 runs?'), answered 'No.' and the sentence
with the right one, which is also what a user with a wrong premise needs to hear.
"""

from __future__ import annotations

import re
from itertools import pairwise

from finetune.number_questions import movable_subject
from finetune.question_context import ChunkContext
from finetune.text import STOPWORDS, word_set

_AUXILIARIES = word_set("is are was were has have had can must should will would did does do")
_PERFECT = word_set("has have had")
_DO = word_set("did does do")
_COPULAS = word_set("is are was were")
_NEGATIONS = word_set("not never")
# A sentence that states its own uncertainty or compares without a verdict makes a poor label.
_HEDGES = word_set("may might could possibly likely unclear whether if although")
_MIN_WORDS, _MAX_WORDS = 6, 35
_THERE = re.compile(r"^There (is|are|was|were) (no|an?) (?P<rest>.+)\.$")
_NO_SUBJECT = re.compile(
    r"^No (?P<subject>[a-z][\w -]{2,60}?) (?P<aux>is|are|was|were) (?P<rest>.+)\.$"
)


def yes_no_question(sentence: str, context: ChunkContext) -> tuple[str, str] | None:
    """(question, answer) for a plain statement with an auxiliary verb, or None.

    The answer is 'Yes. <sentence>' or, when the statement is negated ('was not', 'did not',
    'there was no', 'no X were'), 'No. <sentence>'.
    """
    words = sentence.rstrip(".").split()
    if not _MIN_WORDS <= len(words) <= _MAX_WORDS or not sentence.endswith("."):
        return None
    if not sentence[0].isupper() or re.search(r"[;:?!()\"]", sentence):
        return None
    if re.search(r",\s+(and|but|whereas|while)\b", sentence):
        return None  # two clauses, each with its own answer
    lowered = [word.lower().strip(",") for word in words]
    if _HEDGES & set(lowered):
        return None
    special = _there(sentence) or _no_subject(sentence)
    if special:
        question, negated = special
        return question, f"{'No' if negated else 'Yes'}. {sentence}"
    position = next((i for i, word in enumerate(lowered[:9]) if word in _AUXILIARIES), None)
    if position is None or position == 0 or "," in " ".join(words[:position]):
        return None
    if lowered[position - 1] in STOPWORDS:
        return None  # 'The patient improved and was discharged': no noun phrase before it
    subject = movable_subject(" ".join(words[:position]), context)
    if subject is None or subject == "you":
        return None
    rest = words[position + 1 :]
    negated = bool(rest) and rest[0].lower() in _NEGATIONS
    if negated:
        rest = rest[1:]
    if len(rest) < 2 or rest[0].lower() in _AUXILIARIES | {"no"}:
        return None
    if any(a == "and" and b.lower() in _AUXILIARIES for a, b in pairwise(rest)):
        return None  # 'is printed on the plate and is also shown': two verbs, two questions
    auxiliary = lowered[position]
    if auxiliary in _DO and not negated:
        return None  # 'did' only ever stands before 'not' in a statement
    if auxiliary in _PERFECT and not re.fullmatch(r"been|\w+(ed|en|wn)", rest[0].lower()):
        return None  # 'had a reduced risk' is a main verb: 'Had X a reduced risk?' is not English
    return f"{auxiliary.capitalize()} {subject} {' '.join(rest)}?", (
        f"{'No' if negated else 'Yes'}. {sentence}"
    )


def _there(sentence: str) -> tuple[str, bool] | None:
    """'There was no difference in X.' -> ('Was there any difference in X?', negated)."""
    match = _THERE.match(sentence)
    if match is None:
        return None
    negated = match.group(2) == "no"
    article = "any" if negated else match.group(2)
    return f"{match.group(1).capitalize()} there {article} {match.group('rest')}?", negated


def _no_subject(sentence: str) -> tuple[str, bool] | None:
    """'No complications were seen.' -> ('Were any complications seen?', True)."""
    match = _NO_SUBJECT.match(sentence)
    if match is None or match.group("aux") not in _COPULAS:
        return None
    aux = match.group("aux").capitalize()
    return f"{aux} any {match.group('subject')} {match.group('rest')}?", True


# A standalone number: not part of an identifier (R-24A, ISO-9001) or a version (4.2.2).
_STANDALONE_NUMBER = re.compile(r"(?<![\w.-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w.-]?\d|-\w)")
# Longer digit runs are identifiers (order or card numbers), not amounts to change.
_MAX_DIGITS = 15


def false_number_question(sentence: str, question: str) -> tuple[str, str] | None:
    """A yes-question made false by changing its first standalone number, answered 'No.' and
    the original sentence; None when it has no number that can be changed safely (years,
    numbers that already occur elsewhere in the sentence)."""
    for match in _STANDALONE_NUMBER.finditer(question):
        whole, decimals = match.group(1), match.group(2) or ""
        if len(whole) > _MAX_DIGITS:
            continue  # an identifier, not an amount (and too long for int() and float)
        value = int(whole.replace(",", ""))
        if 1900 <= value <= 2100 and not decimals:
            continue  # a year: a shifted year reads as a plausible different fact
        after = question[match.end() : match.end() + 2]
        percent = after.strip().startswith("%")
        half = max(1, round(value / 2))
        changed = value + half if not percent or value + half <= 100 else value - half
        text = f"{changed:,}" if "," in whole else str(changed)
        if re.search(rf"(?<![\w.,]){re.escape(text + decimals)}(?![\w,]|\.\d)", sentence):
            continue  # the new number is in the sentence already: the question could be true
        false = question[: match.start()] + text + decimals + question[match.end() :]
        return false, f"No. {sentence}"
    return None

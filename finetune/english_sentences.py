"""Rewrite an English sentence into a question: 'X is called Y' -> 'What is X called?', 'X has a
maximum speed of Y' -> 'What is the maximum speed of X?', a number after the verb
(`finetune.number_questions`), else a yes/no question (`finetune.yes_no_questions`).

Grammar rules for English text only: `synthesis.english_rules`, off by default. Every other
structural rule reads layout (`finetune.rule_questions`).
"""

from __future__ import annotations

import re

from finetune.drafts import CODE, IDENTIFIER, YES_NO_PRIORITY, Draft, code_question, finish
from finetune.number_questions import movable_subject, question_about_number
from finetune.question_context import DETERMINERS, ChunkContext
from finetune.yes_no_questions import false_number_question, yes_no_question

_CALLED = re.compile(
    r"^(?P<x>[A-Z][^,;:]{2,60}?) (?P<aux>is|are|was|were) (?:called|known as|named|referred to "
    r"as) (?P<y>.+)$"
)

_MEANS = re.compile(
    r"^(?P<x>[^,;:]{2,40}?) (?P<verb>means|stands for|refers to|indicates) (?P<y>.+)$"
)

_HAS_OF = re.compile(
    r"^(?P<x>[A-Z][^,;:]{2,50}?) (?:has|have) an? (?P<attribute>[a-z][a-z -]{2,40}?) of "
    r"(?P<value>\S.*)$"
)

_DEFINITION = re.compile(
    r"^(?P<x>[A-Z][^,;:()]{1,50}?) (?P<aux>is|are) (?P<y>(?:a|an|the|one of) .+)$"
)

_MEANING_VERBS = {
    "means": "mean",
    "stands for": "stand for",
    "refers to": "refer to",
    "indicates": "indicate",
}


def _named(phrase: str, context: ChunkContext) -> bool:
    """Whether `phrase` names something specific ('the Merlin MX-30', 'Pinboard')."""
    words = phrase.split()
    first_is_name = words[0].lower() not in DETERMINERS and context.is_proper(words[0])
    return (
        first_is_name
        or bool(IDENTIFIER.search(phrase))
        or any(context.is_proper(word) for word in words[1:])
    )


def _definition_like(sentence: str, context: ChunkContext) -> str | None:
    body = sentence.rstrip(".!")
    called = _CALLED.match(body)
    if called and len(called.group("x").split()) <= 8:
        subject = movable_subject(called.group("x"), context)
        if subject:
            return f"What {called.group('aux')} {subject} called?"
    means = _MEANS.match(body)
    if means and len(means.group("x").split()) <= 5 and means.group("x")[0].isupper():
        term, verb = means.group("x"), _MEANING_VERBS[means.group("verb")]
        if CODE.fullmatch(term.split()[-1]) and verb in ("mean", "indicate"):
            # 'Error 217 means ...' and 'E-217 means ...' ask the same: 'What does error 217 mean?'
            code = term.split()[-1] if context.about_errors else term
            return code_question(code, context, verb)
        if term.split()[0].lower() not in DETERMINERS | {"it", "this", "that"}:
            return f"What does {context.lower_first(term)} {verb}?"
    has_of = _HAS_OF.match(body)
    if has_of and _named(has_of.group("x"), context):
        subject = movable_subject(has_of.group("x"), context)
        if subject:
            return f"What is the {has_of.group('attribute')} of {subject}?"
    return None


def _definition(sentence: str, context: ChunkContext) -> str | None:
    match = _DEFINITION.match(sentence.rstrip(".!"))
    if not match or len(match.group("x").split()) > 6 or len(match.group("y").split()) < 3:
        return None
    if not _named(match.group("x"), context):
        return None
    subject = movable_subject(match.group("x"), context)
    return f"What {match.group('aux')} {subject}?" if subject else None


def sentence_drafts(sentence: str, context: ChunkContext) -> list[Draft]:
    """A wh-question (definition, number) or else a yes/no question about the sentence, plus,
    when the sentence holds a number, a yes/no question with a wrong number (answer: no)."""
    words = sentence.split()
    if not 4 <= len(words) <= 45 or not sentence.endswith((".", "!")):
        return []
    if not (sentence[0].isupper() or sentence[0].isdigit()):
        return []  # a fragment: the chunk started mid-sentence
    drafts = []
    question = _definition_like(sentence, context) or question_about_number(sentence, context)
    priority = 2
    if question is None:
        question, priority = _definition(sentence, context), 3
    if question is not None:
        question = context.with_product(finish(question))
        drafts.append(Draft(priority, question, sentence, sentence, "sentence"))
    yes_no = yes_no_question(sentence, context)
    if yes_no is not None:
        yes_question, answer = context.with_product(finish(yes_no[0])), yes_no[1]
        if not drafts:
            drafts.append(Draft(YES_NO_PRIORITY, yes_question, answer, sentence, "yes"))
        false = false_number_question(sentence, yes_question) if answer.startswith("Yes") else None
        if false:
            drafts.append(Draft(YES_NO_PRIORITY, false[0], false[1], sentence, "no"))
    return drafts

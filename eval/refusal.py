"""Whether an answer declines to answer: the engine's refusal sentence, the project's own
(`style.refusal`, any language) or a common English phrasing, in every sentence and clause."""

from __future__ import annotations

import re
import string

from retrieval.answer_match import CITATION_MARKER
from retrieval.prompt import NO_ANSWER, SENTENCE_STOPS

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


def split_sentences(answer: str) -> list[str]:
    """The answer's sentences, without citation markers; empty pieces dropped."""
    pieces = _SENTENCE_END.split(answer.strip())
    cleaned = (
        _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(CITATION_MARKER.sub(" ", piece).split()))
        for piece in pieces
    )
    return [piece for piece in cleaned if piece.strip(string.punctuation + " ")]


def _plain(text: str) -> str:
    """`text` lower-cased with one apostrophe and single spaces, without its closing stop."""
    return " ".join(text.lower().replace("\u2019", "'").split()).rstrip(SENTENCE_STOPS)


def refusal_sentence(sentence: str, refusal: str = "") -> bool:
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
        refusal_sentence(clause, refusal)
        for sentence in split_sentences(answer)
        for clause in _CONTRAST.split(sentence)
        if clause.strip(string.punctuation + " ")
    )

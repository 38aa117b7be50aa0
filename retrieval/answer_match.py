"""Whether an answer holds a reference answer: SQuAD normalization, shared by the evaluation's
correctness metric and the training targets that must hold their pair's key fact."""

from __future__ import annotations

import re
import string
import unicodedata

from retrieval.text_units import UNSPACED

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
CITATION_MARKER = re.compile(r"\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _without_punctuation(text: str) -> str:
    """`text` without ASCII punctuation and without Unicode punctuation (category P: the
    ideographic full stop and full-width commas of CJK text, curly quotes)."""
    text = text.translate(_PUNCTUATION)
    if text.isascii():
        return text
    return "".join(char for char in text if not unicodedata.category(char).startswith("P"))


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, no [n] markers, punctuation or articles, single spaces;
    thousands separators dropped first, so '9,000' and '9000' agree. Each character of a script
    written without spaces (Chinese, Japanese, ...) stands alone, as in the MLQA evaluation:
    '最大转速12000' -> '最 大 转 速 12000'."""
    text = _THOUSANDS.sub("", CITATION_MARKER.sub(" ", text)).lower()
    text = UNSPACED.sub(r" \g<0> ", _without_punctuation(text))
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """The normalized answer's tokens."""
    return normalize_answer(text).split()


def holds_answer(prediction: str, reference: str) -> bool:
    """Whether the normalized reference occurs in the normalized prediction at word bounds (an
    empty reference is held by nothing)."""
    gold = answer_tokens(reference)
    if not gold:
        return False
    return f" {' '.join(gold)} " in f" {' '.join(answer_tokens(prediction))} "

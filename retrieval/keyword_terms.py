"""The terms of the keyword index: words, identifiers whole and in parts, numbers normalized.

A question names a code as it likes ('MX-30', 'mx30', 'MX 30'; '10-K', '10K'; 'FY2022') and a
number with or without its separators ('9,000', '9000'), so a code is indexed whole and in its
parts, and a number without thousands separators, currency or percent signs:

    'MX-30'  -> mx-30, mx30, mx, 30          'R-24A'  -> r-24a, r24a, 24a, 24
    'FY2022' -> fy2022, fy, 2022             '$9,000' -> 9000        '4.5%' -> 4.5
    'U.S.'   -> u.s, us

Terms have two characters or more (a lone 's' or 'q' says little), except in scripts written
without spaces.

The parts are what tells 'MX-30' from 'MX-60': both share 'mx', only one has '30' and 'mx30'.
Words of letters are stemmed (Snowball English, which leaves words of other languages mostly as
they are); no word list is used: BM25's inverse document frequency already makes the words that
are everywhere count little, in any language. A run of a script written without spaces (Chinese,
Japanese, ...) becomes its overlapping character bigrams, and a single character stays a
unigram, so '最大转速' is found by '转速' with no segmenter.

Every expression here matches in linear time: each repetition needs a separator that the
repeated part cannot contain, so a failed match never restarts inside one it already tried.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from retrieval.text_units import UNSPACED_CHARS, split_unspaced

# Thousands separators between digit groups: '9,000' and '1,234,567.5' lose their commas.
_GROUPED_NUMBER = re.compile(r"(?<![\d,])\d{1,3}(?:,\d{3})+(?![\d,])")
# A compound: runs of word characters joined by a hyphen or a dot ('mx-30', '10-k', 'u.s',
# '4.5'). Underscores are word characters; other punctuation ($ % , / ...) separates.
_COMPOUND = re.compile(r"\w+(?:[-\u2010\u2011.]\w+)*")
_JOINER = re.compile(r"[-\u2010\u2011.]")
# Letters and digits apart: 'fy2022' -> 'fy', '2022'.
_LETTERS_OR_DIGITS = re.compile(r"\d+|[^\W\d]+")
_UNSPACED_RUN = re.compile(f"[{UNSPACED_CHARS}]+")


@functools.lru_cache(maxsize=1)
def _stem_words():
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


@functools.lru_cache(maxsize=1 << 16)
def _word_term(word: str) -> str:
    """A word of letters stemmed; anything else (a number, a bigram) as it is."""
    return _stem_words()(word) if word.isalpha() and word.isascii() else word


def _spaced(text: str) -> str:
    """`text` with each run of an unspaced script replaced by its bigrams, blank-separated."""
    return _UNSPACED_RUN.sub(lambda run: f" {' '.join(split_unspaced(run.group()))} ", text)


def _part_terms(part: str, terms: list[str]) -> None:
    """A part of a compound: itself, and its letter and digit runs when it mixes both."""
    runs = _LETTERS_OR_DIGITS.findall(part)
    if len(runs) == 1:
        terms.append(_word_term(part))
        return
    terms.append(part)
    terms.extend(_word_term(run) for run in runs)


def terms(text: str) -> list[str]:
    """The keyword terms of one text, in order (a term repeats as often as it occurs)."""
    text = _GROUPED_NUMBER.sub(lambda number: number.group().replace(",", ""), text.lower())
    found: list[str] = []
    for match in _COMPOUND.finditer(_spaced(text)):
        compound = match.group()
        parts = _JOINER.split(compound)
        if len(parts) > 1:
            found.append(compound)
            if not ("." in compound and all(part.isdigit() for part in parts)):
                found.append("".join(parts))  # but 4.5 is no 45
        for part in parts:
            _part_terms(part, found)
    # One character says little ('s' of "Apple's", 'q' of 'Q2'), except in unspaced scripts.
    return [term for term in found if len(term) > 1 or _UNSPACED_RUN.match(term)]


def terms_of(texts: Sequence[str]) -> list[list[str]]:
    """`terms` of each text."""
    return [terms(text) for text in texts]

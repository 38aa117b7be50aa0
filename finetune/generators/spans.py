"""Choose the answer inside a sentence by its form, in any script: a number with its unit, a
code or identifier, a quoted term, a capitalized name, or else the sentence's last clause.

Forms are read from Unicode categories and layout, never from a word list: a unit is a word that
follows numbers often in this corpus ('runs', 'rpm', 'billion', '天'), learnt by `UnitWords`;
a code mixes letters and digits or is written in capitals ('R-24A', 'AAPL', 'E-42'); a name is a
run of capitalized words that does not open the sentence.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from finetune.text import letter_count

NUMBER, CODE, QUOTED, NAME, CLAUSE = "number", "code", "quoted", "name", "clause"
SPAN_KINDS = (NUMBER, CODE, QUOTED, NAME, CLAUSE)
"""Best first: a number or a code is an unambiguous fact to ask about; a clause is a fallback."""

_WORD = re.compile(r"\S+")
# Quotes by layout: typographic pairs, guillemets, CJK corner brackets, backticks and ASCII
# double quotes around 1 to 80 characters without another quote inside.
_QUOTED = re.compile(r"[“«「『`\"]([^“”«»「」『』`\"\n]{1,80})[”»」』`\"]")
_EDGE_PUNCTUATION = ".,;:!?()[]{}'\"“”\u2018\u2019«»「」『』。、\uff0c\uff1b\uff1a\uff01\uff1f"
MIN_CLAUSE_WORDS = 3
MAX_CLAUSE_WORDS = 10
MAX_NAME_WORDS = 4
COMMON_SHARE = 0.1
"""A name or code found in more than this share of a corpus's chunks is not asked about."""


@dataclass(frozen=True)
class Span:
    """An answer chosen in a sentence: its text (as written there) and its form."""

    text: str
    kind: str


def _has_digit(word: str) -> bool:
    return any(unicodedata.category(char) == "Nd" for char in word)


def _strip(word: str) -> str:
    return word.strip(_EDGE_PUNCTUATION)


def _unspaced(char: str) -> bool:
    """A letter of a script written without spaces between words (Han, kana, Thai, ...): such
    letters have no case and are 'Lo'; Latin, Cyrillic, Greek letters have case."""
    return unicodedata.category(char) == "Lo" and not char.isascii()


def _pieces(word: str) -> list[str]:
    """A whitespace word, split where a script without spaces meets digits or other letters:
    '最大转速为12000转' -> ['最大转速为', '12000', '转']. Other words stay whole."""
    if not any(_unspaced(char) for char in word):
        return [word]
    pieces: list[str] = []
    kind = None
    for char in word:
        this = "unspaced" if _unspaced(char) else "other" if char.isalnum() else char
        if this == kind and kind in ("unspaced", "other"):
            pieces[-1] += char
        else:
            pieces.append(char)
        kind = this
    return pieces


def words_of(sentence: str) -> list[str]:
    """The words of `sentence`, unspaced scripts split from digits and punctuation."""
    return [piece for match in _WORD.finditer(sentence) for piece in _pieces(match.group())]


def _unit_key(word: str) -> str:
    """What is compared as a unit: the word, or an unspaced word's first character."""
    word = _strip(word).lower()
    return word[:1] if word and _unspaced(word[0]) else word


_QUANTITY = re.compile(r"[^\w\s]{0,2}\d(?:[\d.,]*\d)?(?:[^\W\d_]{1,3})?%?")
"""A number with an optional currency sign before it and a short unit glued after it ('$6.4',
'12%', '5kg'); '10-Q' and 'R-24A' are codes."""


def _quantity(word: str) -> bool:
    return bool(_QUANTITY.fullmatch(_strip(word)))


class UnitWords:
    """Words that follow numbers often in a corpus: its units and counted nouns.

    A word is a unit when it follows a number at least `min_count` times and at least
    `min_share` of all its occurrences do: 'runs' after '9,000' is a unit, 'in' after '12%' is
    not, because 'in' mostly follows other words.
    """

    def __init__(self, min_count: int = 2, min_share: float = 0.25) -> None:
        self.after_number: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self.texts_with: Counter[str] = Counter()
        self.texts = 0
        self.min_count = min_count
        self.min_share = min_share

    def add(self, texts: Iterable[str]) -> UnitWords:
        for text in texts:
            previous_is_number = False
            words = words_of(text)
            self.texts += 1
            self.texts_with.update({_strip(word).lower() for word in words})
            for word in words:
                key = _unit_key(word)
                if not key:
                    continue
                number = _quantity(word)
                if not number and letter_count(key):
                    self.seen[key] += 1
                    if previous_is_number:
                        self.after_number[key] += 1
                previous_is_number = number
        return self

    def common(self, span: str, share: float = COMMON_SHARE) -> bool:
        """Whether every word of `span` is in more than `share` of the texts: the company's
        or product's own name, which answers nothing in particular."""
        words = [_strip(word).lower() for word in words_of(span)]
        return self.texts > 0 and all(self.texts_with[w] > share * self.texts for w in words)

    def __contains__(self, word: str) -> bool:
        key = _unit_key(word)
        count = self.after_number[key]
        return count >= self.min_count and count >= self.min_share * self.seen[key]


def _number_span(words: list[str], units: UnitWords) -> str | None:
    for position, word in enumerate(words):
        if not _quantity(word):
            continue
        core = _strip(word)
        following = words[position + 1] if position + 1 < len(words) else ""
        if re.fullmatch(r"\d{1,2}", core) and _quantity(following):
            continue  # a day before a year: the date span starts at the year
        if following and following in units and word == core:
            unit = _strip(following)
            if _unspaced(unit[0]):
                return f"{core}{unit[0]}"
            return f"{core} {unit}"
        if sum(char.isdigit() for char in core) >= 2 or not core[-1].isdigit():
            return core  # '2025', '12%', '$6'; a lone '4' says too little to ask about
    return None


def _code(word: str) -> bool:
    core = _strip(word)
    letters = letter_count(core)
    if letters == 0 or len(core) < 2:
        return False
    upper = sum(char.isupper() for char in core)
    if _has_digit(core):
        return upper >= 1 or letters >= 2  # 'R-24A', 'mx30'; not the '4.x' of a version
    return upper >= 3 and upper == letters  # 'AAPL', 'NASA'; not 'The' or 'IT'


def _code_span(words: list[str]) -> str | None:
    return next((_strip(word) for word in words if _code(word)), None)


def _name_span(words: list[str]) -> str | None:
    run: list[str] = []
    for position, word in enumerate(words):
        core = _strip(word)
        capitalized = bool(core) and core[0].isupper() and not _code(core)
        if capitalized and position > 0:
            run.append(core)
            if word != core and word[-1] in ",;:.":  # punctuation ends a name
                break
            continue
        if run:
            break
    return " ".join(run[:MAX_NAME_WORDS]) if run else None


def _clause_span(sentence: str, words: list[str]) -> str | None:
    """The sentence's last clause (after its last comma or semicolon), or its last half."""
    body = sentence.rstrip(_EDGE_PUNCTUATION + " ")
    for mark in (";", "\uff1b", ",", "\uff0c", "、"):
        if mark in body:
            tail = body.rsplit(mark, 1)[1].split()
            if MIN_CLAUSE_WORDS <= len(tail) <= MAX_CLAUSE_WORDS:
                return " ".join(tail)
    if len(words) >= 2 * MIN_CLAUSE_WORDS:
        tail = body.split()[-min(MAX_CLAUSE_WORDS, len(words) // 2) :]
        return " ".join(tail)
    if body and all(_unspaced(char) or not char.isalpha() for char in body[-6:]):
        # Unspaced text: the second half of the sentence, in characters.
        return body[len(body) // 2 :].strip() or None
    return None


def answer_span(sentence: str, units: UnitWords) -> Span | None:
    """The best answer in `sentence` to ask a question about, or None."""
    words = words_of(sentence)
    if not words:
        return None
    number = _number_span(words, units)
    if number:
        return Span(number, NUMBER)
    code = _code_span(words)
    if code and not units.common(code):
        return Span(code, CODE)
    quoted = _QUOTED.search(sentence)
    if quoted and quoted.group(1).strip():
        return Span(quoted.group(1).strip(), QUOTED)
    name = _name_span(words)
    if name and not units.common(name):
        return Span(name, NAME)
    clause = _clause_span(sentence, words)
    return Span(clause, CLAUSE) if clause else None

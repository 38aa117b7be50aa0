"""The text units that answers and chunks are compared by, in any language and with no word
list: tokens, words and facts (tokens holding a digit), scripts written without spaces (compared
as character bigrams) and sentence ends of every script. Shared by attribution, keyword search,
answer matching, chunking and synthesis. Text handling is linear-time: no pattern here can
backtrack.
"""

from __future__ import annotations

import re

# Scripts written without spaces between words (Unicode blocks, no word lists): Han (with its
# extensions, compatibility ideographs, iteration mark and zero), Hiragana, Katakana (full and
# half width), Hangul and Thai. Their runs are compared by overlapping character bigrams.
UNSPACED_CHARS = (
    "\u0e00-\u0e7f"  # Thai
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3005\u3007"  # ideographic iteration mark, ideographic zero
    "\u3041-\u309f"  # Hiragana
    "\u30a1-\u30fa\u30fc-\u30ff"  # Katakana (without the middle dot, which is punctuation)
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # Han extension A
    "\u4e00-\u9fff"  # Han
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # Han compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # Han extensions B to H
)
"""A regular-expression character class body (without the brackets) of those scripts."""
UNSPACED = re.compile(f"[{UNSPACED_CHARS}]")
"""One character of those scripts."""
_SCRIPT_RUN = re.compile(f"[{UNSPACED_CHARS}]+|[^{UNSPACED_CHARS}]+")
# Sentence ends: Latin-style stops need the space after them; CJK stops (full and half width)
# and the Devanagari and Arabic ones end a sentence by themselves, and so does a Latin stop
# right after a character of an unspaced script ('多少?答'); a line break always does.
# ideographic . ! ? and the half-width ideographic ., Devanagari danda, Arabic ?
OTHER_STOPS = "\u3002\uff01\uff1f\uff61\u0964\u061f"
_CLOSING_QUOTES = "\"'\u201d\u2019)\\]"
_CJK_CLOSING = "\u300d\u300f\uff09\uff63"  # closing corner brackets, full-width parenthesis
_LATIN_END = re.compile(f"[.!?]+[{_CLOSING_QUOTES}]*[ \t]+")
# The stop classes share no character with the quote classes, so no match backtracks; the
# one-character lookbehind starts a Latin run only at its first stop.
SCRIPT_SENTENCE_END = (
    f"(?:[{OTHER_STOPS}]+|(?<=[{UNSPACED_CHARS}])[.!?]+)[{_CLOSING_QUOTES}{_CJK_CLOSING}]*[ \t]*"
)
"""A regular expression for a stop that ends a sentence without a space after it, with the
closing quotes and blanks that follow it (for `re.split` and for the chunker's separators)."""
_SCRIPT_END = re.compile(SCRIPT_SENTENCE_END)
_LINE_BREAK = re.compile(r"\n[\n \t]*")
# A token: a run of an unspaced script, or word characters joined by -./,: when a word
# character follows ("R-24A", "9,000", "2024-03-01", "v2.1"); each separator must be followed
# by a word character, so matching is linear. The script split keeps "12000" a fact of
# "转速为12000" ("speed is 12000"), not part of one token with the CJK word.
_TOKEN = re.compile(
    f"[{UNSPACED_CHARS}]+|[^\\W{UNSPACED_CHARS}]+(?:[-./,:][^\\W{UNSPACED_CHARS}]+)*"
)
_DIGIT = re.compile(r"\d")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PART = re.compile(r"[-./,:]")
# A fact's parts: "R-24A" holds "24a", "2024-03-01" holds "2024"; a decimal point does not
# split ("2.5" does not hold "5").
_FACT_PART = re.compile(r"[-/:]")


def is_table_row(line: str) -> bool:
    """A line of a Markdown table ('| P1 | 30 minutes |')."""
    return line.lstrip().startswith("|")


def is_table_separator(line: str) -> bool:
    """The line under a Markdown table's header row ('| --- | :-: |')."""
    stripped = line.strip()
    return stripped.startswith("|") and "---" in stripped and not stripped.strip("|-: ")


def split_unspaced(token: str) -> list[str]:
    """A token as is, or with each run of an unspaced script cut into character bigrams."""
    if not UNSPACED.search(token):
        return [token]
    pieces: list[str] = []
    for run in _SCRIPT_RUN.findall(token):
        if not UNSPACED.match(run) or len(run) == 1:
            pieces.append(run)
        else:
            pieces.extend(run[i : i + 2] for i in range(len(run) - 1))
    return pieces


def normalize_fact(token: str) -> str:
    """A fact token compared across texts: lower case, thousands separators removed."""
    return _THOUSANDS.sub("", token.casefold())


def _tokens(text: str) -> list[str]:
    return [t.casefold() for t in _TOKEN.findall(text)]


def words_of(text: str) -> set[str]:
    """The text's words (tokens without digits), lower case; unspaced scripts as bigrams."""
    words: set[str] = set()
    for token in _tokens(text):
        if not _DIGIT.search(token):
            for part in _PART.split(token):
                words.update(split_unspaced(part))
    words.discard("")
    return words


def facts_of(text: str) -> set[str]:
    """The text's fact tokens (holding a digit), normalized."""
    return {normalize_fact(t) for t in _TOKEN.findall(text) if _DIGIT.search(t)}


def fact_forms(text: str) -> set[str]:
    """Every form under which a chunk holds a fact: whole tokens and their parts."""
    forms = set()
    for fact in facts_of(text):
        forms.add(fact)
        forms.update(p for p in _FACT_PART.split(fact) if p)
        forms.add(_FACT_PART.sub("", fact))
    return forms


def script_sentence_ends(text: str) -> list[int]:
    """Offsets right after each stop that ends a sentence without a space (see
    `SCRIPT_SENTENCE_END`): '第一句。第二句。' -> [4, 8]."""
    return [match.end() for match in _SCRIPT_END.finditer(text)]


def _soft_wrap(text: str, match: re.Match) -> bool:
    """A single line break inside a sentence, as a PDF or a hard-wrapped paragraph has them: the
    next line goes on in lower case ('for 12\nhours'), or an unspaced script goes on across it."""
    if match.group().count("\n") > 1 or match.end() >= len(text) or match.start() == 0:
        return False
    after = text[match.end()]
    if after.islower():
        return True
    if not UNSPACED.match(after):
        return False
    before = match.start() - 1  # blanks before a line break belong to that line alone
    while before > 0 and text[before] in " \t":
        before -= 1
    return bool(UNSPACED.match(text[before]))


def sentence_ends(text: str) -> list[int]:
    """Offsets where a sentence ends; a Latin stop needs a next sentence that does not start in
    lower case ('e.g. the' stays whole), and so does a line break (see `_soft_wrap`)."""
    ends = {match.end() for match in _SCRIPT_END.finditer(text)}
    for match in _LINE_BREAK.finditer(text):
        if not _soft_wrap(text, match):
            ends.add(match.end())
    for match in _LATIN_END.finditer(text):
        after = text[match.end() : match.end() + 1]
        before = text[max(0, match.start() - 1) : match.start()]
        if after and not after.islower() and not (before.isdigit() and after.isdigit()):
            ends.add(match.end())
    return sorted(ends)

"""Word and sentence helpers shared by the synthesis modules: content tokens, Jaccard similarity,
a fast finder of similar token sets, and a sentence splitter for chunk text.

Scripts written without spaces between words (Chinese, Japanese, ...) are handled by Unicode
block, with no word list: their runs become overlapping character bigrams, and their stops end
a sentence without a space (the definitions are shared with `retrieval.attribution`)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from retrieval.text_units import UNSPACED, UNSPACED_CHARS, script_sentence_ends, split_unspaced


def letter_count(text: str) -> int:
    """Letters of any script in `text` (Unicode category L*), digits and signs not counted."""
    return sum(unicodedata.category(char).startswith("L") for char in text)


def word_set(words: str) -> frozenset[str]:
    """The whitespace-separated words of `words`, as a set."""
    return frozenset(words.split())


STOPWORDS = word_set(
    """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each else
    few for from further had has have having he her here hers him his how i if in into is it
    its itself just me more most my no nor not of off on once only or other our ours out over
    own per s same she should so some such than that the their theirs them then there these
    they this those through to too under until up upon very was we were what when where which
    while who whom whose why will with would you your yours"""
)
# Words that frame a question but say nothing about its topic: two questions that differ only
# in these ask the same thing.
QUESTION_WORDS = word_set(
    "many much long often mean means called say says cover covers must may might shall"
)

# Words, numbers and identifiers; '15,000', '0.3', 'MX-30' and 'e-mail' stay one token. A run
# of an unspaced script is a token of its own ('MX-30型' is 'mx-30' and '型'), cut into bigrams.
_TOKEN = re.compile(
    f"[{UNSPACED_CHARS}]+|[^\\W_{UNSPACED_CHARS}]+(?:[-.,/][^\\W_{UNSPACED_CHARS}]+)*"
)
# A word for counting: one character of an unspaced script, or a run of other non-blanks.
_COUNTED_WORD = re.compile(f"[{UNSPACED_CHARS}]|[^\\s{UNSPACED_CHARS}]+")


def tokens(text: str) -> list[str]:
    """Lowercased word, number and identifier tokens of `text`, in order; a run of an unspaced
    script gives its overlapping character bigrams ('最大转速' -> '最大', '大转', '转速'), a
    single character itself."""
    found: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if UNSPACED.match(token):
            found.extend(split_unspaced(token))
        else:
            found.append(token)
    return found


def word_count(text: str) -> int:
    """Whitespace-separated words of `text`, each character of an unspaced script counting as
    one word ('最大转速是多少' with its question mark is 8)."""
    return len(_COUNTED_WORD.findall(text))


def token_text(text: str) -> str:
    """`tokens` of `text` joined by single spaces: texts compared whatever their case, spacing
    and punctuation ('a | b' of a table row holds the cells 'a', 'b')."""
    return " ".join(tokens(text))


def content_tokens(text: str) -> list[str]:
    """`tokens` without stopwords (numbers are kept)."""
    return [token for token in tokens(text) if token not in STOPWORDS]


def topic_tokens(text: str) -> frozenset[str]:
    """The set of content tokens that tell two questions apart: stopwords and question-framing
    words removed."""
    return frozenset(token for token in content_tokens(text) if token not in QUESTION_WORDS)


def jaccard(first: frozenset[str] | set[str], second: frozenset[str] | set[str]) -> float:
    """|A & B| / |A | B|; 1.0 for two empty sets."""
    if not first and not second:
        return 1.0
    return len(first & second) / len(first | second)


def similar_pairs(sets: Sequence[frozenset[str]], threshold: float) -> list[tuple[int, int]]:
    """Every (i, j), i < j, with jaccard(sets[i], sets[j]) >= threshold, without comparing all
    pairs.

    Prefix filtering: order each set's tokens rarest first; two sets reach the threshold only if
    their prefixes of |S| - ceil(threshold * |S|) + 1 tokens share a token, so only sets that
    share a prefix token are compared.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold = {threshold}: must be in (0, 1]")
    frequency = Counter(token for tokens_ in sets for token in tokens_)
    by_token: dict[str, list[int]] = defaultdict(list)
    found = []
    for index, tokens_ in enumerate(sets):
        ordered = sorted(tokens_, key=lambda token: (frequency[token], token))
        # Exact integer arithmetic for the prefix length (floats would miss some borderline sets).
        keep = len(ordered) - _ceil_fraction(len(ordered), threshold) + 1
        candidates = set()
        for token in ordered[: max(keep, 1)]:
            candidates.update(by_token[token])
            by_token[token].append(index)
        found.extend(
            (other, index)
            for other in sorted(candidates)
            if jaccard(sets[other], tokens_) >= threshold
        )
    if any(not tokens_ for tokens_ in sets):
        empty = [index for index, tokens_ in enumerate(sets) if not tokens_]
        found.extend((a, b) for position, a in enumerate(empty) for b in empty[position + 1 :])
    return sorted(set(found))


def _ceil_fraction(size: int, threshold: float) -> int:
    product = size * threshold
    rounded = round(product)
    return rounded if abs(product - rounded) < 1e-9 else int(product) + 1


_MARKUP = (
    # [text](url) -> text. Neither part may hold its own opening bracket: a match then starts
    # only at the last '[' (or '(') before its text, and a run of '[' costs linear time.
    (re.compile(r"!?\[([^\[\]]*)\]\([^()]*\)"), r"\1"),
    (re.compile(r"(\*\*|__|`)"), ""),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # *emphasis*
    (re.compile(r"^#{1,6}\s+", re.MULTILINE), ""),
)
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
# 'Warranty: 2 years', and with a full-width colon (U+FF1A), which needs no blank after it.
_KEY_VALUE_LINE = re.compile(
    f"^[A-Z{UNSPACED_CHARS}][^:.!?\uff1a\u3002\uff01\uff1f]{{0,48}}(?::\\s+|\uff1a\\s*)\\S"
)
_BLANK = re.compile(r"\s")
_SENTENCE_BREAK = re.compile('(?<=[.!?])["\'\u201d\u2019)]?\\s+(?=["\u201c(]?[A-Z0-9])')
_ABBREVIATIONS = word_set(
    "e.g i.e etc approx no nr vs dr mr mrs ms prof fig figs ca incl al st resp cf ref vol"
)


def _is_heading_line(line: str, following: str) -> bool:
    """A short line without closing punctuation followed by a capitalized line is a heading,
    not the first half of a wrapped sentence (wrapped lines run to the full width). Unspaced
    scripts have no capitals: a line of under 25 characters (CJK characters are two columns
    wide) followed by one of theirs counts too."""
    if len(line) >= 50 or line.endswith(
        (".", ",", ";", "!", "\u3002", "\uff0c", "\uff1b", "\u3001", "\uff01")
    ):
        return False
    return following[:1].isupper() or (len(line) < 25 and bool(UNSPACED.match(following)))


def strip_markup(text: str) -> str:
    """`text` without Markdown emphasis, links and heading marks."""
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text


def is_table_row(line: str) -> bool:
    """A Markdown row ('| a | b |') or a row as the docx and html loaders write it ('a | b')."""
    return bool(_TABLE_ROW.match(line)) or " | " in line


def table_cells(line: str) -> list[str]:
    """The cells of a table row, stripped."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def is_table_separator(line: str) -> bool:
    """True for a Markdown header separator such as '| --- | :---: |'."""
    cells = table_cells(line)
    return is_table_row(line) and all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells)


def split_sentences(text: str) -> list[str]:
    """Sentences of one run of prose; a break after an abbreviation or an initial is undone.

    A stop of a script written without spaces ('。' and the full-width ! and ?, or a '?' right
    after a CJK character) ends a sentence by itself (see
    `retrieval.text_units.script_sentence_ends`); a Latin stop needs a blank and a capital, digit
    or quote after it.
    """
    text = text.strip()
    ends = [end for end in script_sentence_ends(text) if end < len(text)]
    sentences: list[str] = []
    for start, end in zip([0, *ends], [*ends, len(text)]):
        sentences.extend(_split_latin(text[start:end]))
    return sentences


def _split_latin(text: str) -> list[str]:
    text = text.strip()
    if not _BLANK.search(text):  # a Latin break needs a blank: one CJK sentence has none
        return [text] if text else []
    pieces = _SENTENCE_BREAK.split(text)
    # Each sentence as its list of pieces, joined once at the end: appending to a growing
    # string would copy it at every undone break (quadratic on 'A. A. A. ...').
    sentences: list[list[str]] = []
    for piece in pieces:
        if sentences:
            last_word = sentences[-1][-1].rsplit(None, 1)[-1].rstrip(".").lower()
            if last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", last_word):
                sentences[-1].append(piece)
                continue
        sentences.append([piece])
    joined = (" ".join(parts).strip() for parts in sentences)
    return [sentence for sentence in joined if sentence]


@dataclass(frozen=True)
class Unit:
    """A piece of chunk text that a question can be written from.

    Attributes:
        text: The row, line or sentence.
        kind: 'row' (a table row), 'line' (a whole line of its own, such as 'Warranty: 2 years')
            or 'sentence' (one of several sentences of a paragraph).
    """

    text: str
    kind: str


def text_units(text: str) -> list[Unit]:
    """Cut chunk text into units: table rows, lines that stand alone, and the sentences of prose
    (list items included).

    Lines wrapped inside a paragraph are joined first, so a sentence broken over two lines of a
    plain-text file comes back whole.
    """
    logical: list[str] = []
    for paragraph in re.split(r"\n\s*\n", strip_markup(text)):
        current: list[str] = []
        for raw in paragraph.splitlines():
            line = raw.strip()
            if not line or re.fullmatch(r"[-=_*~]{3,}", line):
                continue
            starts_unit = (
                is_table_row(line) or _LIST_ITEM.match(line) or _KEY_VALUE_LINE.match(line)
            )
            previous_closed = bool(current) and (
                is_table_row(current[-1])
                or current[-1].endswith(("?", ":", "\uff1f", "\uff1a"))  # and full width
                or _is_heading_line(current[-1], line)
            )
            if current and (starts_unit or previous_closed):
                logical.append(" ".join(current))
                current = []
            current.append(_LIST_ITEM.sub("", line) if _LIST_ITEM.match(line) else line)
        if current:
            logical.append(" ".join(current))
    units: list[Unit] = []
    for line in logical:
        if is_table_row(line):
            units.append(Unit(line, "row"))
            continue
        sentences = split_sentences(line)
        kind = "line" if len(sentences) == 1 else "sentence"
        units.extend(Unit(sentence, kind) for sentence in sentences)
    return units

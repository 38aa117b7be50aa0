"""Verified attribution: each claim of an answer is checked against the chunks the model was shown,
and its citation is the chunk that supports it, whatever marker the model wrote.

A claim is a sentence of the answer (`retrieval.text_units.sentence_ends`: stops of any script,
and line breaks other than a soft wrap inside a sentence). A chunk supports a claim when

- every fact of the claim (a token holding a digit: number, date, code, identifier; thousands
  separators removed, so "9,000" = "9000") occurs in the chunk, and
- the claim's words that the chunk holds carry at least `threshold` of the claim's word weight,
  each word weighted by its inverse document frequency in the corpus: words found in most
  chunks ("the", "der", "de") weigh little in any language, with no word list. A word is held
  when the chunk has it or a form that differs only in a short ending ("rotor", "rotors").

Of several supporting chunks the model's own marker is kept when it is one of them; otherwise
the chunk with the most support is cited, and the embedding model, when given, breaks ties.
Text handling is linear-time: no pattern here can backtrack.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise

import numpy as np

from retrieval.text_units import (
    OTHER_STOPS,
    UNSPACED,
    UNSPACED_CHARS,
    fact_forms,
    facts_of,
    is_table_row,
    is_table_separator,
    sentence_ends,
    words_of,
)

DEFAULT_SUPPORT_THRESHOLD = 0.5
"""Share of a claim's word weight that one chunk must hold (with every fact) to support it."""
TIE_MARGIN = 0.05
"""Chunks whose support is within this of the best one count as tied."""

# (?<![ \t]) starts a match only at the first blank of a run, so a long run of blanks that no
# marker follows is scanned once, not once per blank.
_MARKER_GROUP = re.compile(r"(?<![ \t])[ \t]*\[(\s*\d{1,4}(?:\s*,\s*\d{1,4}){0,15}\s*)\]")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\s*\d{1,4}(?:\s*,\s*\d{1,4}){0,15}\s*\])+")
# Prompt markup a model may copy from its prompt: <document id="2" ...>, </document>, <documents>.
_PROMPT_MARKUP = re.compile(r"</?documents?\b[^<>\n]{0,400}>?", re.IGNORECASE)
_SPACES = re.compile(r"(?<![ \t])[ \t]{2,}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"(?<!\s)\s+([.,;:!?])")
_HEADING = re.compile(r"#{1,6}\s")
_UNSPACED_WRAP = re.compile(f"(?<=[{UNSPACED_CHARS}])\n[ \t]*(?=[{UNSPACED_CHARS}])")
_CLOSING_PUNCTUATION = ".!?" + OTHER_STOPS
_QUESTION_MARKS = ("?", "\uff1f", "\u061f")  # Latin, full-width (CJK), Arabic
_CLOSING_QUOTES_OF_A_QUESTION = "\"'\u201d\u2019)\u300d\u300f\uff09 "


@dataclass
class Claim:
    """One sentence of an answer and what supports it."""

    text: str
    """The sentence without citation markers."""
    cited: list[int] = field(default_factory=list)
    """The shown chunks (numbered from 1) that support it: the verified citation."""
    model_cited: list[int] = field(default_factory=list)
    """The valid markers the model wrote on this sentence."""
    supported: bool | None = None
    """True or False once checked; None for a sentence with nothing to check ('Yes.')."""
    support: float = 0.0
    """The best chunk's share of the claim's word weight (facts must all be present too)."""
    missing_facts: list[str] = field(default_factory=list)
    """Facts of the claim that no shown chunk holds."""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["support"] = round(self.support, 3)
        return data


@dataclass
class TermStatistics:
    """Document frequencies of words over a corpus of chunks, for inverse-frequency weights."""

    documents: int
    frequencies: Counter

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TermStatistics:
        frequencies: Counter = Counter()
        count = 0
        for text in texts:
            count += 1
            frequencies.update(words_of(text))
        return cls(count, frequencies)

    def weight(self, word: str) -> float:
        """log(1 + N / df): a word in every chunk weighs log 2, an unseen one log(1 + N)."""
        return math.log(1 + self.documents / max(self.frequencies.get(word, 0), 0.5))


def strip_prompt_markup(text: str) -> tuple[str, int]:
    """Remove <document ...> / </documents> tags copied from the prompt; return the count."""
    found = _PROMPT_MARKUP.findall(text)
    if not found:
        return text, 0
    return _SPACES.sub(" ", _PROMPT_MARKUP.sub(" ", text)).strip(), len(found)


def _markers(text: str) -> list[int]:
    numbers: list[int] = []
    for group in _MARKER_GROUP.findall(text):
        for part in group.split(","):
            if int(part) not in numbers:
                numbers.append(int(part))
    return numbers


def split_claims(text: str, verdict: bool = False) -> list[tuple[str, list[int]]]:
    """The answer's sentences, each as (text without markers, the markers written on it).

    Markers right after a sentence end ('... 10 years. [3]') belong to that sentence. With
    `verdict`, a one-word verdict that opens an answer ('Yes, the rotor ...', see `answer_lead`)
    is a claim of its own, with nothing to check, so that it does not count against the
    sentence it opens.
    """
    pieces, start = [], 0
    lead = answer_lead(text) if verdict else ""
    if lead and lead[-1] not in _CLOSING_PUNCTUATION:  # a stop already ends a sentence
        start = text.index(lead) + len(lead)
        pieces.append(text[:start])
    for end in [*sentence_ends(text), len(text)]:
        if end > start:
            pieces.append(text[start:end])
            start = end
    claims: list[tuple[str, list[int]]] = []
    empty = "".join(_CLOSING_PUNCTUATION) + " ,;:"
    for piece in pieces:
        # The patterns run only where they can match: an answer of half a million short
        # sentences (CJK stops need no space) spent most of its time in them.
        markers: list[int] = []
        if "[" in piece:
            leading = _LEADING_MARKERS.match(piece)
            if leading and claims:
                found = _markers(leading.group())
                claims[-1][1].extend(n for n in found if n not in claims[-1][1])
                piece = piece[leading.end() :]
            markers = _markers(piece)
            piece = _MARKER_GROUP.sub("", piece)
        if "\n" in piece:
            piece = _UNSPACED_WRAP.sub("", piece)
        sentence = " ".join(piece.split())
        if " " in sentence:
            sentence = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", sentence)
        if sentence.strip(empty):
            claims.append((sentence, markers))
        elif claims:
            claims[-1][1].extend(n for n in markers if n not in claims[-1][1])
    return claims


def with_markers(sentence: str, numbers: Sequence[int]) -> str:
    """`sentence` with its markers before the closing stop: 'Two years [2].'"""
    text = sentence.strip()
    if not numbers:
        return text
    marks = "".join(f"[{n}]" for n in numbers)
    if text and text[-1] in _CLOSING_PUNCTUATION:
        return f"{text[:-1].rstrip()} {marks}{text[-1]}"
    return f"{text} {marks}"


MIN_STEM = 4
"""Words match when equal, or when one is a prefix of the other at least this long and at most
`MAX_ENDING` characters shorter ('rotor' ~ 'rotors', 'Rotor' ~ 'Rotoren' is too far)."""
MAX_ENDING = 3


def _prefixes(word: str) -> set[str]:
    return {word[:n] for n in range(max(MIN_STEM, len(word) - MAX_ENDING), len(word))}


@dataclass
class _ChunkView:
    words: set[str]
    facts: set[str]
    prefixes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for word in self.words:
            self.prefixes |= _prefixes(word)

    def holds(self, word: str) -> bool:
        return word in self.words or word in self.prefixes or bool(_prefixes(word) & self.words)


def _support(weights: dict[str, float], view: _ChunkView) -> float:
    total = sum(weights.values())
    if total == 0:
        return 0.0
    return sum(weight for word, weight in weights.items() if view.holds(word)) / total


def verify_claims(
    claims: Sequence[tuple[str, list[int]]],
    chunks: Sequence[str],
    *,
    statistics: TermStatistics | None = None,
    threshold: float = DEFAULT_SUPPORT_THRESHOLD,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    skip: Callable[[str], bool] | None = None,
) -> list[Claim]:
    """Check each claim against the shown chunks and give it the citation that supports it.

    Args:
        claims: (sentence, model-written markers) pairs, from `split_claims`.
        chunks: the text of each shown chunk, numbered from 1 in this order.
        statistics: corpus document frequencies; None weighs words by their frequency among the
            shown chunks (a weaker signal, for callers without the index).
        threshold: see `DEFAULT_SUPPORT_THRESHOLD`.
        embed: normalized embeddings of texts, to break ties between equally supporting chunks.
        skip: sentences that make no claim (e.g. the refusal sentence); left unchecked.

    Returns:
        One `Claim` per input claim, in order.
    """
    stats = statistics or TermStatistics.from_texts(chunks)
    views = [_ChunkView(words_of(text), fact_forms(text)) for text in chunks]
    verified: list[Claim] = []
    ties: list[tuple[Claim, list[int]]] = []
    for sentence, markers in claims:
        model_cited = [n for n in markers if 1 <= n <= len(chunks)]
        claim = Claim(sentence, model_cited=model_cited)
        verified.append(claim)
        words, facts = words_of(sentence), facts_of(sentence)
        if (skip and skip(sentence)) or (len(words) < 2 and not facts):
            continue  # 'Yes.', 'Sure.': nothing a chunk could confirm
        weights = {w: stats.weight(w) for w in words}
        scores = [
            (_support(weights, view) if words else 1.0) if facts <= view.facts else -1.0
            for view in views
        ]
        best = max(scores, default=-1.0)
        claim.support = max(best, 0.0)
        if best < threshold:
            claim.supported = False
            closest = max(views, key=lambda v: len(facts & v.facts), default=None)
            claim.missing_facts = sorted(facts - (closest.facts if closest else set()))
            continue
        claim.supported = True
        candidates = [i + 1 for i, s in enumerate(scores) if s >= threshold]
        own = [n for n in model_cited if n in candidates]
        if own:
            claim.cited = own
            continue
        tied = [n for n in candidates if scores[n - 1] >= best - TIE_MARGIN]
        claim.cited = [tied[0]]
        if len(tied) > 1 and embed is not None:
            ties.append((claim, tied))
    if ties and embed is not None:
        _break_ties(ties, chunks, embed)
    return verified


def _break_ties(
    ties: list[tuple[Claim, list[int]]],
    chunks: Sequence[str],
    embed: Callable[[list[str]], np.ndarray],
) -> None:
    needed = sorted({n for _, tied in ties for n in tied})
    vectors = embed([claim.text for claim, _ in ties] + [chunks[n - 1] for n in needed])
    claim_vectors, chunk_vectors = vectors[: len(ties)], vectors[len(ties) :]
    row = {n: i for i, n in enumerate(needed)}
    for (claim, tied), vector in zip(ties, claim_vectors):
        similarities = [float(vector @ chunk_vectors[row[n]]) for n in tied]
        claim.cited = [tied[int(np.argmax(similarities))]]


_CLAUSE_MARKS = ",.;:!?\uff0c\u3001\u3002\uff1b\uff1a\uff01\uff1f"  # with CJK commas and stops
_LEAD = re.compile(f"\\s*([^\\s{_CLAUSE_MARKS}]+)([{_CLAUSE_MARKS}])")


def answer_lead(text: str) -> str:
    """The answer's first word with its punctuation when that word is a clause of its own and
    makes no claim a chunk could confirm ('Yes,', 'No.', 'Nein,', '是的' and a CJK comma), or the
    whole answer when it is one such word ('No'), else ''.

    The same test as `verify_claims`' unchecked sentences (fewer than two words, no fact): a
    verdict that the quote replacing an unsupported answer should not lose.
    """
    match = _LEAD.match(text)
    if match is None:
        # A bare verdict ('No', '是的') is the whole answer: the quote goes after it.
        word, mark = text.strip(), ""
        if not word or any(char.isspace() for char in word):
            return ""
    else:
        word, mark = match.group(1), match.group(2)
    if len(words_of(word)) >= 2 or facts_of(word) or "[" in word:
        return ""
    return word + mark


def render(claims: Sequence[Claim]) -> str:
    """The answer text from its claims, each with its verified markers (joined without spaces
    in scripts written without them)."""
    joiner = "" if any(UNSPACED.search(c.text) for c in claims) else " "
    return joiner.join(with_markers(c.text, c.cited) for c in claims).strip()


def cited_numbers(claims: Sequence[Claim]) -> list[int]:
    """The verified citations of an answer, in order of first use."""
    return list(dict.fromkeys(n for claim in claims for n in claim.cited))


def candidate_sentences(
    chunks: Sequence[str], headings: Iterable[str] = (), limit: int = 32
) -> list[tuple[str, int]]:
    """Sentences of the shown chunks that could answer as a quote: (sentence, chunk number).

    A quote must state something, so these are left out: a chunk's first sentence when it
    starts in lower case (chunks overlap, so the chunk was cut inside it and the fragment lacks
    its start); headings, marked up ('## Care') or among `headings` (the shown chunks' section
    titles and document titles, which docx, html and PDF outlines give as plain lines); a
    Markdown table's header row, which names columns; and questions, which ask.
    """
    titles = {_squashed(heading) for heading in headings if heading}
    found: list[tuple[str, int]] = []
    seen = set()
    for number, text in enumerate(chunks, start=1):
        header_rows = _table_header_rows(text) if "|" in text else set()
        for at, (sentence, _) in enumerate(split_claims(text)):
            if (at == 0 and sentence[:1].islower()) or _HEADING.match(sentence):
                continue
            key = _squashed(sentence)
            if (
                key in seen
                or key in titles
                or key in header_rows
                or sentence.rstrip(_CLOSING_QUOTES_OF_A_QUESTION).endswith(_QUESTION_MARKS)
                or len(words_of(sentence) | facts_of(sentence)) < 3
            ):
                continue
            seen.add(key)
            found.append((sentence, number))
    return found[:limit]


def _squashed(text: str) -> str:
    return " ".join(text.split()).casefold()


def _table_header_rows(text: str) -> set[str]:
    """The Markdown table rows of `text` that a separator row ('| --- | :-: |') follows."""
    lines = text.splitlines()
    return {
        _squashed(line)
        for line, below in pairwise(lines)
        if is_table_row(line) and is_table_separator(below)
    }

"""Answer-first questions, for a weak teacher such as the embedded 135M model: the answer is
chosen first, in a sentence of the chunk, by its form (`finetune.generators.spans`), and the
teacher only writes a question whose answer it is. A small model that cannot be trusted to pick
a fact or to quote its passage can still turn 'Sentence: ... Answer: 9,000 runs' into 'How many
runs ...?'; the filters then check that the question does not give the answer away and that
search finds its chunk again.

The target answer is the whole sentence (extractive, so every claim of it is supported by the
chunk it cites) and the chosen span is kept as the key fact (`QAPair.span`), which the held-out
evaluation questions use as their gold answer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from finetune.generators.naming import document_labels, with_document
from finetune.generators.spans import SPAN_KINDS, Span, UnitWords, answer_span
from finetune.pairs import TEACHER_PREFIX, QAPair
from finetune.sampling import take_turns
from finetune.synthesis_config import SynthesisConfig
from finetune.teacher import Messages, Teacher
from finetune.text import text_units
from retrieval.documents import Chunk

from . import Progress

MIN_SENTENCE_WORDS = 5
MAX_SENTENCE_WORDS = 60
MIN_UNSPACED_CHARS = 10
"""A sentence of unspaced script (Chinese, Japanese) counts its characters instead of words."""
SENTENCE_STOPS = ".!)\u3002\uff01\uff61"

SYSTEM = (
    "You write one question for a given answer. The sentence answers the question, the answer "
    "to the question is exactly the given answer, and the question names the document. Write "
    "the question in the language of the sentence. Reply with the question only."
)


def _request(label: str, sentence: str, answer: str) -> str:
    return f"Document: {label}\nSentence: {sentence}\nAnswer: {answer}"


# One worked example: small teachers follow a shown format far better than a described one.
_EXAMPLE = [
    {
        "role": "user",
        "content": _request(
            "pump manual",
            "Mounted on its frame, the pump carries a maximum load of 40 kg.",
            "40 kg",
        ),
    },
    {"role": "assistant", "content": "What is the maximum load of the pump on its frame?"},
]


@dataclass(frozen=True)
class Item:
    """One question to ask for: a sentence of a chunk and the answer chosen in it."""

    chunk: Chunk
    sentence: str
    span: Span
    label: str


def build_prompt(item: Item) -> Messages:
    """The chat prompt asking for a question whose answer is `item.span` in its sentence."""
    return [
        {"role": "system", "content": SYSTEM},
        *_EXAMPLE,
        {"role": "user", "content": _request(item.label, item.sentence, item.span.text)},
    ]


def _fits(sentence: str) -> bool:
    """A whole sentence of prose: it ends with a stop (a heading, a table cell or a title page
    line does not) and is neither a fragment nor a paragraph."""
    if not sentence or sentence[-1] not in SENTENCE_STOPS:
        return False
    words = len(sentence.split())
    if MIN_SENTENCE_WORDS <= words <= MAX_SENTENCE_WORDS:
        return True
    return (
        words < MIN_SENTENCE_WORDS
        and len(sentence) >= MIN_UNSPACED_CHARS
        and any(not char.isascii() and char.isalpha() for char in sentence)
    )


def chunk_items(chunk: Chunk, units: UnitWords, label: str, per_chunk: int) -> list[Item]:
    """Up to `per_chunk` items of one chunk, best answer forms first, then in text order."""
    found = []
    for position, unit in enumerate(text_units(chunk.text)):
        sentence = unit.text.strip()
        if unit.kind == "row" or sentence.endswith(("?", "\uff1f")) or not _fits(sentence):
            continue
        span = answer_span(sentence, units)
        if span is not None and span.text != sentence:
            found.append(
                (SPAN_KINDS.index(span.kind), position, Item(chunk, sentence, span, label))
            )
    return [item for *_, item in sorted(found, key=lambda entry: entry[:2])[:per_chunk]]


def spread(count: int) -> list[int]:
    """0 .. count-1 in an order whose every prefix is spread evenly over the range, the first
    and last positions (a title page, a closing note) late: 8 -> 4, 2, 6, 1, 3, 5, 7, 0."""
    order: list[int] = []
    seen: set[int] = set()
    denominator = 2
    while len(order) < count:
        for numerator in range(1, denominator, 2):
            index = numerator * count // denominator
            if index not in seen:
                seen.add(index)
                order.append(index)
        denominator *= 2
        if denominator > 4 * count:
            order.extend(index for index in range(count) if index not in seen)
            break
    return order


def choose_items(chunks: Sequence[Chunk], budget: int, per_chunk: int) -> list[Item]:
    """Up to `budget` items spread over the corpus: documents take turns; within one document
    chunks are taken spread along it (`spread`), each giving its best item before any gives
    its second, numbers and codes first.

    Deterministic: the same chunks give the same items.
    """
    units = UnitWords().add(chunk.text for chunk in chunks)
    labels = document_labels(chunks)
    by_source: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_source[chunk.source].append(chunk)
    queues: dict[str, list[Item]] = {}
    for source, own in sorted(by_source.items()):
        ordered = sorted(own, key=lambda chunk: chunk.position)
        per = [
            chunk_items(ordered[i], units, labels[source], per_chunk) for i in spread(len(ordered))
        ]
        queue = [items[rank] for rank in range(per_chunk) for items in per if rank < len(items)]
        # Numbers and codes first: the facts a question can ask about without ambiguity.
        queues[source] = sorted(queue, key=lambda item: SPAN_KINDS.index(item.span.kind))
    return take_turns(list(queues.values()))[:budget]


_LABEL = re.compile(r"^\W*(?:question|q)\s*\d*\s*[:\uff1a]\s*", re.IGNORECASE)


def parse_question(reply: str) -> str | None:
    """The question in a teacher reply: its first line holding a question mark (ASCII or
    full-width), label removed, cut after the mark; None when there is none."""
    for line in reply.strip().splitlines():
        line = _LABEL.sub("", line.strip()).strip(" *_\"'“”`")
        marks = [line.find(mark) for mark in ("?", "\uff1f") if mark in line]
        if marks:
            return line[: min(marks) + 1].strip()
    return None


def generate(
    chunks: Sequence[Chunk],
    config: SynthesisConfig,
    teacher: Teacher,
    progress: Progress | None = None,
) -> tuple[list[QAPair], int]:
    """Ask `teacher` for up to `config.teacher_budget` questions, one per chosen answer.

    Returns:
        (pairs, number of replies that held no question).
    """
    items = choose_items(chunks, config.teacher_budget(len(chunks)), config.max_pairs_per_chunk)
    pairs: list[QAPair] = []
    unparsable = 0
    step = max(1, config.teacher_batch_size)
    for start in range(0, len(items), step):
        batch = items[start : start + step]
        replies = teacher.generate([build_prompt(item) for item in batch])
        for item, (reply, *_) in zip(batch, replies):
            question = parse_question(reply)
            if question is None:
                unparsable += 1
                continue
            chunk = item.chunk
            pairs.append(
                QAPair(
                    question=with_document(question, item.label),
                    answer=item.sentence,
                    chunk_id=chunk.chunk_id,
                    source=chunk.source,
                    page=chunk.page,
                    section=chunk.section,
                    evidence=item.sentence,
                    generator=f"{TEACHER_PREFIX}{teacher.name}",
                    kind="factoid",
                    span=item.span.text,
                )
            )
        if progress:
            progress("teacher", min(start + step, len(items)), len(items))
    return pairs, unparsable

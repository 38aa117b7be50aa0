"""Cut documents into token-bounded chunks that keep their source, page, section and offsets."""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from retrieval.documents import Chunk, LoadedDocument
from retrieval.text_units import SCRIPT_SENTENCE_END, is_table_row, is_table_separator
from retrieval.titles import chunk_header

MAX_CHARS_PER_TOKEN = 16
"""A chunk never holds more than `chunk_tokens` times this many characters. Real text has 3 to 6
characters a token, but a tokenizer may count a 1 MB word without spaces as one unknown token,
and the fake test encoder counts words: without a character bound such text is one huge chunk."""
# Paragraphs first, then lines, then sentences, then words: cut at the largest boundary that fits
# (regular expressions). Sentences of scripts written without spaces end at their own stops
# (。, the full-width ! and ?, see `retrieval.text_units.SCRIPT_SENTENCE_END`), their clauses
# at full-width commas and semicolons. A run of spaces stays one piece, and text without any
# boundary is cut into pieces of MAX_CHARS_PER_TOKEN characters before single characters: the
# splitter measures every piece, so a 1 MB run cut into a million pieces took seconds. How long
# a piece is comes from the embedding tokenizer (BERT-style ones, MiniLM's included, count each
# Han character as a token).
_SEPARATORS = [
    "\n\n",
    "\n",
    SCRIPT_SENTENCE_END,
    r"\. ",
    r"\? ",
    "! ",
    "; ",
    "\uff1b+",
    ", ",
    "[\uff0c\u3001]+",
    " +",
    f"(?s:.{{{MAX_CHARS_PER_TOKEN}}})",
    "",
]


def make_splitter(
    count_tokens: Callable[[str], int], chunk_tokens: int, overlap: int
) -> RecursiveCharacterTextSplitter:
    """A recursive splitter that measures length in embedding-model tokens, and a piece of
    text as at least one token per `MAX_CHARS_PER_TOKEN` characters.

    The splitter adds up the lengths of the pieces it merges and cuts a piece over
    `chunk_tokens` at a smaller separator, down to single characters (each at least 1), so no
    chunk exceeds `chunk_tokens * MAX_CHARS_PER_TOKEN` characters.
    """

    def measure(text: str) -> int:
        at_least = -(-len(text) // MAX_CHARS_PER_TOKEN)
        if at_least >= chunk_tokens:
            return at_least  # over the budget whatever its tokens: no need to tokenize it all
        return max(count_tokens(text), at_least)

    # The splitter measures each piece up to three times, and short pieces repeat ('the ', a
    # hostile run's fixed-size pieces): those are cached, long ones (whole blocks) are not kept.
    measure_short = functools.lru_cache(maxsize=1 << 16)(measure)

    def length(text: str) -> int:
        return measure_short(text) if len(text) <= 4 * MAX_CHARS_PER_TOKEN else measure(text)

    return RecursiveCharacterTextSplitter(
        separators=_SEPARATORS,
        is_separator_regex=True,
        keep_separator="end",
        chunk_size=chunk_tokens,
        chunk_overlap=overlap,
        length_function=length,
        strip_whitespace=True,
    )


MAX_TABLE_HEADER_CHARS = 400
"""A table's header row is repeated above each chunk of its rows only up to this length (a
hostile 1 MB header would otherwise be copied into every chunk)."""


@dataclass(frozen=True)
class TableSpan:
    """A Markdown table in a block: its header lines and where the rows below them lie."""

    header: str
    body_start: int
    body_end: int


def table_spans(text: str) -> list[TableSpan]:
    """The Markdown tables of `text` (a row, a '| --- |' line, then rows), in order."""
    spans: list[TableSpan] = []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    i = 0
    while i + 1 < len(lines):
        if not (is_table_row(lines[i]) and is_table_separator(lines[i + 1])):
            i += 1
            continue
        end = i + 2
        while end < len(lines) and is_table_row(lines[end]):
            end += 1
        header = (lines[i] + lines[i + 1]).strip()
        if len(header) <= MAX_TABLE_HEADER_CHARS:
            spans.append(TableSpan(header, offsets[i + 2], offsets[end]))
        i = end
    return spans


def _table_header(spans: list[TableSpan], starts: list[int], offset: int) -> str | None:
    """The header of the table whose rows hold `offset`, if any."""
    at = bisect.bisect_right(starts, offset) - 1
    if at >= 0 and offset < spans[at].body_end:
        return spans[at].header
    return None


def chunk_id(source: str, start: int, text: str) -> str:
    """Stable id of a chunk: the same file content always gives the same ids."""
    digest = hashlib.sha256(f"{source}\0{start}\0{text}".encode()).hexdigest()
    return digest[:20]


def chunk_document(
    document: LoadedDocument, splitter: RecursiveCharacterTextSplitter
) -> list[Chunk]:
    """Split each block of `document` (chunks never straddle a page or a section).

    A chunk that starts among the rows of a Markdown table, below its header, gets that header
    as `table_header`, so a row is never read apart from the names of its columns.

    Returns:
        Chunks in reading order; `chunk.text == document.text[chunk.start:chunk.end]`.
    """
    chunks: list[Chunk] = []
    block_start = 0
    for block in document.blocks:
        cursor = 0
        spans = table_spans(block.text)
        starts = [span.body_start for span in spans]
        for piece in splitter.split_text(block.text):
            # Pieces are stripped substrings in order; overlap means the next one may start
            # before the previous one ended, but never before it started.
            found = block.text.find(piece, cursor)
            if found < 0:
                found = block.text.find(piece)
            if (
                found < 0
            ):  # the splitter changed the text: keep the piece, offsets point at its block
                found = cursor
            start = block_start + found
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(document.source, start, piece),
                    source=document.source,
                    text=piece,
                    start=start,
                    end=start + len(piece),
                    page=block.page,
                    section=block.section,
                    position=len(chunks),
                    title=document.title or None,
                    table_header=_table_header(spans, starts, found),
                )
            )
            cursor = found + 1
        block_start += len(block.text) + len(LoadedDocument.BLOCK_SEPARATOR)
    return chunks


def indexed_text(chunk: Chunk, headers: bool = True) -> str:
    """The text that is embedded and keyword-indexed.

    The section heading gives a chunk its context ("Warranty" over "Claims must be filed within
    30 days"), unless the chunk already starts with it. With `headers` (`ingest.chunk_headers`)
    the line above the chunk also names its document and page ("2023 Q1 AAPL | Item 2. Risk
    Factors | p. 14"), so a question that names the company or the year can match a chunk that
    does not.
    """
    section = chunk.section
    if section and chunk.text.lstrip("# ").startswith(section):
        section = None
    header = chunk_header(chunk.title, section, chunk.page) if headers else section
    lines = [line for line in (header, chunk.table_header, chunk.text) if line]
    return "\n".join(lines)

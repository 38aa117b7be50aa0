"""Cut documents into token-bounded chunks that keep their source, page, section and offsets."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from langchain_text_splitters import RecursiveCharacterTextSplitter

from retrieval.documents import Chunk, LoadedDocument

# Paragraphs first, then lines, then sentences, then words: cut at the largest boundary that fits.
_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


def make_splitter(
    count_tokens: Callable[[str], int], chunk_tokens: int, overlap: int
) -> RecursiveCharacterTextSplitter:
    """A recursive splitter that measures length in embedding-model tokens."""
    return RecursiveCharacterTextSplitter(
        separators=_SEPARATORS,
        keep_separator="end",
        chunk_size=chunk_tokens,
        chunk_overlap=overlap,
        length_function=count_tokens,
        strip_whitespace=True,
    )


def chunk_id(source: str, start: int, text: str) -> str:
    """Stable id of a chunk: the same file content always gives the same ids."""
    digest = hashlib.sha256(f"{source}\0{start}\0{text}".encode()).hexdigest()
    return digest[:20]


def chunk_document(
    document: LoadedDocument, splitter: RecursiveCharacterTextSplitter
) -> list[Chunk]:
    """Split each block of `document` (chunks never straddle a page or a section).

    Returns:
        Chunks in reading order; `chunk.text == document.text[chunk.start:chunk.end]`.
    """
    chunks: list[Chunk] = []
    block_start = 0
    for block in document.blocks:
        cursor = 0
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
                )
            )
            cursor = found + 1
        block_start += len(block.text) + len(LoadedDocument.BLOCK_SEPARATOR)
    return chunks


def indexed_text(chunk: Chunk) -> str:
    """The text that is embedded and keyword-indexed.

    The section heading gives a chunk its context ("Warranty" over "Claims must be filed within
    30 days"), unless the chunk already starts with it.
    """
    section = chunk.section
    if section and not chunk.text.lstrip("# ").startswith(section):
        return f"{section}\n{chunk.text}"
    return chunk.text

"""A document's title, for the header that every one of its chunks is indexed under.

A 128-token chunk from page 57 of a filing does not say which company, year or filing it
belongs to; its title does. The title is the file name made readable ('2023 Q1 AAPL.pdf' ->
'2023 Q1 AAPL', 'rotor_manual.md' -> 'rotor manual'), after the document's first heading when
its format has headings (markdown, html, docx) and the heading does not already hold the name.
PDF outlines are not headings of the whole document (their first entry is often 'PART I'), and
PDF metadata titles are often a generator's id ('0000320193-23-000064'), so neither is used.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from retrieval.documents import TextBlock

MAX_TITLE_CHARS = 200
"""Every chunk of a document carries its title: a hostile 1 MB heading is cut to this."""
_BLANKS = re.compile(r"[\s_]+")


def readable_name(source: str) -> str:
    """The file name without its folder and suffix, underscores and blank runs as one space."""
    return _BLANKS.sub(" ", PurePosixPath(source).stem).strip()


def document_title(source: str, blocks: list[TextBlock]) -> str:
    """The title of the document at `source` whose text blocks are `blocks`."""
    name = readable_name(source)
    first = blocks[0] if blocks else None
    heading = first.section if first is not None and first.page is None else None
    if heading and name.casefold() not in heading.casefold():
        return f"{heading} ({name})"[:MAX_TITLE_CHARS]
    return (heading or name)[:MAX_TITLE_CHARS]


def chunk_header(title: str | None, section: str | None, page: int | None) -> str:
    """The header line of a chunk: title, section and page, those it has, ' | '-separated."""
    parts = [title, section if section != title else None, f"p. {page}" if page else None]
    return " | ".join(part for part in parts if part)

"""Text from documents and models, made safe to show as Markdown.

A document in the corpus is untrusted, and so is an answer that quotes one: rendered as
Markdown, `![x](http://host/p.png)` loads an outside image, `[text](http://...)` and bare URLs
become links, and `<img ...>` is HTML. Every ASCII punctuation character is backslash-escaped
(CommonMark allows it for all of them), so no image, link, HTML, emphasis, heading, table, math
(`$`), emoji or icon shortcode (`:name:`) can form; the text reads as it was written.

Escapes do not stop GFM's literal autolinks (`http://...`, `www.`, `a@b.c`): the renderer finds
them in the parsed text, after escapes are gone. An invisible WORD JOINER (U+2060) inside each
of those patterns keeps them plain text. It goes after every 'www', whatever precedes it: GFM
links 'www.' after any punctuation ('_www.example.org', '(www.x.y'), not only after a space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Where GFM autolink literals start: 'scheme://', 'www.', and the '@' of an e-mail address.
_AUTOLINK = re.compile(r"(?<=\w)(?=://)|(?<=www)(?=\.)|(?=@)", re.IGNORECASE)
WORD_JOINER = "\u2060"
_ELLIPSIS = "…"


def escape_markdown(text: str) -> str:
    """Markdown that renders as exactly `text`, line breaks kept, nothing interpreted.

    Leading indentation is dropped: four spaces would open a code block, which shows the escape
    backslashes literally.
    """
    return "  \n".join(_escape_inline(line.strip()) for line in text.splitlines())


def _escape_inline(text: str) -> str:
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, text))


@dataclass(frozen=True)
class Segment:
    """A run of plain text, highlighted or not."""

    text: str
    highlighted: bool = False


def highlight_segments(text: str, passage: str, context: int = 240) -> list[Segment]:
    """Split `text` around `passage` so the passage can be shown highlighted in its context.

    Whitespace is collapsed first (as `retrieval.answer_record.best_snippet` does), and a passage
    shortened with a trailing '…' still matches.

    Args:
        text: the whole chunk.
        passage: the part of it to highlight (the citation's snippet).
        context: characters of text kept on each side of the passage.

    Returns:
        [before, passage, after] without empty parts; the text alone, shortened, when the
        passage is empty or not found.
    """
    flat = " ".join(text.split())
    wanted = " ".join(passage.split()).removesuffix(_ELLIPSIS).rstrip()
    start = flat.find(wanted) if wanted else -1
    if start < 0:
        return [Segment(_shorten_end(flat, 2 * context))] if flat else []
    end = start + len(wanted)
    segments = [
        Segment(_shorten_start(flat[:start], context)),
        Segment(wanted, highlighted=True),
        Segment(_shorten_end(flat[end:], context)),
    ]
    return [s for s in segments if s.text]


def segments_markdown(segments: list[Segment]) -> str:
    """Escaped Markdown of single-line segments, the highlighted ones on a coloured background.

    Spaces at the segments' edges are kept: they separate the highlight from its neighbours.
    """
    parts = []
    for segment in segments:
        escaped = _escape_inline(" ".join(segment.text.split("\n")))
        parts.append(f":orange-background[{escaped}]" if segment.highlighted else escaped)
    return "".join(parts)


def _shorten_end(text: str, limit: int) -> str:
    """`text` cut after at most `limit` characters, at a word boundary, marked with '…'."""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip() + " " + _ELLIPSIS


def _shorten_start(text: str, limit: int) -> str:
    """`text` keeping at most its last `limit` characters, from a word boundary, after '…'."""
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    cut = tail.split(" ", 1)[1] if " " in tail else tail
    return _ELLIPSIS + " " + cut.lstrip()

"""Markdown loader: one block per heading, the markdown source kept as written."""

from __future__ import annotations

import re

from retrieval.documents import TextBlock
from retrieval.loaders._text import BlockBuilder, decode_text

_ATX_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]+(.*))?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(?:=+|-+)[ \t]*$")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})")
_FRONT_MATTER_END = ("---", "...")


def load_markdown(data: bytes) -> list[TextBlock]:
    """Load a markdown file; ATX and setext headings start sections, code fences do not.

    Args:
        data: The file's bytes.

    Returns:
        The non-empty blocks; each starts with its heading line and has it as `section`.

    Raises:
        LoadError: The file is not text.
    """
    lines = _drop_front_matter(decode_text(data).split("\n"))
    builder = BlockBuilder()
    fence = ""  # The opening fence while inside a fenced code block, else "".
    i = 0
    while i < len(lines):
        line = lines[i]
        if fence:
            if _closes_fence(line, fence):
                fence = ""
            builder.add_line(line)
        elif match := _FENCE_OPEN.match(line):
            fence = match.group(1)
            builder.add_line(line)
        elif match := _ATX_HEADING.match(line):
            title = _strip_closing_sequence(match.group(1) or "").strip()
            builder.start_section(title, line)
        elif _is_setext_heading(line, lines[i + 1] if i + 1 < len(lines) else ""):
            builder.start_section(line.strip(), line)
            builder.add_line(lines[i + 1])
            i += 1
        else:
            builder.add_line(line)
        i += 1
    return builder.finish()


def _drop_front_matter(lines: list[str]) -> list[str]:
    """Drop a YAML front matter block ('---' on the first line, up to the closing '---')."""
    if not lines or lines[0].rstrip() != "---":
        return lines
    for end in range(1, len(lines)):
        if lines[end].rstrip() in _FRONT_MATTER_END:
            return lines[end + 1 :]
    return lines  # Never closed: a thematic break, not front matter.


def _strip_closing_sequence(title: str) -> str:
    """'Title ##' -> 'Title': a closing run of '#' goes when a blank or nothing precedes it.

    String methods, not the regex `(?:^|[ \t]+)#+[ \t]*$`, which restarts at every blank of a
    run and was quadratic in the run's length.
    """
    text = title.rstrip(" \t")
    bare = text.rstrip("#")
    if bare != text and (not bare or bare[-1] in " \t"):
        return bare
    return title


def _closes_fence(line: str, fence: str) -> bool:
    """A closing fence uses the opening character, at least as many times, and nothing else."""
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and len(stripped) >= len(fence)
        and stripped == fence[0] * len(stripped)
    )


def _is_setext_heading(line: str, next_line: str) -> bool:
    """A non-blank text line underlined by '===' or '---' is a heading."""
    return bool(
        line.strip()
        and not line.startswith("    ")
        and _SETEXT_UNDERLINE.match(next_line)
        and not _FENCE_OPEN.match(line)
    )

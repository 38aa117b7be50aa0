"""HTML loader: visible body text as lines, one block per h1-h6 heading."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag

from retrieval.documents import TextBlock
from retrieval.loaders._text import (
    BlockBuilder,
    decode_text,
    markdown_row,
    markdown_separator,
    section_title,
    squash_spaces,
)

# Page chrome and non-text elements: never part of the document's content.
_DROPPED_TAGS = {
    "head",
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "nav",
    "aside",
    "form",
    "iframe",
}
# A <header>/<footer> inside an article or section holds its title or notes, not site chrome.
_CHROME_TAGS = ("header", "footer")
_CONTENT_CONTAINERS = ("article", "main", "section")
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# Elements that end the current line when they open and when they close.
_BLOCK_TAGS = frozenset(
    [
        "address",
        "article",
        "blockquote",
        "body",
        "caption",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "header",
        "hgroup",
        "hr",
        "html",
        "legend",
        "li",
        "main",
        "ol",
        "p",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "ul",
    ]
)
# Headings and table rows are flattened by a walk of their own, which meets the headings and rows
# nested in them; beyond this depth they are walked as plain text instead, so that hostile
# nesting ('<h1>' or '<table><tr><td>' repeated) costs neither recursion nor quadratic time.
_MAX_FLATTEN_DEPTH = 8
_FLATTENED = _HEADINGS | {"tr"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


def load_html(data: bytes) -> list[TextBlock]:
    """Load an HTML page: drop scripts, styles and navigation, keep the visible text.

    Args:
        data: The file's bytes; the encoding comes from a BOM, UTF-8, the meta charset or
            detection, in that order.

    Returns:
        The non-empty blocks. Text before the first heading is under the page <title>.

    Raises:
        LoadError: The file is not text.
    """
    declared = _META_CHARSET.search(data[:2048])
    text = decode_text(data, declared.group(1).decode("ascii") if declared else None)
    soup = BeautifulSoup(text, "lxml")
    title = section_title(soup.title.get_text()) if soup.title else None
    writer = _LineWriter(BlockBuilder(section=title))
    writer.write(soup.body or soup)
    return writer.finish()


class _LineWriter:
    """Walks the tree in document order and turns its visible text into lines and sections.

    Inline text accumulates into the current line; block elements, <br>, table rows and
    headings end it. Hidden elements are skipped during the walk rather than removed first,
    which would cost one more pass over the tree per kind. The walk uses an explicit stack so
    deeply nested pages cannot hit the recursion limit.

    Args:
        builder: Receives the lines and headings.
        content_depth: How many article/main/section elements enclose the walk's root.
        flatten_depth: How many headings and table rows enclose the walk's root.
    """

    def __init__(
        self, builder: BlockBuilder, content_depth: int = 0, flatten_depth: int = 0
    ) -> None:
        self._builder = builder
        self._content_depth = content_depth
        self._flatten_depth = flatten_depth
        self._inline: list[str] = []

    def write(self, root: Tag) -> None:
        """Write everything under `root` to the builder."""
        stack: list[tuple[PageElement, bool]] = [
            (child, False) for child in reversed(root.contents)
        ]
        while stack:
            node, closing = stack.pop()
            if closing:
                self._end_line()
                if node.name in _CONTENT_CONTAINERS:
                    self._content_depth -= 1
            elif isinstance(node, NavigableString):
                # Comments, CDATA, doctypes and processing instructions are not visible text.
                if not isinstance(node, PreformattedString):
                    self._inline.append(str(node))
            elif isinstance(node, Tag) and not self._is_hidden(node):
                if self._write_whole(node):
                    continue
                if node.name in _BLOCK_TAGS:
                    self._end_line()
                    stack.append((node, True))
                    if node.name in _CONTENT_CONTAINERS:
                        self._content_depth += 1
                stack.extend((child, False) for child in reversed(node.contents))

    def finish(self) -> list[TextBlock]:
        """End the last line and return the blocks."""
        self._end_line()
        return self._builder.finish()

    def _is_hidden(self, tag: Tag) -> bool:
        """Whether `tag` is page chrome or non-text, to be skipped with all it contains."""
        if tag.name in _DROPPED_TAGS or tag.get("role") == "navigation":
            return True
        if tag.name in _CHROME_TAGS:
            return self._content_depth == 0
        # Sphinx and MkDocs put a '¶' permalink inside every heading.
        return tag.name == "a" and "headerlink" in (tag.get("class") or ())

    def _write_whole(self, tag: Tag) -> bool:
        """Write tags that are handled in one piece; return False for the others."""
        if self._flatten_depth >= _MAX_FLATTEN_DEPTH and tag.name in _FLATTENED:
            self._end_line()  # too deeply nested to flatten: its text is walked as lines
            return False
        if tag.name in _HEADINGS:
            heading = self._flatten(tag)
            if heading:
                self._end_line()
                self._builder.start_section(heading, heading)
            return True
        if tag.name == "tr":
            cells = tag.find_all(["td", "th"], recursive=False)
            texts = [self._flatten(cell) for cell in cells]
            self._end_line()
            if any(texts):
                self._builder.add_line(markdown_row(texts))
                if all(cell.name == "th" for cell in cells):  # a header row
                    self._builder.add_line(markdown_separator(len(texts)))
            return True
        if tag.name == "pre":
            self._end_line()
            for line in tag.get_text().split("\n"):
                self._builder.add_line(line.rstrip())
            return True
        if tag.name == "br":
            self._end_line()
            return True
        return False

    def _flatten(self, tag: Tag) -> str:
        """The visible text under `tag` on one line (for headings and table cells)."""
        inner = _LineWriter(BlockBuilder(), self._content_depth, self._flatten_depth + 1)
        inner.write(tag)
        return squash_spaces(" ".join(block.text for block in inner.finish()))

    def _end_line(self) -> None:
        if self._inline:
            line = squash_spaces("".join(self._inline))
            self._inline = []
            if line:
                self._builder.add_line(line)

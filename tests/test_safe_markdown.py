"""Untrusted text escaped for Markdown, and a passage split out for highlighting."""

import re

import pytest

from builder.safe_markdown import (
    WORD_JOINER,
    Segment,
    escape_markdown,
    highlight_segments,
    segments_markdown,
)

HOSTILE = [
    "![x](http://evil.example/p.png)",
    "[click](http://evil.example/)",
    "see http://evil.example/x and www.evil.example",
    "<img src=http://evil.example/x>",
    "<script>alert(1)</script>",
    "mail me: someone@evil.example",
    "$x^2$ and :smile: and :material/home: and :red[text]",
    "# heading\n    indented code\n| a | b |\n* item",
]


def unescape(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown.replace("  \n", "\n")).replace(WORD_JOINER, "")


@pytest.mark.parametrize("text", HOSTILE)
def test_every_markdown_construct_is_escaped(text):
    escaped = escape_markdown(text)
    # No punctuation is left unescaped, so no link, image, tag, math or shortcode can open.
    assert not re.search(r"[!-/:-@\[-`{-~]", re.sub(r"\\.", "", escaped))
    assert unescape(escaped) == "\n".join(line.strip() for line in text.splitlines())


@pytest.mark.parametrize(
    ("text", "kept_apart"),
    [
        ("http://evil.example/x", "http" + WORD_JOINER + "\\:\\/\\/"),
        ("HTTPS://evil.example", "HTTPS" + WORD_JOINER + "\\:"),
        ("go to www.evil.example", "www" + WORD_JOINER + "\\."),
        ("someone@evil.example", "someone" + WORD_JOINER + "\\@"),
    ],
)
def test_autolink_literals_are_broken_by_an_invisible_joiner(text, kept_apart):
    # The renderer autolinks these in the parsed text, where the escapes are already gone.
    assert kept_apart in escape_markdown(text)


def test_line_breaks_are_kept_and_indentation_dropped():
    assert escape_markdown("one\n    two\n\nthree") == "one  \ntwo  \n  \nthree"


def test_passage_is_found_in_its_context():
    text = "First sentence here.\n\nThe rotor lasts 12000 hours. Last one."
    segments = highlight_segments(text, "The rotor lasts 12000 hours.")
    assert segments == [
        Segment("First sentence here. "),
        Segment("The rotor lasts 12000 hours.", highlighted=True),
        Segment(" Last one."),
    ]


def test_shortened_snippet_still_matches_and_context_is_cut_at_words():
    text = "word " * 100 + "needle in the haystack and more " + "tail " * 100
    segments = highlight_segments(text, "needle in the hay…", context=20)
    assert segments[1] == Segment("needle in the hay", highlighted=True)
    assert segments[0].text.startswith("… ") and segments[0].text.endswith("word ")
    assert segments[2].text.endswith(" …") and len(segments[2].text) <= 23


def test_missing_passage_shows_the_text_alone():
    assert highlight_segments("Some text.", "not there") == [Segment("Some text.")]
    assert highlight_segments("", "") == []


def test_highlight_markdown_escapes_inside_and_outside():
    markdown = segments_markdown(
        [Segment("a [b] "), Segment("![x](http://e.x/p.png)", highlighted=True), Segment(" c")]
    )
    url = "http" + WORD_JOINER + r"\:\/\/e\.x\/p\.png"
    assert markdown == r"a \[b\] :orange-background[\!\[x\]\(" + url + r"\)] c"

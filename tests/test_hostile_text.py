"""Hostile documents: 1 MB strings made to trip text handling that is quadratic or worse (a
greedy run that can start at every position and then fails, a loop that copies what is left).
Every loader, the chunker, synthesis and the citation parser must get through each in seconds;
before the fixes, 20 KB of spaces took 4 s in one regular expression and 1 MB took hours."""

from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import docx
import pytest
from tiny_models import build_tokenizer

from finetune.generators.answer_first import choose_items, parse_question
from finetune.generators.spans import UnitWords, answer_span
from finetune.generators.triples import parse_triples
from finetune.number_questions import question_about_number
from finetune.question_context import chunk_context, document_name
from finetune.synthesis_config import SynthesisConfig
from finetune.synthesize import synthesize
from finetune.yes_no_questions import false_number_question, yes_no_question
from retrieval.chat_template import neutralize_special_tokens
from retrieval.chunking import MAX_CHARS_PER_TOKEN, chunk_document, make_splitter
from retrieval.documents import Chunk, LoadedDocument, LoadError, TextBlock
from retrieval.keyword_terms import terms
from retrieval.loaders import load_document
from retrieval.loaders._text import MAX_SECTION_CHARS, clean_block
from retrieval.prompt import PromptDocument, parse_citations, rag_messages
from retrieval.titles import document_title

SIZE = 1_000_000
LIMIT_S = 10.0
"""CPU seconds of this process, so other work on the machine does not count. Generous: each
call takes well under 5 s; a quadratic one takes hours."""
CHUNK_TOKENS = 128


def repeat(piece: str, size: int = SIZE) -> str:
    return (piece * (size // len(piece) + 1))[:size]


HOSTILE = {
    "spaces": "a" + repeat(" ") + "b",
    "blanks": "a" + repeat(" \t") + "b",
    "digits": repeat("1") + "x",
    "years": repeat("2020"),
    "open brackets": repeat("["),
    "nested brackets": "[" * (SIZE // 2) + "]" * (SIZE // 2),
    "nested markup": "<" * (SIZE // 2) + ">" * (SIZE // 2),
    "links": repeat("[a]("),
    "hashes": "# " + repeat("#") + " x",
    "heading and blanks": "# a" + repeat(" ") + "b",
    "long word": repeat("a"),
    "a.a.a.": repeat("a."),
    "A. A. A.": repeat("A. "),
    "1,1,1,": repeat("1,"),
    "unclosed citation": "[1" + repeat(",1"),
    "numbers with units": repeat("It takes 5 working  days and 1 % "),
    "table cell": "| a" + repeat("(") + " | b |\n| c | d |",
    "list items": repeat("- item a\n"),
    "special tokens": repeat("<|im_start|>"),
    "codes": repeat("MX-30-"),
    "dotted numbers": repeat("1.2."),
    "grouped digits": repeat("1,000,"),
}
CASES = pytest.mark.parametrize("name", list(HOSTILE))


def timed(call, *args):
    """`call(*args)`, failing the test if it takes LIMIT_S or more."""
    began = time.process_time()
    result = call(*args)
    elapsed = time.process_time() - began
    assert elapsed < LIMIT_S, f"{call.__qualname__} took {elapsed:.1f} s"
    return result


def write_files(text: str, folder: Path) -> list[Path]:
    (folder / "hostile.txt").write_text(text, encoding="utf-8")
    (folder / "hostile.md").write_text(text, encoding="utf-8")
    (folder / "hostile.html").write_text(
        f"<html><head><title>{text[:1000]}</title></head><body><h1>{text[:1000]}</h1>"
        f"<p>{text}</p></body></html>",
        encoding="utf-8",
    )
    (folder / "hostile.docx").write_bytes(docx_bytes(text[:1000], text))
    return sorted(folder.iterdir())


def docx_bytes(heading: str, text: str) -> bytes:
    """A .docx with `heading` and a paragraph of one run holding `text`, its tabs and newlines
    as <w:tab/> and <w:br/> elements (written as XML: python-docx takes minutes for 1 MB)."""
    document = docx.Document()
    document.add_heading(heading, level=1)
    document.add_paragraph("HOSTILE")
    written = io.BytesIO()
    document.save(written)
    run = "".join(
        "<w:tab/>" if part == "\t" else "<w:br/>" if part == "\n" else f"<w:t>{escape(part)}</w:t>"
        for part in re.split(r"([\t\n])", text)
        if part
    )
    out = io.BytesIO()
    with zipfile.ZipFile(written) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "word/document.xml":
                data = data.replace(b"<w:t>HOSTILE</w:t>", run.encode())
            target.writestr(item, data)
    return out.getvalue()


@CASES
def test_every_loader_reads_hostile_text_in_linear_time(name, tmp_path):
    for path in write_files(HOSTILE[name], tmp_path):
        try:
            document = timed(load_document, path, path.name, 50 * SIZE)
        except LoadError as error:  # 'no text found' is a fine answer; a crash or a hang is not
            assert "no text" in str(error), f"{path.suffix}: {error}"
            continue
        assert all(len(block.section or "") <= MAX_SECTION_CHARS for block in document.blocks), (
            path.suffix
        )


@CASES
def test_keyword_terms_of_hostile_text_take_linear_time(name):
    timed(terms, HOSTILE[name])
    timed(document_title, HOSTILE[name], [TextBlock("x", section=HOSTILE[name][:200])])


@CASES
def test_the_chunker_cuts_hostile_text_into_bounded_chunks(name):
    text = clean_block(HOSTILE[name])
    document = LoadedDocument("hostile.md", [TextBlock(text, section="S")])
    splitter = make_splitter(lambda piece: len(piece.split()), CHUNK_TOKENS, 24)
    chunks = timed(chunk_document, document, splitter)
    assert chunks or not text.strip()
    assert max((len(c.text) for c in chunks), default=0) <= CHUNK_TOKENS * MAX_CHARS_PER_TOKEN
    for chunk in chunks[:: max(1, len(chunks) // 50)]:
        assert document.text[chunk.start : chunk.end] == chunk.text


@CASES
def test_synthesis_writes_from_a_hostile_chunk_in_linear_time(name):
    text = HOSTILE[name]
    chunk = Chunk("c1", "docs/MX-30 manual.md", text, 0, len(text), None, text[:200], 0)
    config = SynthesisConfig(teacher="none", roundtrip_k=0, english_rules=True)
    timed(synthesize, [chunk], config, None, None)
    timed(choose_items, [chunk], 10, 3)
    timed(answer_span, text, timed(UnitWords().add, [text]))
    context = chunk_context(chunk, timed(document_name, chunk.source, [text]))
    timed(question_about_number, text, context)
    timed(yes_no_question, text, context)
    timed(false_number_question, text, text)
    timed(parse_question, text)
    timed(parse_triples, text)


@CASES
def test_prompts_and_citations_of_hostile_text_take_linear_time(name):
    text = HOSTILE[name]
    timed(parse_citations, text, 5)
    messages = timed(rag_messages, text, [PromptDocument("a.md", text, section=text[:200])])
    tokenizer = build_tokenizer()
    for message in messages:
        plain = timed(neutralize_special_tokens, tokenizer, message["content"])
        assert "<|im_start|>" not in plain


NESTED_TAGS = {
    "headings": "<h1>" * 20_000 + "x",
    "tables": "<table><tr><td>" * 7_000 + "x",
    "headings in tables": "<h2>a<table><tr><td>b" * 5_000,
    "inline": "<b>" * 30_000 + "x",
}


@pytest.mark.parametrize("name", list(NESTED_TAGS))
def test_deeply_nested_html_loads_without_recursion(name, tmp_path):
    # 100 KB, not 1 MB: BeautifulSoup builds some 50k elements a second here (linear, but
    # 1 MB of tags is 10 to 30 s); nesting this deep once hit the recursion limit.
    path = tmp_path / "nested.html"
    path.write_text(NESTED_TAGS[name], encoding="utf-8")
    document = timed(load_document, path, path.name, SIZE)
    assert "x" in document.text or "b" in document.text


def test_a_huge_heading_is_cut_to_a_section_title(tmp_path):
    path = tmp_path / "title.md"
    path.write_text("# " + "Rotor " * 100_000 + "\n\nBody text.\n", encoding="utf-8")
    (block,) = load_document(path, path.name, SIZE).blocks
    assert block.section == ("Rotor " * 100)[:MAX_SECTION_CHARS].rstrip()

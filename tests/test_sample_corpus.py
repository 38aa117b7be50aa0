"""The bundled sample corpus: every format present, and every gold answer found in its source."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import docx
import pypdfium2 as pdfium
import pytest
from bs4 import BeautifulSoup

from builder.sample_corpus import SAMPLE_QUESTIONS_PATH, load_sample_questions, write_sample_corpus

MIN_FILES_PER_SUFFIX = {".md": 5, ".txt": 3, ".html": 3, ".pdf": 3, ".docx": 3}


def _extract(path: Path) -> str:
    """Plain text of one sample file, read the simplest way each format allows."""
    suffix = path.suffix
    if suffix in (".md", ".txt"):
        return path.read_text(encoding="utf-8")
    if suffix == ".html":
        soup = BeautifulSoup(path.read_text(encoding="utf-8"), "lxml")
        for tag in soup(["script", "style"]):
            tag.decompose()
        return soup.get_text(" ")
    if suffix == ".pdf":
        pdf = pdfium.PdfDocument(path)
        try:
            return "\n".join(page.get_textpage().get_text_range() for page in pdf)
        finally:
            pdf.close()
    if suffix == ".docx":
        document = docx.Document(str(path))
        parts = [p.text for p in document.paragraphs]
        parts += [
            cell.text for table in document.tables for row in table.rows for cell in row.cells
        ]
        return "\n".join(parts)
    raise AssertionError(f"unexpected file in the sample corpus: {path}")


def _normalize(text: str) -> str:
    """Case, unicode form and whitespace folded; a line break after a hyphen joined."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u00ad", "").replace("\ufffe", "").replace("\x02", "")
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"-\s+", "-", text).strip()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """The written corpus, keyed by path relative to the destination folder."""
    dest = tmp_path_factory.mktemp("sample")
    paths = write_sample_corpus(dest)
    return {path.relative_to(dest).as_posix(): path for path in paths}


@pytest.fixture(scope="module")
def texts(corpus) -> dict[str, str]:
    return {rel: _normalize(_extract(path)) for rel, path in corpus.items()}


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return load_sample_questions()


def test_every_format_is_present_several_times(corpus):
    counts = {suffix: 0 for suffix in MIN_FILES_PER_SUFFIX}
    for rel in corpus:
        counts[Path(rel).suffix] += 1
    short = {s: n for s, n in counts.items() if n < MIN_FILES_PER_SUFFIX[s]}
    assert not short, f"too few files per format: {short}, need {MIN_FILES_PER_SUFFIX}"
    assert 18 <= len(corpus) <= 24
    assert all(path.is_file() for path in corpus.values())


def test_layout_uses_subfolders_and_a_non_ascii_name(corpus):
    assert all("/" in rel for rel in corpus)
    assert any(not rel.isascii() for rel in corpus)


def test_corpus_stays_small(texts):
    """Small enough to chunk and embed in well under a minute on two CPU cores."""
    words = {rel: len(text.split()) for rel, text in texts.items()}
    outside = {rel: n for rel, n in words.items() if not 300 <= n <= 1200}
    assert not outside, f"documents outside 300-1,200 words: {outside}"
    assert 12_000 <= sum(words.values()) <= 18_000


def test_pdfs_have_pages_and_an_outline(corpus):
    pdfs = [path for rel, path in corpus.items() if rel.endswith(".pdf")]
    for path in pdfs:
        pdf = pdfium.PdfDocument(path)
        try:
            assert len(pdf) >= 2, f"{path.name} has a single page"
            toc = list(pdf.get_toc())
            assert toc, f"{path.name} has no outline"
            assert {item.level for item in toc} == {0, 1}
        finally:
            pdf.close()


def test_docx_use_heading_styles_and_tables(corpus):
    docxs = [path for rel, path in corpus.items() if rel.endswith(".docx")]
    for path in docxs:
        document = docx.Document(str(path))
        styles = {p.style.name for p in document.paragraphs}
        assert {"Heading 1", "Heading 2"} <= styles, f"{path.name}: {styles}"
    assert any(docx.Document(str(path)).tables for path in docxs)


def test_html_pages_carry_boilerplate_for_the_loader_to_strip(corpus):
    for rel, path in corpus.items():
        if rel.endswith(".html"):
            raw = path.read_text(encoding="utf-8")
            for tag in ("<nav", "<script", "<style", "<footer"):
                assert tag in raw, f"{rel} lacks {tag}>"


def test_questions_are_well_formed_and_cover_every_document(corpus, questions):
    assert 40 <= len(questions) <= 60
    for number, q in enumerate(questions, start=1):
        assert set(q) == {"question", "answer", "source"}, f"question {number}: keys {set(q)}"
        assert q["question"].strip() and q["answer"].strip(), f"question {number} is empty"
        assert q["source"] in corpus, f"question {number}: unknown source {q['source']!r}"
    assert len({q["question"] for q in questions}) == len(questions), "duplicate questions"
    uncovered = set(corpus) - {q["source"] for q in questions}
    assert not uncovered, f"documents without a question: {sorted(uncovered)}"


def test_every_answer_is_stated_in_its_source(texts, questions):
    missing = [q for q in questions if _normalize(q["answer"]) not in texts[q["source"]]]
    assert not missing, "answers not found in their source:\n" + "\n".join(
        f"  {q['source']}: {q['answer']!r}" for q in missing
    )


def test_every_answer_is_stated_in_no_other_document(texts, questions):
    """One document holds each answer, so a citation of the source can be checked exactly."""
    ambiguous = []
    for q in questions:
        answer = _normalize(q["answer"])
        others = [rel for rel, text in texts.items() if rel != q["source"] and answer in text]
        if others:
            ambiguous.append(f"  {q['answer']!r} ({q['source']}) also in {others}")
    assert not ambiguous, "answers found in more than one document:\n" + "\n".join(ambiguous)


def test_questions_file_is_one_json_object_per_line():
    lines = SAMPLE_QUESTIONS_PATH.read_text(encoding="utf-8").splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_writing_twice_gives_the_same_text(tmp_path, texts):
    paths = write_sample_corpus(tmp_path)
    again = {p.relative_to(tmp_path).as_posix(): _normalize(_extract(p)) for p in paths}
    assert again == texts

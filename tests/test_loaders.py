"""Tests for retrieval.loaders: every format, built in tmp_path, plus the bad inputs users hit."""

from __future__ import annotations

from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from retrieval.documents import LoadedDocument, LoadError
from retrieval.loaders import SUPPORTED_SUFFIXES, load_document

MAX_BYTES = 50 * 1024 * 1024


def _load(path: Path, max_bytes: int = MAX_BYTES) -> LoadedDocument:
    return load_document(path, path.name, max_bytes)


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _pdf_bytes(pages: list[tuple[str | None, str]]) -> bytes:
    """A PDF with one page per (outline section or None, text) pair."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for section, text in pages:
        pdf.add_page()
        if section is not None:
            pdf.start_section(section)
        for line in filter(None, text.split("\n")):
            pdf.cell(text=line)
            pdf.ln()
    return bytes(pdf.output())


# --- pdf ---------------------------------------------------------------------------------------


def test_pdf_pages_are_one_based_and_sections_follow_the_outline(tmp_path: Path) -> None:
    data = _pdf_bytes(
        [
            (None, "Cover page words"),
            ("Introduction", "Alpha    text on page two\nsecond line"),
            (None, "Still introducing"),
            ("Methods", "Beta text"),
        ]
    )
    doc = _load(_write(tmp_path / "paper.pdf", data))

    assert doc.source == "paper.pdf"
    assert [(b.page, b.section) for b in doc.blocks] == [
        (1, None),
        (2, "Introduction"),
        (3, "Introduction"),
        (4, "Methods"),
    ]
    # PDFium's \r\n becomes \n and runs of spaces collapse.
    assert doc.blocks[1].text == "Alpha text on page two\nsecond line"
    assert doc.blocks[3].text == "Beta text"


def test_pdf_nested_outline_entry_on_the_same_page_wins(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.start_section("Part I")
    pdf.start_section("Chapter 1", level=1)
    pdf.cell(text="Body")
    doc = _load(_write(tmp_path / "nested.pdf", bytes(pdf.output())))
    assert [(b.page, b.section, b.text) for b in doc.blocks] == [(1, "Chapter 1", "Body")]


def test_pdf_skips_blank_pages(tmp_path: Path) -> None:
    doc = _load(_write(tmp_path / "gap.pdf", _pdf_bytes([(None, "one"), (None, ""), (None, "3")])))
    assert [(b.page, b.text) for b in doc.blocks] == [(1, "one"), (3, "3")]


def test_pdf_without_text_layer_suggests_ocr(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 50, style="F")
    path = _write(tmp_path / "scan.pdf", bytes(pdf.output()))
    with pytest.raises(LoadError, match=r"no extractable text \(scanned PDF\? run OCR first\)"):
        _load(path)


def test_pdf_encrypted_asks_for_decryption(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.cell(text="classified")
    pdf.set_encryption(owner_password="owner", user_password="secret")
    path = _write(tmp_path / "locked.pdf", bytes(pdf.output()))
    with pytest.raises(LoadError, match=r"encrypted PDF \(password required\); decrypt it first"):
        _load(path)


def test_pdf_with_owner_password_only_still_loads(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    pdf.add_page()
    pdf.cell(text="readable by anyone")
    pdf.set_encryption(owner_password="owner")
    doc = _load(_write(tmp_path / "restricted.pdf", bytes(pdf.output())))
    assert doc.blocks[0].text == "readable by anyone"


def test_pdf_corrupt_body_after_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8)
    with pytest.raises(LoadError, match="^not a valid PDF: "):
        _load(path)


def test_pdf_without_header_is_rejected_before_pdfium(tmp_path: Path) -> None:
    path = _write(tmp_path / "notes.pdf", "just some text, saved with the wrong name")
    with pytest.raises(LoadError, match=r"^not a valid PDF: no %PDF header"):
        _load(path)


def test_pdf_truncated_file(tmp_path: Path) -> None:
    data = _pdf_bytes([(None, "whole page")])
    path = _write(tmp_path / "cut.pdf", data[: len(data) // 3])
    with pytest.raises(LoadError, match="^(not a valid PDF|no extractable text)"):
        _load(path)


# --- docx --------------------------------------------------------------------------------------


def test_docx_headings_start_sections_and_tables_stay_in_order(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_paragraph("Preface before any heading.")
    document.add_heading("Annual Report", level=0)  # The 'Title' style.
    document.add_paragraph("Revenue grew.")
    document.add_heading("Results", level=1)
    document.add_paragraph("See the table.")
    table = document.add_table(rows=2, cols=3)
    for row, values in zip(table.rows, [("Year", "Sales", "Notes"), ("2024", "10", "")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    document.add_paragraph("After the table.")
    merged = document.add_table(rows=1, cols=3)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "Wide"
    merged.cell(0, 2).text = "Narrow"
    document.add_heading("Appendix", level=2)
    document.add_paragraph("")  # Empty paragraphs vanish.
    document.add_paragraph("Extra.")
    path = tmp_path / "report.docx"
    document.save(str(path))

    doc = _load(path)

    assert [(b.section, b.text) for b in doc.blocks] == [
        (None, "Preface before any heading."),
        ("Annual Report", "Annual Report\nRevenue grew."),
        (
            "Results",
            (
                "Results\nSee the table.\n| Year | Sales | Notes |\n| --- | --- | --- |\n"
                "| 2024 | 10 |  |\nAfter the table.\n| Wide | Narrow |\n| --- | --- |"
            ),
        ),
        ("Appendix", "Appendix\nExtra."),
    ]
    assert all(block.page is None for block in doc.blocks)


def test_docx_cells_merged_down_repeat_in_each_row_and_long_merges_load(tmp_path: Path) -> None:
    document = docx.Document()
    table = document.add_table(rows=3, cols=2)
    for row, (left, right) in zip(table.rows, [("Rotor", "9000"), ("", "12000"), ("", "")]):
        row.cells[0].text, row.cells[1].text = left, right
    table.cell(0, 0).merge(table.cell(1, 0))
    # 3000 rows of one cell merged down, written as XML: python-docx's own Row.cells (and
    # merge()) recurse once per row and hit the recursion limit.
    tall = document.add_table(rows=3000, cols=1)
    tall.cell(0, 0).text = "Tall"
    rows = tall._tbl.tr_lst
    rows[0].tc_lst[0].vMerge = "restart"
    for tr in rows[1:]:
        tr.tc_lst[0].vMerge = "continue"
    path = tmp_path / "merged.docx"
    document.save(str(path))

    (block,) = _load(path).blocks
    lines = block.text.split("\n")
    assert lines[:5] == [
        "| Rotor | 9000 |",
        "| --- | --- |",
        "| Rotor | 12000 |",
        "| Tall |",
        "| --- |",
    ]
    assert lines.count("| Tall |") == 3000


def test_docx_that_is_really_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "fake.docx", "I am plain text, not a Word document.")
    with pytest.raises(LoadError, match=r"^not a valid \.docx file: not a zip archive"):
        _load(path)


def test_docx_zip_without_word_parts(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "other.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a word package")
    with pytest.raises(LoadError, match=r"^not a valid \.docx file: There is no item named"):
        _load(path)


def test_docx_old_binary_word_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)
    with pytest.raises(LoadError, match="old binary Word file; save it as .docx"):
        _load(path)


# --- html --------------------------------------------------------------------------------------

HTML_PAGE = """<!DOCTYPE html>
<html><head>
  <title>Widget Guide</title>
  <style>body { color: red; }</style>
  <script>var tracking = "SCRIPT_TEXT";</script>
</head>
<body>
  <header><a href="/">SITE_HEADER</a></header>
  <nav><ul><li>NAV_LINK</li></ul></nav>
  <div role="navigation">ROLE_NAV</div>
  <p>Welcome to the <b>widget</b> guide.</p>
  <!-- COMMENT_TEXT -->
  <article>
    <header><h1>Install<a class="headerlink" href="#install">¶</a></h1></header>
    <p>Run   the
       installer.</p>
    <ul><li>Step one<ul><li>Nested step</li></ul></li><li>Step two</li></ul>
    <div>Loose div text<span> with span</span></div>
    <h2>Options</h2>
    <table>
      <tr><th>Name</th><th>Default</th></tr>
      <tr><td>size</td><td>10</td></tr>
    </table>
    <pre>code line 1
  indented line 2</pre>
    <p>first<br>second</p>
  </article>
  <noscript>NOSCRIPT_TEXT</noscript>
  <form><label>FORM_TEXT</label></form>
  <aside>ASIDE_TEXT</aside>
  <footer>FOOTER_TEXT</footer>
  <svg><text>SVG_TEXT</text></svg>
  <template><p>TEMPLATE_TEXT</p></template>
</body></html>
"""


HIDDEN_HTML_TEXT = [
    "SCRIPT_TEXT",
    "color: red",
    "SITE_HEADER",
    "NAV_LINK",
    "ROLE_NAV",
    "COMMENT_TEXT",
    "NOSCRIPT_TEXT",
    "FORM_TEXT",
    "ASIDE_TEXT",
    "FOOTER_TEXT",
    "SVG_TEXT",
    "TEMPLATE_TEXT",
    "¶",
]


def test_html_drops_chrome_and_splits_at_headings(tmp_path: Path) -> None:
    doc = _load(_write(tmp_path / "guide.html", HTML_PAGE))

    assert [b.section for b in doc.blocks] == ["Widget Guide", "Install", "Options"]
    assert doc.blocks[0].text == "Welcome to the widget guide."
    assert doc.blocks[1].text == (
        "Install\nRun the installer.\nStep one\nNested step\nStep two\nLoose div text with span"
    )
    assert doc.blocks[2].text == (
        "Options\n| Name | Default |\n| --- | --- |\n| size | 10 |\n"
        "code line 1\n  indented line 2\nfirst\nsecond"
    )
    for hidden in HIDDEN_HTML_TEXT:
        assert hidden not in doc.text


def test_htm_messy_fragment_without_body_or_title(tmp_path: Path) -> None:
    data = "<div>Top text<p>para <i>one</p><td>stray cell</td><h3>Deep</h3>tail"
    doc = _load(_write(tmp_path / "frag.htm", data))
    assert [(b.section, b.text) for b in doc.blocks] == [
        (None, "Top text\npara one\nstray cell"),
        ("Deep", "Deep\ntail"),
    ]


def test_html_uses_meta_charset_when_not_utf8(tmp_path: Path) -> None:
    page = '<html><head><meta charset="windows-1252"></head><body><p>naïve “quotes”</p></body>'
    doc = _load(_write(tmp_path / "old.html", page.encode("cp1252")))
    assert doc.blocks[0].text == "naïve “quotes”"


def test_html_with_only_scripts_has_no_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "app.html", "<html><body><script>app()</script></body></html>")
    with pytest.raises(LoadError, match="^no text found$"):
        _load(path)


def test_deeply_nested_html_does_not_hit_recursion_limit(tmp_path: Path) -> None:
    data = "<span>" * 5000 + "deep text" + "</span>" * 5000
    doc = _load(_write(tmp_path / "deep.html", data))
    assert doc.text == "deep text"


# --- markdown ----------------------------------------------------------------------------------

MARKDOWN = """---
title: FRONT_MATTER_TITLE
tags: [a, b]
---
Intro paragraph.

# Setup

Install it:

```bash
# not a heading
pip install widget
```

~~~
## also not a heading
~~~

Usage
=====

Call `widget()`.

Details ##
----------

## Closing ###
Bye.
"""


def test_markdown_sections_skip_fences_and_front_matter(tmp_path: Path) -> None:
    doc = _load(_write(tmp_path / "readme.md", MARKDOWN))

    assert [b.section for b in doc.blocks] == [None, "Setup", "Usage", "Details ##", "Closing"]
    assert doc.blocks[0].text == "Intro paragraph."
    assert doc.blocks[1].text == (
        "# Setup\n\nInstall it:\n\n```bash\n# not a heading\npip install widget\n```\n\n"
        "~~~\n## also not a heading\n~~~"
    )
    assert doc.blocks[2].text == "Usage\n=====\n\nCall `widget()`."
    assert doc.blocks[4].text == "## Closing ###\nBye."
    assert "FRONT_MATTER_TITLE" not in doc.text


def test_markdown_without_closing_front_matter_keeps_everything(tmp_path: Path) -> None:
    doc = _load(_write(tmp_path / "notes.markdown", "---\nkeep me\n\n# Head\ntext\n"))
    assert [(b.section, b.text) for b in doc.blocks] == [
        (None, "---\nkeep me"),
        ("Head", "# Head\ntext"),
    ]


def test_markdown_unclosed_fence_swallows_later_headings(tmp_path: Path) -> None:
    doc = _load(_write(tmp_path / "open.md", "# A\n````\n# inside\n```\n# still inside\n"))
    assert [b.section for b in doc.blocks] == ["A"]


def test_unicode_file_name_loads(tmp_path: Path) -> None:
    path = _write(tmp_path / "résumé 日本.md", "# Résumé\n日本語のテキスト")
    doc = load_document(path, "docs/résumé 日本.md", MAX_BYTES)
    assert doc.source == "docs/résumé 日本.md"
    assert doc.blocks[0].section == "Résumé"
    assert "日本語のテキスト" in doc.blocks[0].text


# --- txt and encodings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("héllo wörld\r\nline two\rline three".encode(), "héllo wörld\nline two\nline three"),
        ("\ufeffbom then text".encode(), "bom then text"),
        (
            "Le café est très naïve et l'été à Paris est magnifique.".encode("latin-1"),
            "Le café est très naïve et l'été à Paris est magnifique.",
        ),
        ("café naïve".encode("latin-1"), "café naïve"),
        ("Smart “quotes” — cost €5".encode("cp1252"), "Smart “quotes” — cost €5"),
        ("utf-16 text: ünïcödé".encode("utf-16"), "utf-16 text: ünïcödé"),
        ("big endian".encode("utf-16-be").join([b"\xfe\xff", b""]), "big endian"),
        ("utf-32 text ✓".encode("utf-32"), "utf-32 text ✓"),
        ("Привет, как дела? Это тест.".encode("cp1251"), "Привет, как дела? Это тест."),
    ],
    ids=[
        "utf8-crlf",
        "utf8-bom",
        "latin1",
        "latin1-short",
        "cp1252",
        "utf16-bom",
        "utf16be-bom",
        "utf32-bom",
        "cp1251-detected",
    ],
)
def test_txt_encodings(tmp_path: Path, content: bytes, expected: str) -> None:
    doc = _load(_write(tmp_path / "note.txt", content))
    assert [(b.text, b.page, b.section) for b in doc.blocks] == [(expected, None, None)]


def test_txt_whitespace_is_normalized_and_form_feeds_split_blocks(tmp_path: Path) -> None:
    text = "  first   \n\n\n\n  indented  \n\fsecond page\t\n\f \n\f"
    doc = _load(_write(tmp_path / "pages.txt", text))
    assert [b.text for b in doc.blocks] == ["first\n\n  indented", "second page"]


def test_binary_named_txt(tmp_path: Path) -> None:
    path = _write(tmp_path / "image.txt", bytes(range(256)) * 10)
    with pytest.raises(LoadError, match=r"^binary content, not text \(wrong file extension\?\)$"):
        _load(path)


def test_binary_without_nul_bytes_fails_detection(tmp_path: Path) -> None:
    path = _write(tmp_path / "noise.txt", bytes(range(1, 256)) * 10)
    with pytest.raises(LoadError, match="^binary content"):
        _load(path)


def test_binary_named_md_and_html(tmp_path: Path) -> None:
    for name in ("image.md", "image.html"):
        path = _write(tmp_path / name, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(500))
        with pytest.raises(LoadError, match="^binary content"):
            _load(path)


def test_whitespace_only_txt_has_no_text(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="^no text found$"):
        _load(_write(tmp_path / "blank.txt", " \n\t\n  "))


# --- file-level checks -------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="^empty file$"):
        _load(_write(tmp_path / "empty.pdf", b""))


def test_oversized_file_names_the_setting(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.txt", "x" * 3 * 1024 * 1024)
    with pytest.raises(LoadError) as caught:
        _load(path, max_bytes=2 * 1024 * 1024)
    assert str(caught.value) == "file is 3.0 MB, over the 2.0 MB limit (raise ingest.max_file_mb)"


def test_oversized_small_limit_is_shown_in_bytes(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="^file is 20 bytes, over the 10 bytes limit"):
        _load(_write(tmp_path / "small.md", "a" * 20), max_bytes=10)


def test_file_exactly_at_the_limit_loads(tmp_path: Path) -> None:
    assert _load(_write(tmp_path / "exact.txt", "a" * 10), max_bytes=10).text == "a" * 10


@pytest.mark.parametrize("name", ["sheet.xlsx", "noext", "archive.tar.gz"])
def test_unsupported_suffix_lists_supported_ones(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, "data")
    with pytest.raises(LoadError, match="^unsupported file type ") as caught:
        _load(path)
    assert ".pdf, .docx, .html, .htm, .md, .markdown, .txt" in str(caught.value)


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    assert _load(_write(tmp_path / "LOUD.TXT", "shout")).text == "shout"


def test_missing_file_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="^cannot read: No such file or directory$"):
        _load(tmp_path / "gone.md")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "secret.txt", "hidden")

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("retrieval.scan.os.open", refuse)
    with pytest.raises(LoadError, match="^cannot read: Permission denied$"):
        _load(path)


def test_directory_with_a_supported_suffix(tmp_path: Path) -> None:
    (tmp_path / "folder.md").mkdir()
    with pytest.raises(LoadError, match="^cannot read: Is a directory$"):
        _load(tmp_path / "folder.md")


def test_supported_suffixes_are_public() -> None:
    assert SUPPORTED_SUFFIXES == (".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt")

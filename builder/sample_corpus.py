"""The bundled sample corpus: the documents of a fictional instrument maker, Orlenby Instruments.

The demo and the tests need a corpus whose facts no pretrained model can know, in every format the
loaders support. Everything is stored as text under `builder/sample/`:

- `corpus/` holds the md, txt and html files, copied byte for byte;
- `rendered/` holds one markdown-like source per pdf or docx file, and `manifest.json` maps each
  source to the path it is rendered to;
- `questions.jsonl` holds the gold questions, one `{"question", "answer", "source"}` object a line.

Rendered sources use a small subset of markdown: `#` is the document title, `##` a chapter,
`###` a section, `- ` a bullet, `|` a table row (the `| --- |` row is skipped, the first row is
the header), and any other run of non-blank lines is one paragraph.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "sample"
SAMPLE_QUESTIONS_PATH = SAMPLE_DIR / "questions.jsonl"
_VERBATIM_DIR = SAMPLE_DIR / "corpus"
_RENDERED_DIR = SAMPLE_DIR / "rendered"
_MANIFEST_PATH = _RENDERED_DIR / "manifest.json"

_AUTHOR = "Orlenby Instruments"
# A fixed timestamp keeps pdf and docx metadata the same from one run to the next.
_FIXED_DATE = datetime(2025, 1, 14, 9, 0, tzinfo=UTC)

# The pdf core fonts (Helvetica) only cover latin-1; these are the usual typographic characters
# outside it. Sources are kept latin-1-safe, this is the safety net for later edits.
_LATIN1_REPLACEMENTS = {
    "\u20ac": "EUR ",  # euro sign
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2026": "...",
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2022": "-",  # bullet
}


@dataclass
class _Block:
    """One element of a rendered source.

    Attributes:
        kind: "title", "chapter", "section", "paragraph", "bullets" or "table".
        text: The text for title, heading and paragraph blocks.
        items: Bullet items, or table rows as lists of cells (header row first).
    """

    kind: str
    text: str = ""
    items: list = field(default_factory=list)


def _parse_source(text: str) -> list[_Block]:
    """Split a rendered source into blocks (see the module docstring for the syntax)."""
    blocks: list[_Block] = []
    paragraph: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            blocks.append(_Block("paragraph", " ".join(paragraph)))
            paragraph.clear()

    for raw in text.splitlines():
        line = raw.strip()
        headings = (("### ", "section"), ("## ", "chapter"), ("# ", "title"))
        heading = next(((p, kind) for p, kind in headings if line.startswith(p)), None)
        if not line:
            flush_paragraph()
        elif heading:
            flush_paragraph()
            blocks.append(_Block(heading[1], line[len(heading[0]) :].strip()))
        elif line.startswith("- "):
            flush_paragraph()
            if not blocks or blocks[-1].kind != "bullets":
                blocks.append(_Block("bullets"))
            blocks[-1].items.append(line[2:].strip())
        elif line.startswith("|"):
            flush_paragraph()
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if all(set(cell) <= set("-: ") for cell in cells):
                continue  # the markdown header separator row
            if not blocks or blocks[-1].kind != "table":
                blocks.append(_Block("table"))
            blocks[-1].items.append(cells)
        else:
            paragraph.append(line)
    flush_paragraph()
    return blocks


def _title(blocks: list[_Block], source: Path) -> str:
    if not blocks or blocks[0].kind != "title":
        raise ValueError(f"{source}: a rendered source must start with a '# Title' line.")
    return blocks[0].text


def _latin1(text: str, source: Path) -> str:
    """Replace typographic characters the pdf core fonts cannot encode; fail on anything else."""
    for char, replacement in _LATIN1_REPLACEMENTS.items():
        text = text.replace(char, replacement)
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as err:
        bad = text[err.start]
        raise ValueError(
            f"{source}: character {bad!r} (U+{ord(bad):04X}) cannot be written with the pdf core "
            "fonts; use a latin-1 character or add it to _LATIN1_REPLACEMENTS."
        ) from None
    return text


def _render_pdf(blocks: list[_Block], source: Path, dest: Path) -> None:
    """Write a multi-page pdf: one page per chapter, chapters and sections in the outline."""
    from fpdf import FPDF

    title = _latin1(_title(blocks, source), source)

    class _Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("Helvetica", "I", 8)
            self.set_text_color(110)
            self.cell(0, 10, f"{title} - page {self.page_no()}", align="C")
            self.set_text_color(0)

    pdf = _Pdf(format="A4")
    pdf.set_title(title)
    pdf.set_author(_AUTHOR)
    pdf.set_creator("ragtune sample corpus")
    pdf.set_creation_date(_FIXED_DATE)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    chapters = 0
    for block in blocks:
        text = _latin1(block.text, source)
        if block.kind == "title":
            pdf.set_font("Helvetica", "B", 18)
            pdf.multi_cell(0, 9, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
        elif block.kind == "chapter":
            chapters += 1
            if chapters > 1:
                pdf.add_page()
            pdf.start_section(text, level=0)
            pdf.set_font("Helvetica", "B", 14)
            pdf.multi_cell(0, 8, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif block.kind == "section":
            # Keep a heading together with the first lines of its text.
            if pdf.will_page_break(25):
                pdf.add_page()
            pdf.ln(2)
            pdf.start_section(text, level=1)
            pdf.set_font("Helvetica", "B", 12)
            pdf.multi_cell(0, 7, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif block.kind == "paragraph":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.multi_cell(0, 5.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2.5)
        elif block.kind == "bullets":
            pdf.set_font("Helvetica", "", 10.5)
            for item in block.items:
                pdf.set_x(pdf.l_margin + 4)
                pdf.multi_cell(
                    0, 5.5, f"- {_latin1(item, source)}", align="L", new_x="LMARGIN", new_y="NEXT"
                )
            pdf.ln(2.5)
        elif block.kind == "table":
            pdf.set_font("Helvetica", "", 9.5)
            with pdf.table(text_align="LEFT", line_height=5.5) as table:
                for cells in block.items:
                    row = table.row()
                    for cell in cells:
                        row.cell(_latin1(cell, source))
            pdf.ln(3)
    pdf.output(str(dest))


def _render_docx(blocks: list[_Block], source: Path, dest: Path) -> None:
    """Write a docx with Title, Heading 1/2, List Bullet and Table Grid styles."""
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title = _title(blocks, source)
    props.author = _AUTHOR
    props.last_modified_by = _AUTHOR
    props.created = _FIXED_DATE
    props.modified = _FIXED_DATE
    document.sections[0].footer.paragraphs[0].text = f"{_AUTHOR} - internal document"

    for block in blocks:
        if block.kind == "title":
            document.add_heading(block.text, level=0)
        elif block.kind == "chapter":
            document.add_heading(block.text, level=1)
        elif block.kind == "section":
            document.add_heading(block.text, level=2)
        elif block.kind == "paragraph":
            document.add_paragraph(block.text)
        elif block.kind == "bullets":
            for item in block.items:
                document.add_paragraph(item, style="List Bullet")
        elif block.kind == "table":
            rows = block.items
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            table.style = "Table Grid"
            for row_index, cells in enumerate(rows):
                for col_index, cell_text in enumerate(cells):
                    cell = table.cell(row_index, col_index)
                    cell.text = cell_text
                    if row_index == 0:
                        for run in cell.paragraphs[0].runs:
                            run.bold = True
    document.save(str(dest))


_RENDERERS = {".pdf": _render_pdf, ".docx": _render_docx}


def write_sample_corpus(dest: Path) -> list[Path]:
    """Write the sample corpus into a folder, rendering the pdf and docx files.

    Existing files with the same names are overwritten; other files in `dest` are left alone.

    Args:
        dest: Folder to write into; created with its subfolders if missing.

    Returns:
        The written files, sorted by their path relative to `dest`.

    Raises:
        ValueError: If a rendered source is malformed or a pdf source is not latin-1-safe.
    """
    dest = Path(dest)
    written: list[Path] = []

    for src in sorted(_VERBATIM_DIR.rglob("*")):
        if src.is_file():
            target = dest / src.relative_to(_VERBATIM_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            written.append(target)

    manifest = json.loads(_MANIFEST_PATH.read_text(encoding="utf-8"))
    for source_name, output in manifest.items():
        source = _RENDERED_DIR / source_name
        target = dest / output
        renderer = _RENDERERS.get(target.suffix)
        if renderer is None:
            raise ValueError(
                f"{_MANIFEST_PATH}: cannot render {output!r}; "
                f"rendered outputs must end in one of {sorted(_RENDERERS)}."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        renderer(_parse_source(source.read_text(encoding="utf-8")), source, target)
        written.append(target)

    return sorted(written, key=lambda p: p.relative_to(dest).as_posix())


def load_sample_questions() -> list[dict]:
    """Read the gold questions of the sample corpus.

    Returns:
        One dict per question with keys "question", "answer" and "source" (a path relative to the
        folder passed to `write_sample_corpus`, with '/' separators).
    """
    lines = SAMPLE_QUESTIONS_PATH.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> None:
    """Write the sample corpus to a folder: `python -m builder.sample_corpus DEST`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("dest", type=Path, help="folder to write the sample documents into")
    args = parser.parse_args(argv)
    paths = write_sample_corpus(args.dest)
    print(f"Wrote {len(paths)} sample documents to {args.dest}")


if __name__ == "__main__":
    main()

import json
import os
from pathlib import Path

import pytest
from conftest import all_chunks

from builder.build import BuildError, build
from retrieval.config import RetrievalConfig
from retrieval.index import FORMAT_VERSION, IndexLayout
from retrieval.search import Retriever


def sources_for(project, encoder, question: str, k: int = 3) -> list[str]:
    retriever = Retriever.open(project.index_root, encoder, RetrievalConfig(top_k=k))
    try:
        return [hit.source for hit in retriever.search(question)]
    finally:
        retriever.close()


def test_first_build_indexes_every_file(project_factory, encoder):
    project = project_factory()
    report = build(project, encoder=encoder)
    assert sorted(report.added) == [
        "billing/refunds.md",
        "handbook/laptops.md",
        "handbook/vacation.txt",
        "manuals/centrifuge.md",
    ]
    assert report.skipped == [] and report.generation == 1
    assert report.total_files == 4 and report.total_chunks == report.chunks_embedded >= 4
    chunks = all_chunks(project)
    rotor = next(c for c in chunks if "rotor" in c.text)
    assert rotor.source == "manuals/centrifuge.md" and rotor.section == "Centrifuge"
    assert (
        sources_for(project, encoder, "when is the rotor replaced?")[0] == "manuals/centrifuge.md"
    )


def test_unchanged_rebuild_embeds_nothing(project_factory, encoder):
    project = project_factory()
    build(project, encoder=encoder)
    calls = encoder.calls
    report = build(project, encoder=encoder)
    assert not report.changed and len(report.unchanged) == 4
    assert encoder.calls == calls
    assert report.generation == 1


def test_incremental_rebuild_embeds_only_changes(project_factory, encoder):
    project = project_factory()
    build(project, encoder=encoder)
    docs = project.docs_dir
    (docs / "handbook/laptops.md").write_text("# Laptops\n\nA laptop battery lasts 6 hours.\n")
    (docs / "billing/refunds.md").unlink()
    (docs / "it").mkdir()
    (docs / "it/printer.md").write_text("# Printer\n\nThe printer firmware updates on Mondays.\n")
    before = encoder.texts_encoded
    report = build(project, encoder=encoder)
    assert report.updated == ["handbook/laptops.md"]
    assert report.removed == ["billing/refunds.md"]
    assert report.added == ["it/printer.md"]
    assert sorted(report.unchanged) == ["handbook/vacation.txt", "manuals/centrifuge.md"]
    assert encoder.texts_encoded - before == report.chunks_embedded == 2
    assert report.generation == 2
    assert "billing/refunds.md" not in {c.source for c in all_chunks(project)}
    assert sources_for(project, encoder, "laptop battery", k=1) == ["handbook/laptops.md"]
    assert sources_for(project, encoder, "printer firmware", k=1) == ["it/printer.md"]
    # Older generations are cleaned up once the new one is live.
    assert [p.name for p in project.index_root.glob("gen-*")] == ["gen-000002"]


def test_changed_settings_force_a_full_rebuild(project_factory, encoder):
    project = project_factory()
    first = build(project, encoder=encoder)
    project.config.ingest.chunk_tokens = 8
    project.config.ingest.chunk_overlap = 2
    report = build(project, encoder=encoder)
    assert sorted(report.updated) == sorted(first.added)
    assert report.total_chunks > first.total_chunks


def test_an_index_of_an_older_format_is_rebuilt_in_full(project_factory, encoder):
    # The loader refuses an older format, so an unchanged corpus must not keep it.
    project = project_factory()
    first = build(project, encoder=encoder)
    manifest = IndexLayout(project.index_root).current() / "manifest.json"
    fields = json.loads(manifest.read_text())
    fields["format"] = FORMAT_VERSION - 1
    manifest.write_text(json.dumps(fields))
    report = build(project, encoder=encoder)
    assert sorted(report.updated) == sorted(first.added) and report.generation == 2
    assert (
        sources_for(project, encoder, "when is the rotor replaced?")[0] == "manuals/centrifuge.md"
    )


def test_full_flag_reembeds_everything(project_factory, encoder):
    project = project_factory()
    first = build(project, encoder=encoder)
    report = build(project, encoder=encoder, full=True)
    assert report.chunks_embedded == first.total_chunks
    assert report.generation == 2


BAD_FILES = {
    "good.md": "# Warranty\n\nThe warranty lasts two years.\n",
    "broken.pdf": b"%PDF-1.4\n" + os.urandom(300),
    "not-a-pdf.pdf": b"hello, I am text",
    "binary.txt": bytes(range(256)) * 8,
    "empty.md": b"",
    "fake.docx": b"just text",
    "latin1.txt": "Caf\xe9 parking badge policy: badges are blue.".encode("latin-1"),
    "日本語 résumé.md": "# Badge\n\nThe parking badge costs 5 euros.\n",
    "image.png": b"\x89PNG\r\n",
    ".hidden.md": "# hidden\n\nwarranty secrets\n",
    ".git/config.md": "# nope\n",
}


def test_bad_files_are_skipped_with_reasons(project_factory, encoder, tmp_path: Path):
    outside = tmp_path / "outside.md"
    outside.write_text("# Secret\n\nThe refund secret.\n")
    project = project_factory(BAD_FILES)
    (project.docs_dir / "escape.md").symlink_to(outside)
    (project.docs_dir / "inside-link.md").symlink_to(project.docs_dir / "good.md")
    report = build(project, encoder=encoder)
    reasons = {skip.source: skip.reason for skip in report.skipped}
    assert set(reasons) == {
        "broken.pdf",
        "not-a-pdf.pdf",
        "binary.txt",
        "empty.md",
        "fake.docx",
        "image.png",
        "escape.md",
    }
    assert "PDF" in reasons["broken.pdf"] and "PDF" in reasons["not-a-pdf.pdf"]
    assert "binary" in reasons["binary.txt"]
    assert "empty" in reasons["empty.md"]
    assert "docx" in reasons["fake.docx"]
    assert "unsupported" in reasons["image.png"]
    assert "outside" in reasons["escape.md"]
    assert sorted(report.added) == ["good.md", "inside-link.md", "latin1.txt", "日本語 résumé.md"]
    texts = {c.source: c.text for c in all_chunks(project)}
    assert "Café" in texts["latin1.txt"]
    assert not any("secret" in text for text in texts.values())


def test_oversized_file_is_skipped(project_factory, encoder):
    project = project_factory(
        {"big.txt": "warranty " * 200_000, "small.md": "# Refund\n\nrefund text\n"},
        ["ingest.max_file_mb=1"],
    )
    report = build(project, encoder=encoder)
    assert [s.source for s in report.skipped] == ["big.txt"]
    assert "limit" in report.skipped[0].reason
    assert report.added == ["small.md"]


def test_nothing_indexable_raises_and_keeps_the_old_index(project_factory, encoder):
    project = project_factory({"a.md": "# Rotor\n\nrotor facts\n"})
    build(project, encoder=encoder)
    (project.docs_dir / "a.md").unlink()
    (project.docs_dir / "b.txt").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(BuildError, match="nothing could be indexed"):
        build(project, encoder=encoder)
    assert IndexLayout(project.index_root).current_name() == "gen-000001"
    assert [c.source for c in all_chunks(project)] == ["a.md"]
    assert not list(project.index_root.glob("*.partial"))


def test_empty_folder_raises(project_factory, encoder):
    project = project_factory({})
    with pytest.raises(BuildError, match="no documents found"):
        build(project, encoder=encoder)


def test_file_that_breaks_keeps_its_previous_version(project_factory, encoder):
    project = project_factory(
        {"manual.md": "# Rotor\n\nrotor lasts 5 years\n", "b.md": "# Refund\n\nrefund\n"}
    )
    build(project, encoder=encoder)
    (project.docs_dir / "manual.md").write_bytes(b"\x00\xff" * 64)
    (project.docs_dir / "b.md").write_text("# Refund\n\nrefund within 9 days\n")
    report = build(project, encoder=encoder)
    assert report.kept_previous == ["manual.md"]
    assert report.updated == ["b.md"]
    assert any("rotor lasts 5 years" in c.text for c in all_chunks(project))
    # The old hash was kept, so the next build tries the file again.
    (project.docs_dir / "manual.md").write_text("# Rotor\n\nrotor lasts 7 years\n")
    report = build(project, encoder=encoder)
    assert report.updated == ["manual.md"]
    assert any("rotor lasts 7 years" in c.text for c in all_chunks(project))


def test_missing_docs_folder(project_factory, encoder, tmp_path):
    project = project_factory()
    project.config.docs = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build(project, encoder=encoder)

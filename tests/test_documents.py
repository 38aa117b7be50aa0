"""Uploads, listing and removal in the documents folder (builder/documents.py)."""

import os
import re

import pytest
from conftest import KeywordEncoder

from builder.build import build
from builder.documents import (
    DocumentError,
    list_documents,
    remove_document,
    save_upload,
    upload_name,
)


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("manual.pdf", "manual.pdf"),
        ("  Notes 2024.MD ", "Notes 2024.MD"),
        ("Fehlercodes-Übersicht.md", "Fehlercodes-Übersicht.md"),
        ("a<b>|c?.txt", "a_b__c_.txt"),
        ("x" * 300 + ".html", "x" * 250 + ".html"),
    ],
)
def test_upload_names_are_kept_or_cleaned(name, stored):
    assert upload_name(name) == stored


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/passwd.md", "folder paths are not allowed"),
        ("..\\evil.md", "folder paths are not allowed"),
        ("/abs/evil.md", "folder paths are not allowed"),
        ("..", "folder paths are not allowed"),
        (".hidden.md", "hidden files"),
        ("bad\x00name.md", "control characters"),
        ("tab\tname.md", "control characters"),
        ("program.exe", "unsupported file type '.exe'"),
        ("README", "unsupported file type (no extension)"),
        ("   ", "no name"),
    ],
)
def test_bad_upload_names_are_refused_with_a_reason(name, reason):
    with pytest.raises(DocumentError, match=re.escape(reason)) as error:
        upload_name(name)
    assert "\n" not in str(error.value)


def test_save_upload_writes_only_inside_the_docs_folder(project_factory):
    project = project_factory()
    saved = save_upload(project, "new.md", b"# New\n\nBattery lasts a day.")
    assert saved.source == "new.md" and not saved.replaced
    assert (project.docs_dir / "new.md").read_bytes().startswith(b"# New")
    assert save_upload(project, "new.md", b"changed").replaced
    with pytest.raises(DocumentError):
        save_upload(project, "../outside.md", b"x")
    assert not (project.docs_dir.parent / "outside.md").exists()
    assert not [p for p in project.docs_dir.iterdir() if p.name.startswith(".")]


def test_save_upload_refuses_empty_large_and_linked_targets(project_factory, tmp_path):
    project = project_factory(overrides=["ingest.max_file_mb=0.001"])
    with pytest.raises(DocumentError, match="empty"):
        save_upload(project, "a.md", b"")
    with pytest.raises(DocumentError, match="over the limit of 0.001 MB"):
        save_upload(project, "a.md", b"x" * 2000)
    outside = tmp_path / "secret.md"
    outside.write_text("secret")
    os.symlink(outside, project.docs_dir / "link.md")
    with pytest.raises(DocumentError, match="folder or a link"):
        save_upload(project, "link.md", b"overwrite")
    assert outside.read_text() == "secret"


def test_new_project_gets_its_docs_folder_on_first_upload(tmp_path):
    from builder.project import open_project

    project = open_project(tmp_path / "fresh")
    assert list_documents(project).documents == []
    save_upload(project, "first.txt", b"hello")
    assert [d.source for d in list_documents(project).documents] == ["first.txt"]


def test_listing_compares_the_folder_with_the_index(project_factory):
    project = project_factory()
    listing = list_documents(project)
    assert listing.generation is None and not listing.index_up_to_date
    assert {d.status for d in listing.documents} == {"not indexed"}
    build(project, encoder=KeywordEncoder())
    listing = list_documents(project)
    assert listing.generation == 1 and listing.index_up_to_date
    assert all(d.chunks >= 1 for d in listing.documents)
    save_upload(project, "new.md", b"Shipping is free.")
    (project.docs_dir / "handbook" / "vacation.txt").write_text("Changed vacation rules, longer.")
    remove_document(project, "billing/refunds.md")
    (project.docs_dir / "notes.xyz").write_text("unsupported")
    listing = list_documents(project)
    status = {d.source: d.status for d in listing.documents}
    assert status["new.md"] == "not indexed"
    assert status["handbook/vacation.txt"] == "changed"
    assert status["manuals/centrifuge.md"] == "indexed"
    assert listing.removed == ["billing/refunds.md"]
    assert [s.source for s in listing.skipped] == ["notes.xyz"]
    assert not listing.index_up_to_date


def test_remove_document_deletes_the_file_and_empty_folders(project_factory):
    project = project_factory()
    remove_document(project, "billing/refunds.md")
    assert not (project.docs_dir / "billing").exists()
    remove_document(project, "handbook/laptops.md")
    assert (project.docs_dir / "handbook" / "vacation.txt").is_file()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("../project/ragtune.toml", "not a path inside"),
        ("/etc/passwd", "not a path inside"),
        ("handbook/.secret.md", "hidden files"),
        ("nothing.md", "no such document"),
        ("manuals", "no such document"),
    ],
)
def test_remove_document_refuses_paths_outside_or_missing(project_factory, source, reason):
    project = project_factory()
    with pytest.raises(DocumentError, match=reason):
        remove_document(project, source)
    assert (project.root / "ragtune.toml").is_file()

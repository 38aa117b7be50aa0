"""A build killed at any point leaves the previous index loadable and consistent."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from builder.build import build
from builder.project import open_project
from retrieval.config import IndexConfig
from retrieval.index import IndexLayout, open_index

TESTS = Path(__file__).parent

# Runs a build in a child process that SIGKILLs itself at the named point, mid-write.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from conftest import KeywordEncoder
    import builder.build as b
    import retrieval.index as index_module
    from builder.project import open_project

    point = {point!r}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def half_write_then_die(path, data=b"x" * 4096):
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
        die()

    encoder = KeywordEncoder()
    if point == "embedding":
        encoder.encode = lambda texts: die()
    elif point == "store":
        original = b.ChunkStore.replace_file
        count = {{"n": 0}}
        def replace_then_die(self, *args):
            original(self, *args)
            count["n"] += 1
            if count["n"] == 2:
                die()
        b.ChunkStore.replace_file = replace_then_die
    elif point == "vectors":
        index_module.save_vector_index = lambda index, path: half_write_then_die(path)
    elif point == "keywords":
        index_module.KeywordIndex.save = lambda self, folder: half_write_then_die(
            folder / "vocab.index.json"
        )
    elif point == "pointer":
        original_replace = os.replace
        def replace(src, dst):
            if str(dst).endswith("CURRENT"):
                half_write_then_die(src, b"gen-000099\\n")
            return original_replace(src, dst)
        index_module.os.replace = replace
    project = open_project({project!r}, ["ingest.chunk_tokens=40", "ingest.chunk_overlap=5"])
    b.build(project, encoder=encoder, full=True)
    print("finished without being killed")
    """
)


@pytest.mark.parametrize("point", ["embedding", "store", "vectors", "keywords", "pointer"])
def test_killed_build_keeps_previous_index(point, project_factory, encoder):
    project = project_factory()
    build(project, encoder=encoder)
    docs = project.docs_dir
    (docs / "handbook/laptops.md").write_text("# Laptops\n\nA laptop battery lasts 6 hours.\n")
    (docs / "new.md").write_text("# Printer\n\nprinter firmware\n")
    script = CHILD.format(tests=str(TESTS), point=point, project=str(project.root))
    child = subprocess.run(
        [sys.executable, "-c", script],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr

    assert IndexLayout(project.index_root).current_name() == "gen-000001"
    index = open_index(project.index_root, IndexConfig())  # checksums verified
    try:
        chunks = list(index.store.iter_chunks())
        assert index.vectors.ntotal == index.keywords.size == len(chunks)
        assert {c.source for c in chunks} == {
            "billing/refunds.md",
            "handbook/laptops.md",
            "handbook/vacation.txt",
            "manuals/centrifuge.md",
        }
        assert any("password" in c.text for c in chunks)  # the old laptops.md
    finally:
        index.close()

    # The next build cleans the abandoned partial generation and succeeds.
    report = build(open_project(project.root), encoder=encoder)
    assert "new.md" in report.added and "handbook/laptops.md" in report.updated
    assert not list(project.index_root.glob("*.partial"))
    assert IndexLayout(project.index_root).current_name() == f"gen-{report.generation:06d}"


def test_tampered_index_is_refused(project_factory, encoder):
    project = project_factory()
    build(project, encoder=encoder)
    generation = IndexLayout(project.index_root).current()
    with open(generation / "vectors.faiss", "ab") as handle:
        handle.write(b"junk")
    with pytest.raises(Exception, match="vectors.faiss changed since the build"):
        open_index(project.index_root, IndexConfig())


def test_no_index_yet(tmp_path):
    with pytest.raises(Exception, match="run `ragtune build"):
        open_index(tmp_path / "index", IndexConfig())

"""`ragtune build --engine ray` against the local engine on the sample corpus: Ray runs locally
(`ray.init(num_cpus=2)`) with the fake keyword encoder, and both builds must hold the same
chunks and vectors (`slow` tier: starting Ray takes tens of seconds)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import KeywordEncoder

from builder.build import build
from builder.project import open_project
from builder.sample_corpus import write_sample_corpus
from retrieval.config import IndexConfig
from retrieval.index import open_index

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    # The workers import the fake encoder from tests/ and ragtune from the checkout.
    paths = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": paths}})
    yield ray
    ray.shutdown()


def contents(root: Path):
    index = open_index(root, IndexConfig())
    try:
        chunks = list(index.store.iter_chunks())
        vectors = index.store.embeddings(index.manifest.dim)
        return index.manifest, chunks, vectors, sorted(p.name for p in index.folder.iterdir())
    finally:
        index.close()


def test_the_ray_engine_builds_what_the_local_engine_builds(tmp_path, ray_local):
    docs = tmp_path / "docs"
    write_sample_corpus(docs)
    projects = {}
    for engine in ("local", "ray"):
        project = open_project(tmp_path / engine, [], docs=docs)
        report = build(
            project, encoder=KeywordEncoder(), engine=engine, make_encoder=KeywordEncoder
        )
        assert report.total_files == 21 and not report.skipped
        projects[engine] = (project, report)
    local_manifest, local_chunks, local_vectors, local_files = contents(
        projects["local"][0].index_root
    )
    ray_manifest, ray_chunks, ray_vectors, ray_files = contents(projects["ray"][0].index_root)
    assert [c.chunk_id for c in ray_chunks] == [c.chunk_id for c in local_chunks]
    assert ray_chunks == local_chunks
    np.testing.assert_allclose(ray_vectors, local_vectors, atol=1e-6)
    assert ray_files == local_files  # the same generation layout; no shard left behind
    assert ray_manifest.chunks == local_manifest.chunks and ray_manifest.files == 21
    assert projects["ray"][1].added == projects["local"][1].added


def test_an_incremental_ray_build_embeds_only_the_changed_file(tmp_path, ray_local):
    docs = tmp_path / "docs"
    write_sample_corpus(docs)
    project = open_project(tmp_path / "p", [], docs=docs)
    build(project, encoder=KeywordEncoder(), engine="ray", make_encoder=KeywordEncoder)
    changed = next(docs.rglob("*.md"))
    changed.write_text(changed.read_text() + "\n\nThe battery lasts 9 hours.\n")
    (next(docs.rglob("*.txt"))).unlink()
    report = build(project, encoder=KeywordEncoder(), engine="ray", make_encoder=KeywordEncoder)
    assert report.updated == [changed.relative_to(docs).as_posix()]
    assert len(report.removed) == 1 and report.generation == 2
    assert any("9 hours" in c.text for c in contents(project.index_root)[1])


class BrokenEncoder(KeywordEncoder):
    """Chunks as the keyword encoder does, then fails to embed: a worker that dies mid-build."""

    def encode(self, texts):
        raise RuntimeError("the embedding worker failed")


def test_a_failed_ray_build_leaves_the_previous_generation_live(tmp_path, ray_local):
    docs = tmp_path / "docs"
    write_sample_corpus(docs)
    project = open_project(tmp_path / "p", [], docs=docs)
    build(project, encoder=KeywordEncoder(), engine="ray", make_encoder=KeywordEncoder)
    before = contents(project.index_root)
    with pytest.raises(Exception, match="the embedding worker failed"):
        build(
            project, encoder=KeywordEncoder(), full=True, engine="ray", make_encoder=BrokenEncoder
        )
    after = contents(project.index_root)
    assert after[0].generation == before[0].generation and after[1] == before[1]
    # Neither the partial generation nor its shards are left behind.
    assert sorted(p.name for p in project.index_root.iterdir()) == ["CURRENT", "gen-000001"]

from pathlib import Path

import pytest

from builder.config import ConfigError, config_to_toml, load_config
from builder.project import open_project


def test_defaults_when_no_file(tmp_path: Path):
    config = load_config(tmp_path / "ragtune.toml")
    assert config.retrieval.top_k == 5
    assert config.embedding.model == "embedded:all-MiniLM-L6-v2"


def test_overrides_are_typed(tmp_path: Path):
    config = load_config(
        tmp_path / "x.toml", ["retrieval.top_k=8", "index.kind=hnsw", "ingest.max_file_mb=2"]
    )
    assert config.retrieval.top_k == 8
    assert config.index.kind == "hnsw"
    assert config.ingest.max_file_mb == 2.0 and isinstance(config.ingest.max_file_mb, float)


def test_every_problem_is_reported_at_once(tmp_path: Path):
    path = tmp_path / "ragtune.toml"
    path.write_text(
        '[retrieval]\ntopk = 3\nmode = "fuzzy"\n[ingest]\nchunk_tokens = "big"\n[nope]\nx = 1\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["index.hnsw_m=0"])
    problems = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 5
    assert "retrieval.topk" in problems and "did you mean 'top_k'" in problems
    assert "retrieval.mode = 'fuzzy': choose one of hybrid, dense, keyword" in problems
    assert "ingest.chunk_tokens = 'big': expected int" in problems
    assert "unknown section [nope]" in problems
    assert "index.hnsw_m = 0: must be more than 0" in problems
    assert str(path) in str(caught.value)


def test_overlap_must_be_smaller_than_chunk(tmp_path: Path):
    with pytest.raises(ConfigError, match="chunk_overlap = 50: must be less than"):
        load_config(tmp_path / "x.toml", ["ingest.chunk_tokens=50", "ingest.chunk_overlap=50"])


def test_invalid_toml_names_the_file(tmp_path: Path):
    path = tmp_path / "ragtune.toml"
    path.write_text("[retrieval\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_malformed_override(tmp_path: Path):
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(tmp_path / "x.toml", ["retrieval.top_k"])


def test_round_trip_and_docs_recorded_relative(tmp_path: Path):
    docs = tmp_path / "proj" / "docs"
    docs.mkdir(parents=True)
    project = open_project(tmp_path / "proj", ["retrieval.top_k=7"], docs=docs)
    project.save_config()
    assert project.config.docs == "docs"
    reloaded = open_project(tmp_path / "proj")
    assert reloaded.docs_dir == docs.resolve()
    assert reloaded.config.retrieval.top_k == 7
    assert load_config(project.config_path) == project.config
    assert "[retrieval]" in config_to_toml(project.config)

"""The `ragtune` command line, with the fake encoder in place of the real model."""

import json

import pytest
from conftest import BASIC_DOCS, KeywordEncoder, write_docs

import builder.build
import retrieval.embeddings
from builder.cli import main


@pytest.fixture(autouse=True)
def fake_encoder(monkeypatch):
    monkeypatch.setattr(builder.build, "load_encoder", lambda *a, **k: KeywordEncoder())
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    write_docs(folder, BASIC_DOCS)
    return folder


def test_build_then_retrieve_json(tmp_path, docs, capsys):
    project = tmp_path / "proj"
    assert main(["build", str(project), "--docs", str(docs)]) == 0
    assert "4 files" in capsys.readouterr().err
    assert (project / "ragtune.toml").is_file()
    assert main(["retrieve", str(project), "rotor replacement", "-k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["question"] == "rotor replacement"
    assert len(result["hits"]) == 2
    assert result["hits"][0]["source"] == "manuals/centrifuge.md"
    assert {"source", "page", "section", "chunk_id", "score", "text"} <= set(result["hits"][0])


def test_second_build_reports_up_to_date(tmp_path, docs, capsys):
    project = tmp_path / "proj"
    main(["build", str(project), "--docs", str(docs)])
    capsys.readouterr()
    assert main(["build", str(project)]) == 0  # the docs folder was recorded
    assert "up to date" in capsys.readouterr().err


def test_overrides_are_not_persisted(tmp_path, docs):
    project = tmp_path / "proj"
    main(["build", str(project), "--docs", str(docs), "--set", "retrieval.top_k=9"])
    assert "top_k = 5" in (project / "ragtune.toml").read_text()


def test_questions_file(tmp_path, docs, capsys):
    project = tmp_path / "proj"
    main(["build", str(project), "--docs", str(docs)])
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"question": "vacation days", "source": "handbook/vacation.txt"})
        + "\n\n"
        + json.dumps({"question": "refund invoice", "source": "billing/refunds.md"})
        + "\n"
    )
    capsys.readouterr()
    assert main(["retrieve", str(project), "--questions", str(questions), "--json", "-k", "1"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["hits"][0]["source"] for line in lines] == [
        "handbook/vacation.txt",
        "billing/refunds.md",
    ]
    assert "2/2" in captured.err


def test_bad_question_lines_are_reported_by_number(tmp_path, docs, capsys):
    project = tmp_path / "proj"
    main(["build", str(project), "--docs", str(docs)])
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "ok"}\nnot json\n{"q": 1}\n')
    assert main(["retrieve", str(project), "--questions", str(questions)]) == 2
    err = capsys.readouterr().err
    assert "line 2: not valid JSON" in err and "line 3" in err and "q.jsonl" in err


def test_retrieve_without_index(tmp_path, capsys):
    assert main(["retrieve", str(tmp_path / "none"), "hello"]) == 2
    assert "ragtune build" in capsys.readouterr().err


def test_build_missing_docs(tmp_path, capsys):
    assert main(["build", str(tmp_path / "p"), "--docs", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_build_nothing_indexable_exits_1(tmp_path, capsys):
    docs = tmp_path / "d"
    write_docs(docs, {"a.txt": b"\x00" * 64})
    assert main(["build", str(tmp_path / "p"), "--docs", str(docs)]) == 1
    err = capsys.readouterr().err
    assert "a.txt" in err and "nothing could be indexed" in err


def test_bad_setting_exits_2_before_work(tmp_path, docs, capsys):
    assert (
        main(["build", str(tmp_path / "p"), "--docs", str(docs), "--set", "index.kind=tree"]) == 2
    )
    assert "index.kind = 'tree'" in capsys.readouterr().err
    assert not (tmp_path / "p" / "index").exists()

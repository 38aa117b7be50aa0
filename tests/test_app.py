"""The Streamlit pages (apps/), run in-process with AppTest on a tiny-model project with the
fake keyword encoder; the echo stand-in replaces the random model where citations matter."""

import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import streamlit as st
from conftest import KeywordEncoder
from echo_generator import CLOSED_BOOK_REPLY, EchoGenerator
from streamlit.testing.v1 import AppTest
from test_jobs import STAND_IN
from tiny_models import build_tiny_llama

import builder.build
import builder.jobs
import retrieval.embeddings
import retrieval.generation
from builder.build import build
from builder.documents import save_upload
from builder.safe_markdown import WORD_JOINER

APP = Path(__file__).resolve().parents[1] / "apps" / "chat.py"


def plain(markdown: str) -> str:
    """What an escaped Markdown string reads as."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(WORD_JOINER, "")


def texts(at: AppTest) -> str:
    return "\n".join(plain(m.value) for m in [*at.markdown, *at.caption])


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def project(project_factory, tiny_llama, monkeypatch):
    """A built project whose generator is the tiny Llama; the app is started on it."""
    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    monkeypatch.setattr(builder.build, "load_encoder", lambda *a, **k: KeywordEncoder())
    project = project_factory(
        overrides=[f"generation.model={tiny_llama}", "generation.max_new_tokens=6"]
    )
    build(project)
    monkeypatch.setattr(sys, "argv", [str(APP), str(project.root)])
    st.cache_resource.clear()
    yield project
    st.cache_resource.clear()


@pytest.fixture
def echo(monkeypatch):
    monkeypatch.setattr(
        retrieval.generation,
        "load_generator_with_adapter",
        lambda config, adapter: (EchoGenerator(), "echo"),
    )


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_chat_streams_an_answer_with_its_cited_source(project, echo):
    at = open_app()
    at.chat_input[0].set_value("When is the rotor replaced?").run()
    assert not at.exception
    shown = texts(at)
    assert "Replace the rotor after 12000 hours [1]." in shown
    assert "**[1]** manuals/centrifuge.md · § Centrifuge" in shown
    # The passage matching the answer is highlighted inside its source.
    assert any(m.value.startswith(":orange-background[") for m in at.markdown)
    at.chat_input[0].set_value("How many vacation days?").run()
    assert [len(at.chat_message), texts(at).count("**[1]** ")] == [4, 2]  # history kept


def test_mode_picker_offers_the_engine_modes_and_answers_in_the_chosen_one(project):
    at = open_app()
    picker = at.sidebar.radio[0]
    assert picker.options == ["Base model", "RAG"]  # no tuned adapter: no tuned modes
    assert picker.value == "rag"
    picker.set_value("base").run()
    at.chat_input[0].set_value("What is the warranty?").run()
    assert not at.exception
    assert "Base model · " in texts(at)
    assert len(at.chat_message) == 2


def test_untrusted_text_is_shown_escaped(project, echo):
    save_upload(
        project,
        "hostile.md",
        b"Battery note: <script>alert(1)</script> ![x](http://evil.example/p.png) "
        b"<img src=http://evil.example/x> [click](http://evil.example) www.evil.example",
    )
    build(project)
    at = open_app()
    at.chat_input[0].set_value("battery").run()
    shown = texts(at)
    assert "<script>alert(1)</script>" in shown
    assert "![x](http://evil.example/p.png)" in shown
    for element in at.markdown:
        unescaped = re.sub(r"\\.", "", element.value)
        assert not re.search(r"<|!\[|\]\(|http:|www\.", unescaped), element.value


def test_chat_uses_the_new_index_after_a_rebuild(project, echo):
    at = open_app()
    save_upload(project, "shipping.md", b"Shipping takes three days.")
    build(project)  # drops the generation the loaded engine read
    at.chat_input[0].set_value("shipping time?").run()
    assert not at.exception
    assert "**[1]** shipping.md" in texts(at)


def test_chat_loads_the_new_adapter_after_tuning(project, monkeypatch):
    loaded = []

    def load(config, adapter):
        loaded.append(adapter)
        return EchoGenerator(), "echo"

    monkeypatch.setattr(retrieval.generation, "load_generator_with_adapter", load)
    open_app()
    (project.adapters_dir / "run-1" / "adapter").mkdir(parents=True)
    project.set_current_adapter("run-1")  # what a finished `ragtune tune` does
    open_app()
    assert loaded == [None, project.adapters_dir / "run-1" / "adapter"]


def test_compare_sends_one_question_through_each_mode(project, echo):
    at = open_app("views/compare.py")
    at.text_input[0].set_value("rotor?")
    assert at.multiselect[0].value == ["base", "rag"]
    at.button[0].click().run()
    assert not at.exception
    assert [h.value for h in at.subheader] == ["Base model", "RAG"]
    shown = texts(at)
    assert CLOSED_BOOK_REPLY in shown
    assert "Replace the rotor after 12000 hours [1]." in shown


def test_documents_page_lists_uploads_and_rejects_bad_names(project):
    at = open_app("views/documents.py")
    table = at.dataframe[0].value
    assert list(table["document"]) == [
        "billing/refunds.md",
        "handbook/laptops.md",
        "handbook/vacation.txt",
        "manuals/centrifuge.md",
    ]
    assert set(table["index"]) == {"indexed"}
    at.file_uploader[0].set_value(
        [
            ("../../escape.md", b"# Out", "text/markdown"),
            (".hidden.md", b"# Hidden", "text/markdown"),
            ("badge.md", b"# Badge\n\nYour badge opens every door.", "text/markdown"),
        ]
    )
    at.button[0].click().run()
    assert not at.exception
    errors = [plain(e.value) for e in at.error]
    assert any("folder paths are not allowed" in e for e in errors)
    assert any("hidden files" in e for e in errors)
    assert [plain(s.value) for s in at.success] == ["Added badge.md"]
    assert not (project.docs_dir.parent / "escape.md").exists()
    table = at.dataframe[0].value
    assert dict(zip(table["document"], table["index"]))["badge.md"] == "not indexed"


def test_documents_page_rebuilds_and_removes(project):
    at = open_app("views/documents.py")
    save_upload(project, "badge.md", b"Your badge opens every door.")
    at.run()
    rebuild = next(b for b in at.button if b.label == "Rebuild the index")
    rebuild.click().run()
    assert not at.exception
    assert "Index generation 2: 5 files" in plain(at.success[0].value)
    at.multiselect[0].set_value(["badge.md"])
    next(b for b in at.button if b.label == "Remove the selected documents").click().run()
    assert [plain(s.value) for s in at.success] == ["Removed badge.md"]
    assert not (project.docs_dir / "badge.md").exists()
    assert any("out of date" in plain(w.value) for w in at.warning)


@pytest.fixture
def stop_jobs(project):
    """Kill a stand-in job a failing test left running."""
    yield
    job = builder.jobs.read_job(project)
    if job is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)


def test_tune_page_starts_shows_progress_and_cancels(project, monkeypatch, stop_jobs):
    status_path = project.tune_dir / builder.jobs.STATUS_FILE
    monkeypatch.setattr(
        builder.jobs,
        "tune_command",
        lambda project, extra_args=(): [sys.executable, "-c", STAND_IN, str(status_path), "train"],
    )
    at = open_app("views/tune.py")
    start = next(b for b in at.button if b.label == "Tune on my corpus")
    start.click().run()
    assert not at.exception
    deadline = time.monotonic() + 10
    while "Training: 4 / 10" not in [plain(p.proto.text) for p in at.get("progress")]:
        assert time.monotonic() < deadline, "no progress shown"
        time.sleep(0.05)
        at.run()
    assert "loss 2.500 · about 30 s left" in texts(at)
    next(b for b in at.button if b.label == "Cancel tuning").click().run()
    deadline = time.monotonic() + 10
    while not at.info:
        assert time.monotonic() < deadline, "cancel not shown"
        time.sleep(0.05)
        at.run()
    assert "cancelled" in at.info[0].value


def test_tune_page_saves_the_persona_into_the_settings_file(project):
    from builder.project import open_project

    at = open_app("views/tune.py")
    at.text_input[0].set_value("Ada")
    at.text_input[1].set_value("Acme Labs")
    at.text_input[2].set_value("xx-long")  # not an ISO code
    at.button[0].click().run()
    assert "style.language = 'xx-long': give an ISO 639-1 code" in plain(at.error[0].value)
    assert open_project(project.root).config.style.name == ""  # nothing was written
    at.text_input[2].set_value("de")
    at.text_input[3].set_value("Das habe ich  nicht gefunden.")
    at.text_area[0].set_value("Warm   and brief.")
    at.number_input[0].set_value(20)
    at.button[0].click().run()
    assert not at.exception and "Saved to ragtune.toml" in plain(at.success[0].value)
    style = open_project(project.root).config.style
    assert (style.name, style.organization, style.language) == ("Ada", "Acme Labs", "de")
    assert (style.voice, style.answer_words) == ("Warm and brief.", 20)
    assert style.refusal == "Das habe ich nicht gefunden."


def test_evaluation_page_without_a_report_says_how_to_make_one(project):
    at = open_app("views/evaluation.py")
    assert "No evaluation report yet" in at.info[0].value
    assert at.code[0].value == f"ragtune eval {project.root}"


def test_evaluation_page_shows_the_latest_report(project):
    from eval.report import summarize, write_report

    rows = {
        "base": [{"token_f1": 0.2, "refusal": 0.0}, {"token_f1": 0.4, "refusal": 1.0}],
        "rag": [{"token_f1": 0.7, "refusal": 0.0}, {"token_f1": 0.9, "refusal": 0.0}],
    }
    summary = summarize(rows, samples=50)
    write_report(project.reports_dir / "eval-1", summary, [], {"project": str(project.root)})
    (project.reports_dir / "LATEST").write_text("eval-1\n")
    at = open_app("views/evaluation.py")
    table = at.dataframe[0].value
    assert list(table.columns) == ["metric", "Base", "RAG"]
    assert list(table["metric"]) == ["token F1", "refusal rate"]
    assert table["RAG"][0].startswith("0.800")
    assert "Run eval-1: 2 questions" in texts(at)
    assert len(at.get("vega_lite_chart")) == 2
    assert at.get("download_button")
    json.loads((project.reports_dir / "eval-1" / "report.json").read_text())


def test_no_page_allows_raw_html():
    for script in APP.parent.rglob("*.py"):
        assert "unsafe_allow_html" not in script.read_text(), script

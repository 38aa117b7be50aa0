"""Issue 12, items 5-7: a server, an app and project files that a web page or a hostile project
folder cannot turn against the user. The server runs over loopback with the citing tiny Llama
of test_server.py; slow generations are stand-ins that record when they were stopped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import httpx
import pytest
from test_app import echo, open_app, project, tiny_llama  # noqa: F401 - fixtures
from test_server import KEY, ask, engine, running  # noqa: F401 - `engine` is a fixture

from apps.api_requests import ServerLimits, nested_deeper_than
from apps.server import create_app
from builder.safe_markdown import WORD_JOINER, escape_markdown

JSON = {"content-type": "application/json"}


def chat_body(word: str = "banjo", **fields) -> bytes:
    return json.dumps({"model": "ragtune-rag", "messages": ask(word), **fields}).encode()


class SlowGenerator:
    """Stands in for `Generator.stream`: a piece every 50 ms for 10 s, ending early when its
    `stop` event is set or it is closed; records how it ended."""

    def __init__(self) -> None:
        self.pieces = 0
        self.ended = threading.Event()

    def __call__(self, conversation, *, tuned=False, max_new_tokens=None, stop=None):
        try:
            for _ in range(200):
                if stop is not None and stop.is_set():
                    return
                self.pieces += 1
                yield "[1] "
                time.sleep(0.05)
        finally:
            self.ended.set()


@pytest.fixture
def slow(engine, monkeypatch):  # noqa: F811
    generator = SlowGenerator()
    monkeypatch.setattr(engine.generator, "stream", generator)
    return generator


# --- 5. the server ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_post_that_is_not_json_gets_415(engine, content_type):  # noqa: F811
    # A page may send these cross-origin without a CORS preflight: they must reach nothing.
    headers = {} if content_type is None else {"content-type": content_type}
    with running(create_app(engine)) as base_url:
        response = httpx.post(f"{base_url}/chat/completions", content=chat_body(), headers=headers)
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "unsupported_media_type"
        charset = {"content-type": "application/json; charset=utf-8"}
        ok = httpx.post(f"{base_url}/chat/completions", content=chat_body(), headers=charset)
        assert ok.status_code == 200


def test_deep_or_malformed_json_is_400_not_500(engine):  # noqa: F811
    deep = b'{"model": "ragtune", "messages": ' + b"[" * 30000 + b"]" * 30000 + b"}"
    with running(create_app(engine)) as base_url:
        for body in (deep, b"[" * 60000, b'{"model": "ragtune", "messages": [{', b"\xff\xfe"):
            response = httpx.post(f"{base_url}/chat/completions", content=body, headers=JSON)
            assert response.status_code == 400, body[:40]
    assert nested_deeper_than(b'{"a": "[[[[[[[[", "b": "\\\\", "c": [[]]}', 3) is False
    assert nested_deeper_than(b'{"a": "\\"[[[[", "b": [[[[]]]]}', 3) is True


def test_a_failure_is_a_generic_500_and_the_details_stay_in_the_log(engine, monkeypatch, caplog):  # noqa: F811
    def broken(*args, **kwargs):
        raise RuntimeError("secret: /home/user/private/corpus.md")
        yield  # a generator, like the real one

    monkeypatch.setattr(engine.generator, "stream", broken)
    with running(create_app(engine)) as base_url:
        response = httpx.post(f"{base_url}/chat/completions", content=chat_body(), headers=JSON)
        assert response.status_code == 500
        assert "secret" not in response.text and "log" in response.json()["error"]["message"]
        streamed = httpx.post(
            f"{base_url}/chat/completions", content=chat_body(stream=True), headers=JSON
        )
        assert "secret" not in streamed.text and "server_error" in streamed.text
    assert "secret" in caplog.text


def test_docs_and_openapi_need_the_key_when_one_is_set(engine):  # noqa: F811
    with running(create_app(engine, api_key=KEY)) as base_url:
        root = base_url.removesuffix("/v1")
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert httpx.get(root + path).status_code in (401, 404), path
        auth = {"authorization": f"Bearer {KEY}"}
        assert (
            "/v1/chat/completions"
            in httpx.get(root + "/openapi.json", headers=auth).json()["paths"]
        )
        assert httpx.get(root + "/docs", headers=auth).status_code == 200
    with running(create_app(engine)) as base_url:  # without a key they stay open
        assert httpx.get(base_url.removesuffix("/v1") + "/openapi.json").status_code == 200


def test_the_key_comes_from_a_file_or_the_environment_never_the_command_line(tmp_path, monkeypatch):
    from builder import cli

    calls = []
    monkeypatch.setattr(cli.os, "execve", lambda path, argv, env: calls.append((argv, env)))
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    folder = str(tmp_path / "p")
    assert cli.main(["serve", folder, "--api-key-file", str(key_file), "--timeout", "5"]) == 0
    ((argv, env),) = calls
    assert KEY not in " ".join(argv) and env["RAGTUNE_API_KEY"] == KEY
    assert argv[argv.index("--timeout") + 1] == "5.0"
    monkeypatch.setenv("RAGTUNE_API_KEY", "from-env")
    assert cli.main(["serve", folder]) == 0
    assert calls[-1][1]["RAGTUNE_API_KEY"] == "from-env"
    key_file.write_text("\n")
    assert cli.main(["serve", folder, "--api-key-file", str(key_file)]) == 2
    assert cli.main(["serve", folder, "--api-key-file", str(tmp_path / "missing")]) == 2


def test_a_request_past_its_deadline_gets_504_and_its_generation_stops(engine, slow):  # noqa: F811
    with running(create_app(engine, ServerLimits(request_timeout_s=0.5))) as base_url:
        began = time.monotonic()
        response = httpx.post(
            f"{base_url}/chat/completions", content=chat_body(), headers=JSON, timeout=30
        )
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "timeout"
        assert time.monotonic() - began < 5
        assert slow.ended.wait(5) and slow.pieces < 100
        # A stream that has begun ends with a timeout error event instead.
        slow.ended.clear()
        streamed = httpx.post(
            f"{base_url}/chat/completions", content=chat_body(stream=True), headers=JSON, timeout=30
        )
        assert '"code": "timeout"' in streamed.text and streamed.text.endswith("[DONE]\n\n")
        assert slow.ended.wait(5)


def test_a_client_that_leaves_a_stream_stops_its_generation(engine, slow):  # noqa: F811
    with running(create_app(engine)) as base_url:
        with httpx.stream(
            "POST", f"{base_url}/chat/completions", content=chat_body(stream=True), headers=JSON
        ) as response:
            lines = response.iter_lines()
            while "[1]" not in next(lines):
                pass
        assert slow.ended.wait(5), "the generation kept running for a client that left"
        assert slow.pieces < 100


def test_the_real_generator_stops_at_its_stop_event_and_frees_its_lock(engine):  # noqa: F811
    generator = engine.generator
    messages = [{"role": "user", "content": "Say [1]."}]
    stop = threading.Event()
    stop.set()  # checked after every token, even those the streamer holds back (no space yet)
    text = "".join(generator.stream(messages, max_new_tokens=400, stop=stop))
    assert text == "[1]"  # one token, not 400
    stop.clear()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    assert len("".join(generator.stream(messages, max_new_tokens=5000, stop=stop))) < 3 * 5000
    assert time.monotonic() - began < 10
    stream = generator.stream(messages, max_new_tokens=400)
    next(stream)
    stream.close()  # closed early: the worker ends and releases the model
    assert generator._lock.acquire(timeout=5)
    generator._lock.release()


# --- 6. the app ------------------------------------------------------------------------------


def test_the_app_refuses_an_overlong_question_with_a_message(project, echo):  # noqa: F811
    at = open_app()
    at.chat_input[0].set_value("why " * 600).run()  # 2,400 characters
    assert not at.exception
    assert "the limit is 2,000" in at.error[0].value
    assert len(at.chat_message) == 0  # nothing was asked
    at.chat_input[0].set_value("When is the rotor replaced?").run()
    assert len(at.chat_message) == 2
    compare = open_app("views/compare.py")
    compare.text_input[0].set_value("x" * 2001)
    compare.button[0].click().run()
    assert "the limit is 2,000" in compare.error[0].value and not compare.subheader


@pytest.mark.parametrize(
    "text",
    [
        "_www.evil.example",
        "(www.evil.example)",
        "*www.evil.example*",
        "~WWW.evil.example",
        "a_www.x.y",
    ],
)
def test_www_autolinks_after_punctuation_are_broken(text):
    # GFM links 'www.' after any punctuation, '_' included (a word character for \b).
    escaped = escape_markdown(text)
    assert re.search("www" + WORD_JOINER + r"\\\.", escaped, re.IGNORECASE), escaped


# --- 7. project files ------------------------------------------------------------------------


@pytest.fixture
def bare_project(tmp_path):
    from builder.project import open_project

    opened = open_project(tmp_path / "project")
    opened.tune_dir.mkdir(parents=True)
    return opened


@pytest.fixture
def bystander():
    """A live process of this user that is no tune: a hostile project names its pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    yield child
    child.kill()
    child.wait()


def write_json(path, data) -> None:
    path.write_text(json.dumps(data))


def test_pids_in_project_files_get_no_signal_unless_the_process_is_the_job(
    bare_project, bystander, monkeypatch
):
    from builder import jobs

    sent = []
    real_kill = os.kill
    monkeypatch.setattr(jobs.os, "kill", lambda p, s: sent.append(p) if s else real_kill(p, s))
    monkeypatch.setattr(jobs.os, "killpg", lambda p, s: sent.append(-p))
    status = bare_project.tune_dir / jobs.STATUS_FILE
    ticks = jobs.process_start_ticks(bystander.pid)
    # 0 and -1 are os.kill's "our group" and "every process we may signal".
    for pid in (0, -1, 1, True, os.getpid(), bystander.pid):
        write_json(status, {"stage": "train", "pid": pid, "start_ticks": ticks, "updated": 1})
        assert not jobs.job_status(bare_project).running, pid
        assert jobs.cancel_job(bare_project) is False, pid
    # job.json with the bystander's real pid and start time, but another command line.
    record = {"pid": bystander.pid, "started": time.time(), "command": ["ragtune", "tune"]}
    record |= {"log": str(bare_project.tune_dir / "job.log"), "start_ticks": ticks}
    write_json(bare_project.tune_dir / jobs.JOB_FILE, record)
    status.unlink()
    assert not jobs.job_status(bare_project).running
    assert jobs.cancel_job(bare_project) is False
    assert sent == [] and bystander.poll() is None
    # With its own command line it is taken for the job (a reloaded app finds its job so).
    write_json(bare_project.tune_dir / jobs.JOB_FILE, {**record, "command": bystander.args})
    assert jobs.job_status(bare_project).running
    assert jobs.cancel_job(bare_project) is True and sent == [-bystander.pid]


@pytest.mark.parametrize(
    "pointer",
    ["../../elsewhere", "/etc", "..", ".", "gen-1/../../x", "gen\x1b[2J", "gen\u202e1", "a\\b"],
)
def test_current_pointers_name_only_a_sibling_folder(bare_project, pointer):
    from retrieval.generation import AdapterError
    from retrieval.index import IndexLayout, IndexLoadError

    bare_project.index_root.mkdir()
    bare_project.adapters_dir.mkdir()
    (bare_project.index_root / "CURRENT").write_text(pointer + "\n")
    (bare_project.adapters_dir / "CURRENT").write_text(pointer + "\n")
    with pytest.raises(IndexLoadError, match="must hold the name of a folder next to it") as caught:
        IndexLayout(bare_project.index_root).current()
    assert "\n" not in str(caught.value) and "ragtune build" in str(caught.value)
    with pytest.raises(AdapterError, match="must hold the name of a folder next to it"):
        bare_project.current_adapter()


def test_a_current_pointer_may_not_be_a_link_and_a_plain_name_still_works(bare_project, tmp_path):
    from retrieval.index import IndexLayout, IndexLoadError

    layout = IndexLayout(bare_project.index_root)
    bare_project.index_root.mkdir()
    (bare_project.index_root / "gen-000001").mkdir()
    (bare_project.index_root / "CURRENT").write_text("gen-000001\n")
    assert layout.current() == bare_project.index_root / "gen-000001"
    (bare_project.index_root / "gen-000002").symlink_to(tmp_path)
    (bare_project.index_root / "CURRENT").write_text("gen-000002\n")
    with pytest.raises(IndexLoadError):
        layout.current()
    (bare_project.index_root / "CURRENT").write_text("")
    assert layout.current() is None
    (bare_project.adapters_dir / "run-1" / "adapter").mkdir(parents=True)
    bare_project.set_current_adapter("run-1")
    assert bare_project.current_adapter() == bare_project.adapters_dir / "run-1" / "adapter"

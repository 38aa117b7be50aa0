"""The OpenAI-compatible API, driven by the `openai` client over loopback against a real uvicorn
server, with the fake keyword encoder and a tiny Llama wired to cite document [1]."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from conftest import KeywordEncoder, write_docs
from tiny_models import build_tokenizer, tiny_llama_config

import builder.build
import retrieval.embeddings
from apps.api_requests import ServerLimits
from apps.server import create_app
from builder.build import build
from builder.engine import open_engine
from builder.project import open_project
from retrieval.prompt import NO_ANSWER

WORDS = (
    "anchor",
    "banjo",
    "cactus",
    "dolphin",
    "eclipse",
    "falcon",
    "glacier",
    "harbor",
    "iguana",
    "jasmine",
    "kettle",
    "lantern",
    "meteor",
    "nectar",
    "orchid",
    "pelican",
    "quartz",
    "rhubarb",
    "saffron",
    "tundra",
)
KEY = "s3cret-key"


def build_citing_llama(folder: Path) -> Path:
    """A 2-layer Llama whose next token is always "[1]", whatever the prompt: the last MLP adds
    a huge constant to the residual stream and the head reads only that direction. Its answers
    cite the top retrieved chunk, so each client's citations show whose sources it got."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer()
    tokenizer.add_tokens(["[1]"])
    config = tiny_llama_config(tokenizer, mlp_bias=True, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        bias = model.model.layers[-1].mlp.down_proj.bias
        bias.zero_()
        bias[0] = 1e4
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.convert_tokens_to_ids("[1]"), 0] = 1.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One engine for the module: a 20-document project, one keyword per document."""
    root = tmp_path_factory.mktemp("served")
    docs = root / "docs"
    write_docs(
        docs,
        {
            f"topics/{word}.md": f"# {word}\n\nThe {word} code is {100 + i}.\n"
            for i, word in enumerate(WORDS)
        },
    )
    model = build_citing_llama(root / "citing-llama")
    with pytest.MonkeyPatch.context() as patch:
        fake = lambda *a, **k: KeywordEncoder(WORDS)  # noqa: E731
        patch.setattr(builder.build, "load_encoder", fake)
        patch.setattr(retrieval.embeddings, "load_encoder", fake)
        project = open_project(
            root / "project", [f"generation.model={model}", "generation.device=cpu"], docs=docs
        )
        project.save_config()
        build(project)
        yield open_engine(project)


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields the /v1 base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def serve(engine):
    """Start a server over the shared engine with the given limits; yields a client factory."""
    with contextlib.ExitStack() as stack:

        def start(limits: ServerLimits | None = None, api_key: str | None = None) -> str:
            return stack.enter_context(running(create_app(engine, limits, api_key)))

        yield start


def client(base_url: str, api_key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)


def ask(word: str) -> list[dict]:
    return [{"role": "user", "content": f"What is the {word} code?"}]


def test_models_lists_the_servable_modes_and_the_default(serve):
    ids = {m.id for m in client(serve()).models.list()}
    assert ids == {"ragtune", "ragtune-base", "ragtune-rag"}  # no adapter: no tuned modes


def test_answer_carries_citations_and_honours_max_tokens(serve):
    earlier = [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "What is the banjo code?"},
        {"role": "assistant", "content": "[1]"},
    ]
    completion = client(serve()).chat.completions.create(
        model="ragtune-rag", messages=earlier + ask("meteor"), max_tokens=3
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert completion.refused is False
    # The model wrote markers and no sentence (three tokens): nothing it said can be checked,
    # so the engine answers with the shown sentence it quotes, cited.
    assert choice.message.content.startswith("\u201c") and choice.message.content.endswith("[1]")
    assert [c["source"] for c in completion.citations] == ["topics/meteor.md"]
    (marker,) = completion.model_citations  # only the last user message was the question
    assert marker == {"n": 1, "source": "topics/meteor.md", "chunk_id": marker["chunk_id"]}


def test_refusal_when_nothing_is_relevant(serve):
    completion = client(serve()).chat.completions.create(
        model="ragtune", messages=[{"role": "user", "content": "Who painted the ceiling?"}]
    )
    assert completion.choices[0].message.content == NO_ANSWER
    assert completion.refused is True
    assert completion.citations == []


def test_streaming_sends_pieces_then_citations(serve):
    stream = client(serve()).chat.completions.create(
        model="ragtune-rag", messages=ask("quartz"), max_tokens=4, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "[1]" * 4
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    last = chunks[-1]
    assert last.choices[0].finish_reason == "length"
    assert [c["source"] for c in last.model_citations] == ["topics/quartz.md"]
    # Four tokens of markers state nothing: the verified answer is the engine's quote.
    verified = last.verified_content
    assert verified.startswith("\u201c") and verified.endswith("[1]")
    assert last.refused is False


def test_api_key_is_required_when_set(serve):
    base_url = serve(api_key=KEY)
    with pytest.raises(openai.AuthenticationError):
        client(base_url, "wrong").models.list()
    missing = httpx.get(f"{base_url}/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert client(base_url, KEY).models.list().data


def test_unknown_model_is_404_with_the_choices(serve):
    with pytest.raises(openai.NotFoundError) as caught:
        client(serve()).chat.completions.create(model="gpt-4o", messages=ask("banjo"))
    assert "ragtune-rag" in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:  # known mode, but no adapter here
        client(serve()).chat.completions.create(model="ragtune-tuned", messages=ask("banjo"))
    assert caught.value.body["code"] == "model_not_found"


def test_oversize_body_and_question_are_413(serve):
    base_url = serve(ServerLimits(max_body_bytes=2048, max_question_chars=100))
    with pytest.raises(openai.APIStatusError) as caught:
        client(base_url).chat.completions.create(
            model="ragtune", messages=[{"role": "user", "content": "x" * 4096}]
        )
    assert caught.value.status_code == 413
    with pytest.raises(openai.APIStatusError) as caught:
        client(base_url).chat.completions.create(
            model="ragtune", messages=[{"role": "user", "content": "why " * 30}]
        )
    assert caught.value.status_code == 413
    assert "limit is 100" in caught.value.message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"model": "ragtune"}', "messages"),
        (b'{"model": "ragtune", "messages": [{"role": "wizard", "content": "x"}]}', "role"),
        (b'{"model": "ragtune", "messages": [{"role": "user", "content": " "}]}', "no question"),
        (b'{"model": "ragtune", "messages": [], "max_tokens": 0}', "max_tokens"),
    ],
)
def test_bad_body_is_400_with_the_reason(serve, body, reason):
    response = httpx.post(
        f"{serve()}/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert reason in response.json()["error"]["message"]


def test_full_queue_is_429_and_the_loop_stays_responsive(serve, engine, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_stream = engine.generator.stream

    def gated(*args, **kwargs):
        entered.set()
        release.wait(10)
        yield from real_stream(*args, **kwargs)

    monkeypatch.setattr(engine.generator, "stream", gated)
    base_url = serve(ServerLimits(max_queue=1))
    first: list = []
    worker = threading.Thread(
        target=lambda: first.append(
            client(base_url).chat.completions.create(
                model="ragtune-rag", messages=ask("falcon"), max_tokens=2
            )
        )
    )
    worker.start()
    try:
        assert entered.wait(10)
        began = time.monotonic()
        assert client(base_url).models.list().data  # answered while the model is busy
        assert time.monotonic() - began < 2
        with pytest.raises(openai.RateLimitError) as caught:
            client(base_url).chat.completions.create(model="ragtune-rag", messages=ask("kettle"))
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert caught.value.body["code"] == "queue_full"
    finally:
        release.set()
        worker.join(10)
    assert first[0].model_citations[0]["source"] == "topics/falcon.md"


def test_twenty_concurrent_clients_each_get_their_own_sources(serve):
    base_url = serve()
    start = threading.Barrier(len(WORDS))
    results: dict[str, list[str]] = {}
    failures: list[BaseException] = []

    def one(index: int, word: str) -> None:
        try:
            api = client(base_url)
            start.wait(10)
            if index % 2:  # half stream, half do not
                chunks = list(
                    api.chat.completions.create(
                        model="ragtune-rag", messages=ask(word), max_tokens=2, stream=True
                    )
                )
                citations = chunks[-1].model_citations
            else:
                citations = api.chat.completions.create(
                    model="ragtune-rag", messages=ask(word), max_tokens=2
                ).model_citations
            results[word] = [c["source"] for c in citations]
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=one, args=(i, w)) for i, w in enumerate(WORDS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert results == {word: [f"topics/{word}.md"] for word in WORDS}


def test_a_client_leaving_mid_stream_frees_the_queue(serve, engine, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_stream = engine.generator.stream

    def gated(*args, **kwargs):
        entered.set()
        release.wait(10)
        yield from real_stream(*args, **kwargs)

    monkeypatch.setattr(engine.generator, "stream", gated)
    base_url = serve(ServerLimits(max_queue=1))
    stream = client(base_url).chat.completions.create(
        model="ragtune-rag", messages=ask("orchid"), max_tokens=50, stream=True
    )
    assert next(iter(stream)).choices[0].delta.role == "assistant"
    assert entered.wait(10)
    stream.close()
    release.set()
    deadline = time.monotonic() + 10
    while True:  # the slot frees once the server notices the client left
        try:
            completion = client(base_url).chat.completions.create(
                model="ragtune-rag", messages=ask("tundra"), max_tokens=2
            )
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the abandoned stream kept its queue slot"
            time.sleep(0.05)
    assert completion.model_citations[0]["source"] == "topics/tundra.md"


def test_ragtune_serve_runs_the_server_program_with_the_key_in_its_environment(
    tmp_path, monkeypatch
):
    from builder import cli

    calls = []
    monkeypatch.setattr(cli.os, "execve", lambda path, argv, env: calls.append((argv, env)))
    code = cli.main(
        [
            "serve",
            str(tmp_path / "p"),
            "--port",
            "9001",
            "--api-key",
            KEY,
            "--set",
            "answer.documents=2",
        ]
    )
    assert code == 0
    ((argv, env),) = calls
    assert argv[1:4] == ["-m", "apps.server", str((tmp_path / "p").resolve())]
    assert argv[argv.index("--port") + 1] == "9001"
    assert argv[-2:] == ["--set", "answer.documents=2"]
    assert KEY not in argv and env["RAGTUNE_API_KEY"] == KEY

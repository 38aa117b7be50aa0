"""The llamacpp backend without loading a model: its settings are checked before anything
loads, its errors say what to do, and each request carries the right prompt tokens and LoRA
scale (a recording stand-in for `xllamacpp.Server`; the real one runs in
tests/test_llamacpp_backend.py, slow tier)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from tiny_models import build_tokenizer

from apps.answer_queue import AnswerQueue
from builder.config import ConfigError, load_config
from builder.engine import AUTO_BACKEND, USES, backend_for
from builder.gguf_export import GGUFExportError, lora_gguf_for
from retrieval.config import GenerationConfig
from retrieval.generation import AdapterError
from retrieval.llamacpp import LlamaCppError, LlamaCppGenerator
from retrieval.models import EMBEDDED_GENERATOR, ModelNotFoundError, resolve_generator_gguf


def problems(tmp_path: Path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "ragtune.toml", list(overrides))
    return "\n".join(caught.value.problems)


def test_the_backend_is_one_of_the_choices(tmp_path):
    found = problems(tmp_path, "generation.backend=vllm")
    assert "generation.backend = 'vllm': choose one of auto, transformers, llamacpp" in found
    assert load_config(tmp_path / "x.toml").generation.backend == "auto"
    assert load_config(tmp_path / "x.toml", ["generation.backend=llamacpp"]).generation.gguf == ""


def test_a_user_model_needs_its_gguf_before_anything_loads(tmp_path):
    found = problems(tmp_path, "generation.backend=llamacpp", "generation.model=/models/qwen")
    assert "needs the GGUF file of '/models/qwen': set generation.gguf" in found
    assert "convert_hf_to_gguf.py" in found
    config = load_config(
        tmp_path / "x.toml",
        ["generation.backend=llamacpp", "generation.model=/m", "generation.gguf=/m.gguf"],
    )
    assert config.generation.gguf == "/m.gguf"


def test_likelihood_quotes_need_the_transformers_backend(tmp_path):
    found = problems(tmp_path, "generation.backend=llamacpp", "answer.quote_by=likelihood")
    assert "set answer.quote_by = 'embedding' or generation.backend = 'transformers'" in found


def test_llama_cpp_settings_are_positive(tmp_path):
    found = problems(tmp_path, "generation.parallel=0", "generation.threads=-1")
    assert "generation.parallel = 0: must be more than 0" in found
    assert "generation.threads = -1: must be 0 or more" in found


def test_a_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="generation.gguf = .*nope.gguf.* is not a file"):
        resolve_generator_gguf("/models/x", str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelNotFoundError, match="set generation.gguf"):
        resolve_generator_gguf("/models/x", "")
    assert resolve_generator_gguf(EMBEDDED_GENERATOR, "").suffix == ".gguf"


def test_a_full_fine_tune_is_refused_with_the_alternatives(tmp_path):
    full = tmp_path / "adapter"
    full.mkdir()
    (full / "config.json").write_text("{}")
    with pytest.raises(
        GGUFExportError, match="full fine-tune.*generation.backend = 'transformers'"
    ):
        lora_gguf_for(full, GenerationConfig())


class RecordingServer:
    """Stands in for `xllamacpp.Server`: records each request, answers with fixed pieces."""

    def __init__(self, pieces: int = 3) -> None:
        self.requests: list[dict] = []
        self.pieces = pieces
        self.cancelled_after: int | None = None

    def handle_completions(self, request, callback=None):
        self.requests.append(request)
        if callback is None:
            return {"choices": [{"text": " whole answer "}]}
        for n in range(self.pieces):
            time.sleep(0.01)
            if callback({"choices": [{"text": f"p{n} "}]}):
                self.cancelled_after = n + 1
                return None
        return None


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_requests_carry_the_template_tokens_and_the_lora_scale(tokenizer):
    server = RecordingServer()
    generator = LlamaCppGenerator(server, tokenizer, GenerationConfig(max_new_tokens=7), True)
    conversation = [{"role": "user", "content": "Refunds?"}]
    assert generator.generate([conversation, conversation], tuned=True) == ["whole answer"] * 2
    generator.generate([conversation])
    rendered = tokenizer.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert [r["prompt"] for r in server.requests] == [ids] * 3
    assert [r["lora"] for r in server.requests] == [[{"id": 0, "scale": 1.0}]] * 2 + [
        [{"id": 0, "scale": 0.0}]
    ]
    assert {r["n_predict"] for r in server.requests} == {7}
    assert all(r["temperature"] == 0 for r in server.requests)


def test_tuned_modes_need_a_lora(tokenizer):
    generator = LlamaCppGenerator(RecordingServer(), tokenizer, GenerationConfig(), False)
    assert not generator.has_tuned
    with pytest.raises(AdapterError, match="ragtune tune"):
        generator.generate([[{"role": "user", "content": "q"}]], tuned=True)
    with pytest.raises(LlamaCppError, match="answer.quote_by = 'embedding'"):
        generator.score_replies([{"role": "user", "content": "q"}], ["a"])


def test_a_stream_cancels_its_request_once_stopped_or_closed(tokenizer):
    server = RecordingServer(pieces=50)
    generator = LlamaCppGenerator(server, tokenizer, GenerationConfig(), False)
    messages = [{"role": "user", "content": "q"}]
    assert list(
        LlamaCppGenerator(RecordingServer(), tokenizer, GenerationConfig(), False).stream(messages)
    ) == ["p0 ", "p1 ", "p2 "]
    stop = threading.Event()
    stream = generator.stream(messages, stop=stop)
    next(stream)
    stop.set()
    list(stream)
    assert server.cancelled_after is not None and server.cancelled_after < 5
    server.cancelled_after = None
    stream = generator.stream(messages)
    next(stream)
    stream.close()
    assert server.cancelled_after is not None and server.cancelled_after < 5


def test_an_error_report_from_llama_cpp_is_raised(tokenizer):
    class Refusing(RecordingServer):
        def handle_completions(self, request, callback=None):
            return {"error": {"code": 400, "message": "the prompt exceeds the context"}}

    generator = LlamaCppGenerator(Refusing(), tokenizer, GenerationConfig(), False)
    with pytest.raises(LlamaCppError, match="exceeds the context"):
        generator.generate([[{"role": "user", "content": "q"}]])


def test_the_answer_queue_runs_as_many_jobs_at_once_as_it_has_workers():
    queue = AnswerQueue(depth=4, workers=2)
    both = threading.Barrier(2, timeout=5)
    futures = [queue.submit(both.wait) for _ in range(2)]
    assert sorted(f.result(timeout=10) for f in futures) == [0, 1]
    queue.close()


@pytest.mark.parametrize(
    ("settings", "adapter", "expected"),
    [
        ([], None, AUTO_BACKEND),
        (["generation.backend=transformers"], None, dict.fromkeys(USES, "transformers")),
        (["generation.backend=llamacpp"], None, dict.fromkeys(USES, "llamacpp")),
        # auto falls back where llama.cpp cannot run the project:
        (["generation.model=/m"], None, dict.fromkeys(USES, "transformers")),
        (["generation.model=/m", "generation.gguf=/m.gguf"], None, AUTO_BACKEND),
        (["answer.quote_by=likelihood"], None, dict.fromkeys(USES, "transformers")),
        ([], "full", dict.fromkeys(USES, "transformers")),
        ([], "lora", AUTO_BACKEND),
    ],
)
def test_auto_picks_the_measured_backend_where_llama_cpp_can_run(
    tmp_path, settings, adapter, expected
):
    config = load_config(tmp_path / "x.toml", settings)
    folder = None
    if adapter is not None:
        folder = tmp_path / adapter
        folder.mkdir()
        (folder / ("adapter_config.json" if adapter == "lora" else "config.json")).write_text("{}")
    assert {use: backend_for(config, folder, use) for use in USES} == expected
    with pytest.raises(
        ValueError, match="unknown use 'train': choose one of ask, serve, eval, tune"
    ):
        backend_for(config, folder, "train")

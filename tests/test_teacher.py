"""Fast tests of the teacher backends (`finetune.teacher`): an OpenAI-compatible endpoint served
by a local HTTP handler, the llama.cpp and Hugging Face backends (a tiny random model), and the
teacher's budget and style settings."""

from __future__ import annotations

import pytest
from fake_openai import fake_chat_server
from synthesis_data import chunk

from finetune.generators import triples
from finetune.synthesis_config import SynthesisConfig
from finetune.teacher import (
    HFTeacher,
    LlamaCppTeacher,
    OpenAITeacher,
    TeacherError,
    make_teacher,
)


def test_teacher_style_auto_follows_the_teacher():
    assert SynthesisConfig().resolved_teacher_style() == "answer_first"
    assert SynthesisConfig(teacher="Qwen/Qwen2.5-7B-Instruct").resolved_teacher_style() == "triples"
    assert "teacher_style" in "\n".join(SynthesisConfig(teacher_style="free").problems())


@pytest.fixture
def chat_server():
    # Replies with the first 10 characters of the last message and a question mark.
    with fake_chat_server(lambda body: body["messages"][-1]["content"][:10] + "?") as server:
        yield server


def test_openai_teacher_posts_greedy_chat_completions(chat_server):
    assert isinstance(make_teacher(chat_server.url, model_name="local-model"), OpenAITeacher)
    teacher = OpenAITeacher(chat_server.url, "local-model", api_key="secret", concurrency=2)
    prompts = [[{"role": "user", "content": f"passage {n}"}] for n in range(3)]
    assert teacher.generate(prompts) == [[f"passage {n}?"] for n in range(3)]
    path, body, auth = chat_server.requests[0]
    assert path == "/v1/chat/completions"
    assert body["model"] == "local-model" and body["temperature"] == 0
    assert "response_format" not in body and auth == "Bearer secret"


def test_openai_teacher_samples_with_a_json_schema(chat_server):
    teacher = OpenAITeacher(chat_server.url, "m", concurrency=2)
    replies = teacher.generate([[{"role": "user", "content": "passage"}]], 3, triples.SCHEMA)
    assert replies == [["passage?"] * 3] and len(chat_server.requests) == 3
    body = chat_server.requests[0][1]
    assert body["temperature"] > 0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == triples.SCHEMA


def test_openai_teacher_unreachable_says_what_to_do():
    teacher = OpenAITeacher("http://127.0.0.1:9/v1", "m", timeout=2)
    with pytest.raises(TeacherError, match="cannot reach the teacher server .* start the server"):
        teacher.generate([[{"role": "user", "content": "hi"}]])


def test_make_teacher_picks_the_backend():
    assert make_teacher("none") is None and make_teacher("") is None
    assert isinstance(make_teacher("https://example.org/v1", "m"), OpenAITeacher)
    local = make_teacher("embedded:SmolLM2-135M-Instruct", device="cpu")
    assert isinstance(local, HFTeacher) and local._model is None  # nothing loaded yet
    gguf = make_teacher("embedded:SmolLM2-135M-Instruct", backend="llamacpp", batch_size=3)
    assert isinstance(gguf, LlamaCppTeacher) and gguf.batch_size == 3 and gguf._generator is None


def test_a_llamacpp_teacher_other_than_the_embedded_one_needs_its_gguf():
    from finetune.synthesis_config import SynthesisConfig

    config = SynthesisConfig(teacher="Qwen/Qwen2.5-0.5B-Instruct", teacher_backend="llamacpp")
    assert any("set teacher_gguf" in problem for problem in config.problems())
    config.teacher_gguf = "/models/qwen2.5-0.5b-instruct-q4_0.gguf"
    assert config.problems() == []
    assert "teacher_backend = 'vllm'" in SynthesisConfig(teacher_backend="vllm").problems()[0]


def test_hf_teacher_generates_greedy_and_sampled_batches(tmp_path):
    from tiny_models import build_tiny_llama

    folder = build_tiny_llama(tmp_path / "tiny")
    teacher = HFTeacher(str(folder), device="cpu", batch_size=2, max_new_tokens=4)
    prompts = [triples.build_prompt(chunk("Short.", chunk_id=f"c{n}"), "doc") for n in range(2)]
    prompts.append(triples.build_prompt(chunk("A much longer passage about rotors. " * 4), "doc"))
    replies = teacher.generate(prompts)
    assert [len(r) for r in replies] == [1, 1, 1] and all(isinstance(r[0], str) for r in replies)
    # Greedy and left-padded: a prompt gives the same reply alone as in a padded batch.
    assert teacher.generate(prompts[2:]) == replies[2:]
    sampled = teacher.generate(prompts, samples=2)
    assert [len(r) for r in sampled] == [2, 2, 2]
    assert teacher.generate(prompts, samples=2) == sampled  # seeded


def test_the_teacher_budget_grows_with_the_corpus_between_its_floor_and_cap():
    config = SynthesisConfig(teacher_questions=160, max_teacher_questions=2000)
    assert config.teacher_budget(21) == 160  # a small corpus still gets the floor
    assert config.teacher_budget(514) == 514  # one a chunk by default
    assert config.teacher_budget(6446) == 2000
    assert SynthesisConfig(teacher_questions=0).teacher_budget(514) == 0  # the teacher is off
    assert config.asking_exactly(4).teacher_budget(6446) == 4
    assert config.asking_exactly(3000).teacher_budget(21) == 3000
    assert "raise max_teacher_questions" in " ".join(
        SynthesisConfig(teacher_questions=300, max_teacher_questions=200).problems()
    )

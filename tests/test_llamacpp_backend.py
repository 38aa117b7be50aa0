"""`generation.backend = 'llamacpp'`: the answer engine on the embedded SmolLM2 GGUF in a real
llama.cpp (xllamacpp), with a seeded random LoRA exported on first use, answering in all four
modes from one load (`slow`: loads the real model)."""

from __future__ import annotations

import threading

import pytest
from conftest import KeywordEncoder

import retrieval.embeddings
from builder.build import build
from builder.engine import open_engine
from retrieval.answer import MODES
from retrieval.answer_record import Answer
from retrieval.llamacpp import LlamaCppGenerator
from retrieval.models import EMBEDDED_GENERATOR, resolve_generator_model

pytestmark = pytest.mark.slow

QUESTIONS = [
    "When must the rotor be replaced?",
    "What does error 217 mean?",
    "How many vacation days do employees earn?",
    "How long must a laptop password be?",
]


@pytest.fixture(scope="module")
def smollm_adapter(tmp_path_factory):
    """A seeded random LoRA on the embedded model, lora_B shrunk so answers stay sentences."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_generator_model(EMBEDDED_GENERATOR)
    folder = tmp_path_factory.mktemp("smollm2-adapter")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    weights = folder / "adapter_model.safetensors"
    factors = load_file(weights)
    save_file({k: v * 0.2 if ".lora_B." in k else v for k, v in factors.items()}, weights)
    return folder


def _open_engine(project_factory, adapter, monkeypatch, parallel: int):
    import xllamacpp

    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    loads = []
    real_server = xllamacpp.Server

    def counted(params):
        loads.append(params)
        return real_server(params)

    monkeypatch.setattr(xllamacpp, "Server", counted)
    project = project_factory(
        overrides=[
            "generation.backend=llamacpp",
            "generation.max_new_tokens=24",
            f"generation.parallel={parallel}",
            "generation.context_tokens=2048",
            "answer.min_relevance=0",
        ]
    )
    build(project, encoder=KeywordEncoder())
    engine = open_engine(project, adapter)
    engine.loads = loads
    return engine


@pytest.fixture
def engine(project_factory, smollm_adapter, monkeypatch):
    """One sequence: llama.cpp lays out each request's cache cells alike, so greedy answers
    repeat exactly. With two, where a request's cells land depends on what the other sequence
    holds, which changes the attention sums' order and can flip a near-tied token."""
    return _open_engine(project_factory, smollm_adapter, monkeypatch, parallel=1)


@pytest.fixture
def parallel_engine(project_factory, smollm_adapter, monkeypatch):
    return _open_engine(project_factory, smollm_adapter, monkeypatch, parallel=2)


def test_one_llama_cpp_load_answers_in_all_four_modes(engine, smollm_adapter):
    assert isinstance(engine.generator, LlamaCppGenerator)
    assert engine.modes == list(MODES)
    lora = smollm_adapter.with_name(smollm_adapter.name + ".lora.gguf")
    assert lora.is_file()  # exported on first use, beside the adapter
    answers = {mode: engine.answer_many(QUESTIONS, mode) for mode in MODES}
    assert len(engine.loads) == 1
    for mode, replies in answers.items():
        assert [a.mode for a in replies] == [mode] * len(QUESTIONS)
        assert all(a.model_answer for a in replies), (mode, [a.model_answer for a in replies])
    for plain, tuned in (("base", "tuned"), ("rag", "rag+tuned")):
        before = [a.model_answer for a in answers[plain]]
        after = [a.model_answer for a in answers[tuned]]
        assert before != after, f"the LoRA scale changed nothing between {plain} and {tuned}"
    # The scale is per request, and the cache does not carry one mode's state into another:
    # the base mode after the tuned ones answers as it did before them.
    again = engine.answer_many(QUESTIONS, "base")
    assert [a.model_answer for a in again] == [a.model_answer for a in answers["base"]]
    # Nor does a prompt cached at one LoRA scale serve the other: rag+tuned asked right after
    # rag (the same prompts) answers as it does after tuned (other prompts).
    engine.answer_many(QUESTIONS, "tuned")
    fresh = engine.answer_many(QUESTIONS, "rag+tuned")
    assert [a.model_answer for a in fresh] == [a.model_answer for a in answers["rag+tuned"]]
    # rag answers are verified against the shown chunks like any other backend's.
    assert all(a.retrieved for a in answers["rag"])


def test_the_lora_gguf_is_reused_until_the_adapter_changes(engine, smollm_adapter):
    from builder.gguf_export import lora_gguf_for

    lora = lora_gguf_for(smollm_adapter, engine.generator.config)
    written = lora.stat().st_mtime_ns
    assert lora_gguf_for(smollm_adapter, engine.generator.config).stat().st_mtime_ns == written
    weights = smollm_adapter / "adapter_model.safetensors"
    weights.touch()
    assert lora_gguf_for(smollm_adapter, engine.generator.config).stat().st_mtime_ns > written


def test_streams_and_stops_at_the_stop_event(engine):
    items = list(engine.stream(QUESTIONS[0], "rag+tuned"))
    assert isinstance(items[-1], Answer)
    pieces = [i for i in items if isinstance(i, str)]
    assert len(pieces) > 1
    stop = threading.Event()
    stream = engine.generator.stream(
        [{"role": "user", "content": "Count from one to five hundred."}],
        max_new_tokens=400,
        stop=stop,
    )
    first = next(stream)
    stop.set()
    rest = list(stream)
    assert len(rest) <= 2, f"{len(rest)} pieces after the stop event"
    assert first


def test_concurrent_requests_are_decoded_together(parallel_engine):
    """Two streams at once on two llama.cpp sequences: both finish, neither waits for the
    other, and neither reads the other's tokens."""
    from difflib import SequenceMatcher

    results: dict[int, str] = {}

    def ask(n: int) -> None:
        results[n] = "".join(
            parallel_engine.generator.stream(
                [{"role": "user", "content": QUESTIONS[n]}], tuned=n == 1
            )
        )

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == [0, 1] and all(results.values())
    alone = parallel_engine.generator.generate([[{"role": "user", "content": QUESTIONS[0]}]])[0]
    # Not equal to the letter: decoded beside another sequence, the attention sums run in
    # another order and a near-tied token may flip. Mixed sequences would share little.
    assert SequenceMatcher(None, results[0].strip(), alone).ratio() > 0.6, (results[0], alone)


def test_parallel_answers_come_back_in_question_order(parallel_engine):
    replies = parallel_engine.answer_many(QUESTIONS, "rag+tuned")
    assert len(parallel_engine.loads) == 1
    assert [a.question for a in replies] == QUESTIONS
    assert all(a.model_answer for a in replies)


def test_the_llamacpp_teacher_writes_greedy_sampled_and_schema_bound_replies():
    import json

    from finetune.teacher import LlamaCppTeacher

    # One sequence at a time: decoded side by side, two equal prompts may flip a near-tied
    # token (see the concurrency test above), and greedy means repeatable here.
    teacher = LlamaCppTeacher(EMBEDDED_GENERATOR, batch_size=1, max_new_tokens=48, seed=1)
    prompt = [{"role": "user", "content": "Ask one question about rotors."}]
    greedy = teacher.generate([prompt, prompt])
    assert len(greedy) == 2 and greedy[0] == greedy[1] and greedy[0][0].strip()
    schema = {
        "type": "object",
        "properties": {"question": {"type": "string"}},
        "required": ["question"],
    }
    sampled = teacher.generate([prompt], samples=2, json_schema=schema)
    assert len(sampled) == 1 and len(sampled[0]) == 2
    for reply in sampled[0]:
        assert isinstance(json.loads(reply)["question"], str)

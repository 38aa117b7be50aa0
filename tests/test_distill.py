"""A budget that learns (`tune.min_steps`), logit distillation (`tune.distill = 'kl'`) and context
distillation (`tune.context_distill`) on tiny random Llamas: a few optimizer steps or one batch
each."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny_models import build_tiny_llama, build_tokenizer, tiny_llama_config
from transformers import TrainerCallback

from finetune.config import TuneConfig
from finetune.data import ChatExample, parse_record, to_record
from finetune.distill import context_teacher_messages, load_teacher, restore_teacher_prompts
from finetune.train import TrainError, build_trainer, train
from retrieval.prompt import PromptDocument, closed_book_messages

EXAMPLES = [
    ChatExample(
        [
            {"role": "system", "content": "Answer from the manual."},
            {"role": "user", "content": f"When is rotor {n} retired?"},
            {"role": "assistant", "content": f"After {n}000 runs."},
        ]
    )
    for n in range(1, 9)
]
ORACLES = [
    PromptDocument("manual.md", f"The rotor {n} is retired after {n}000 runs.") for n in (1, 2)
]
CLOSED_BOOK = [
    ChatExample(
        [
            *closed_book_messages(f"When is rotor {n} retired?"),
            {"role": "assistant", "content": f"After {n}000 runs."},
        ],
        teacher_messages=context_teacher_messages(f"When is rotor {n} retired?", oracle),
    )
    for n, oracle in zip((1, 2), ORACLES)
]


def tiny(**overrides) -> TuneConfig:
    settings = {"max_steps": 2, "batch_size": 4, "save_every_steps": 50, "learning_rate": 1e-2}
    return TuneConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def other_llama(folder: Path, tokenizer=None, seed: int = 1) -> Path:
    """A tiny Llama with other random weights and, unless given, the same tokenizer."""
    from transformers import LlamaForCausalLM

    tokenizer = tokenizer or build_tokenizer()
    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_llama_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def other_teacher(tmp_path_factory) -> Path:
    return other_llama(tmp_path_factory.mktemp("other-teacher"))


# --- min_steps ---------------------------------------------------------------------------------


def test_min_steps_raises_epochs_to_whole_passes():
    config = TuneConfig(batch_size=4, min_steps=60)
    assert config.steps_per_epoch(120) == 30 and config.epochs_for(120) == 2.0
    assert config.epochs_for(30) == 8.0  # 8 steps a pass: 8 passes give 64 >= 60
    assert config.epochs_for(500) == 1.0  # 125 steps at one epoch already
    assert TuneConfig(min_steps=0).epochs_for(30) == 1.0
    assert TuneConfig(max_steps=5).epochs_for(30) == 1.0
    accumulated = TuneConfig(batch_size=2, gradient_accumulation=3, min_steps=10)
    assert accumulated.steps_per_epoch(13) == 3 and accumulated.epochs_for(13) == 4.0
    assert TuneConfig(min_steps=-1).problems() == ["min_steps = -1: must be 0 (off) or more"]


def test_a_small_corpus_trains_at_least_min_steps_and_says_so(tiny_model, tmp_path):
    config = tiny(max_steps=-1, batch_size=2, min_steps=8)  # 8 examples: 4 steps a pass
    result = train(str(tiny_model), EXAMPLES, tmp_path, config)
    assert result.steps == 8 and result.epochs == 2.0
    assert any("epochs raised from 1 to 2" in note for note in result.notes)


# --- logit distillation -----------------------------------------------------------------------


def one_batch_losses(trainer) -> dict:
    """The training loss of one batch with the trainer's distiller, and without it."""
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    distiller = trainer.distiller
    with trainer.accelerator.autocast():  # as the Trainer runs the student, and the teacher
        distilled = trainer.compute_loss(trainer.model, dict(batch))
        trainer.distiller = None
        sft = trainer.compute_loss(trainer.model, dict(batch))
    trainer.distiller = distiller
    return {"distilled": distilled, "sft": sft, "kl": trainer._metrics["train"]["distill_kl"][-1]}


def test_kl_loss_is_sft_at_alpha_0_and_adds_the_teacher_term_above(
    tiny_model, other_teacher, tmp_path
):
    config = tiny(distill="kl", distill_alpha=0.0)
    trainer = build_trainer(
        str(tiny_model), EXAMPLES, tmp_path, config, quiet=True, teacher_path=str(other_teacher)
    )
    losses = one_batch_losses(trainer)
    assert losses["distilled"].item() == pytest.approx(losses["sft"].item(), rel=1e-6)
    assert losses["kl"] > 1e-4  # another model: the distributions differ (near-uniform ones)

    trainer.distiller.alpha = 0.5
    losses = one_batch_losses(trainer)
    loss = losses["distilled"]
    assert math.isfinite(loss.item())
    # Every answer token has the teacher: (1 - a) * SFT + a * T^2 * mean KL.
    expected = 0.5 * losses["sft"].item() + 0.5 * 4 * losses["kl"]
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    trainer.model.zero_grad()
    loss.backward()
    grads = [p.grad for n, p in trainer.model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_kl_is_zero_when_the_teacher_has_the_students_weights(tiny_model, tmp_path):
    config = tiny(distill="kl", distill_alpha=0.5)
    trainer = build_trainer(
        str(tiny_model), EXAMPLES, tmp_path, config, quiet=True, teacher_path=str(tiny_model)
    )
    assert trainer.distiller.teacher.dtype == next(trainer.model.parameters()).dtype
    losses = one_batch_losses(trainer)  # a fresh LoRA adapter (B = 0) leaves the base as is
    assert losses["kl"] == pytest.approx(0.0, abs=1e-6)
    assert losses["distilled"].item() == pytest.approx(0.5 * losses["sft"].item(), rel=1e-4)


def test_kl_trains_a_few_steps(tiny_model, other_teacher, tmp_path):
    result = train(
        str(tiny_model), EXAMPLES, tmp_path, tiny(distill="kl"), teacher_path=str(other_teacher)
    )
    assert result.steps == 2 and all(math.isfinite(loss) for _, loss in result.loss_curve)


def test_a_teacher_with_another_tokenizer_fails_before_training(tiny_model, tmp_path):
    words = ["Pumps hum quietly in the basement.", "Seventeen gauges read zero.", "ok"]
    teacher = other_llama(tmp_path / "teacher", tokenizer=build_tokenizer(words))
    with pytest.raises(TrainError) as error:
        train(
            str(tiny_model),
            EXAMPLES,
            tmp_path / "run",
            tiny(distill="kl"),
            teacher_path=str(teacher),
        )
    message = str(error.value)
    assert "\n" not in message and "another vocabulary" in message
    assert "same tokenizer" in message and "tune.distill = 'none'" in message
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


@pytest.mark.parametrize(
    ("teacher", "says"), [("http://localhost:8000/v1", "endpoint"), (None, "needs a teacher")]
)
def test_an_endpoint_or_missing_teacher_is_refused(tiny_model, tmp_path, teacher, says):
    with pytest.raises(TrainError, match=says):
        train(str(tiny_model), EXAMPLES, tmp_path, tiny(distill="kl"), teacher_path=teacher)


# --- context distillation ---------------------------------------------------------------------


def test_teacher_rows_hold_the_teacher_prompt_and_the_same_answer_tokens(tiny_model, tmp_path):
    examples = [*CLOSED_BOOK, *EXAMPLES[:2]]
    trainer = build_trainer(
        str(tiny_model), examples, tmp_path, tiny(context_distill=True), quiet=True
    )
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = trainer.processing_class
    assert batch["teacher_rows"].sum() == 2
    for row in range(len(examples)):
        student = batch["input_ids"][row][batch["labels"][row] != -100]
        teacher = batch["teacher_input_ids"][row][batch["teacher_labels"][row] != -100]
        assert torch.equal(student, teacher)
        text = tokenizer.decode(
            batch["teacher_input_ids"][row][batch["teacher_attention_mask"][row] == 1]
        )
        assert ("<documents>" in text) == bool(batch["teacher_rows"][row])


class TeacherSpy(TrainerCallback):
    """Records the rows of every forward pass of the base model, and whether the adapter was
    switched off for it (the teacher)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, torch.Tensor]] = []
        self.logs: list[dict] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from peft.tuners.lora import LoraLayer

        lora = next(m for m in model.modules() if isinstance(m, LoraLayer))

        def record(module, args, kwargs):
            self.calls.append((lora.disable_adapters, kwargs["input_ids"].detach().clone()))

        model.get_base_model().model.register_forward_pre_hook(record, with_kwargs=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_context_distillation_trains_with_the_base_model_reading_the_oracle(tiny_model, tmp_path):
    spy = TeacherSpy()
    examples = [*CLOSED_BOOK, *EXAMPLES[:2]]
    config = tiny(context_distill=True, batch_size=2, max_steps=2)
    result = train(str(tiny_model), examples, tmp_path, config, callbacks=[spy])
    assert result.steps == 2 and all(math.isfinite(loss) for _, loss in result.loss_curve)
    assert "context distillation on 2 closed-book example(s)" in result.notes

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    teacher_calls = [ids for disabled, ids in spy.calls if disabled]
    student_calls = [ids for disabled, ids in spy.calls if not disabled]
    assert teacher_calls and student_calls
    for ids in teacher_calls:  # only the closed-book rows, each with its oracle chunk
        for row in ids:
            text = tokenizer.decode(row)
            assert "<documents>" in text and "The rotor" in text and "retired after" in text
    longest_student = max(ids.size(1) for ids in student_calls)
    assert max(ids.size(1) for ids in teacher_calls) > longest_student  # the longer prompt
    assert any("distill_kl" in log for log in spy.logs)


def test_context_distillation_needs_an_adapter_and_no_packing():
    problems = TuneConfig(context_distill=True, method="full", packing=True).problems()
    assert any("method = 'full'" in p and "context_distill = false" in p for p in problems)
    assert any("packing = false" in p for p in problems)


def test_teacher_prompts_come_back_after_the_jsonl_round_trip():
    from finetune.config import RaftConfig
    from finetune.pairs import QAPair
    from finetune.raft import raft_examples
    from retrieval.documents import Chunk
    from retrieval.search import Hit

    text = "The MX-30 rotor is retired after 5000 runs."
    pair = QAPair(
        question="After how many runs is the MX-30 rotor retired?",
        answer=text,
        chunk_id="oracle",
        source="oracle.md",
        page=None,
        section=None,
        evidence=text,
        generator="rules",
    )
    oracle = Hit("oracle.md", None, None, "oracle", 0.5, text)
    made, report = raft_examples(
        [pair] * 6,
        {"oracle": oracle},
        lambda qs, k: [[oracle]] * len(qs),
        1,
        RaftConfig(closed_book=0.99, without_oracle=0.0),
    )
    closed = [e for e in made if e.teacher_messages is not None]
    assert len(closed) == report.closed_book == 6
    assert text in closed[0].teacher_messages[1]["content"]

    read_back = [parse_record(to_record(e, "messages")) for e in made]
    assert all(e.teacher_messages is None for e in read_back)
    chunk = Chunk("oracle", "oracle.md", text, 0, len(text), None, None, 0)
    restored, count = restore_teacher_prompts(read_back, [pair], [chunk])
    assert count == 6
    assert [e.teacher_messages for e in restored] == [e.teacher_messages for e in made]


def test_load_teacher_is_frozen_in_eval(tiny_model):
    teacher = load_teacher(str(tiny_model), torch.float32)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_ragtune_tune_distills_the_closed_book_examples_it_wrote(
    project_factory, tiny_model, monkeypatch, capsys
):
    # The training JSONL holds no teacher prompts: `tune` rebuilds them from the pairs' chunks.
    import json

    from conftest import KeywordEncoder
    from test_tune import DOCS, TINY_RUN

    import retrieval.embeddings
    from builder.build import build
    from builder.cli import main

    monkeypatch.setattr(retrieval.embeddings, "load_encoder", lambda *a, **k: KeywordEncoder())
    settings = [f"generation.model={str(tiny_model)!r}", *TINY_RUN]
    settings += ["tune.context_distill=true", "raft.closed_book=0.9"]
    project = project_factory(DOCS, settings)
    build(project, encoder=KeywordEncoder())
    assert main(["tune", str(project.root)]) == 0
    card = json.loads((project.current_adapter().parent / "run_card.json").read_text())
    assert card["format"]["closed_book"] > 0
    assert (
        f"context distillation on {card['format']['closed_book']} closed-book example(s)"
        in (card["notes"])
    )
    assert card["steps"] == 2 and card["epochs"] > 0
    assert "trained 2 optimizer steps (" in capsys.readouterr().err

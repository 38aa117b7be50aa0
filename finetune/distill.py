"""Distillation on the answer tokens: the student also learns a teacher's next-token distribution.

Two teachers, one loss. On every answer token that has a teacher,
    loss = (1 - alpha) * cross-entropy + alpha * T^2 * KL(teacher_T || student_T)
where _T is the softmax at temperature T (Hinton et al. 2015: T^2 keeps the gradient scale of
the soft term independent of T); tokens without a teacher keep the plain cross-entropy. Both
are summed and divided by the answer-token count, as `AnswerLossTrainer` does for the SFT loss,
so gradient accumulation sees one token-mean loss.

- logit distillation (`tune.distill = 'kl'`): a separate frozen model with the student's
  tokenizer reads the student's own prompt; every answer token has a teacher;
- context distillation (`tune.context_distill`): for a closed-book example (the question alone)
  the teacher is the base model, i.e. the student with its adapter switched off, reading the
  RAG prompt with the oracle chunk (`ChatExample.teacher_messages`). Answer tokens are identical
  in both rows, so the i-th answer position of the student row is aligned with the i-th of the
  teacher row.

torch is imported inside the functions: `finetune.raft` imports the prompt helpers below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finetune.data import ChatExample
from finetune.formatting import TEACHER_PROMPT_IDS
from retrieval.config import StyleConfig
from retrieval.prompt import PromptDocument, closed_book_system, rag_messages

if TYPE_CHECKING:
    from finetune.pairs import QAPair
    from retrieval.documents import Chunk

TEACHER_BATCH = ("teacher_input_ids", "teacher_attention_mask", "teacher_labels", "teacher_rows")
"""The batch keys `TeacherPromptCollator` adds; the student's forward never sees them."""


def context_teacher_messages(
    question: str, oracle: PromptDocument, style: StyleConfig | None = None
) -> list[dict[str, str]]:
    """What the context-distillation teacher reads for a closed-book question: the answer
    engine's RAG prompt holding the oracle chunk alone (no distractors: the teacher should know
    the answer, and a one-chunk prompt keeps its forward pass short)."""
    return rag_messages(question, [oracle], style)


def restore_teacher_prompts(
    examples: list[ChatExample],
    pairs: Sequence[QAPair],
    chunks: Sequence[Chunk],
    style: StyleConfig | None = None,
) -> tuple[list[ChatExample], int]:
    """Give the closed-book examples read back from a training JSONL their teacher prompts.

    The JSONL holds the conversations only (it is also what other trainers read), so a
    closed-book example is matched to its pair by question and answer, and the prompt is built
    again from the pair's chunk, as `finetune.raft` built it.

    Returns:
        The examples (closed-book ones with `teacher_messages` set) and how many got one.
    """
    by_id = {chunk.chunk_id: chunk for chunk in chunks}
    oracles = {}
    for pair in pairs:
        chunk = by_id.get(pair.chunk_id)
        if chunk is not None:
            document = PromptDocument.of(chunk)
            oracles.setdefault((pair.question.strip(), pair.answer.strip()), document)
    restored, count = [], 0
    for example in examples:
        messages = example.messages
        closed = len(messages) == 3 and messages[0] == {
            "role": "system",
            "content": closed_book_system(style),
        }
        oracle = oracles.get((messages[1]["content"], messages[2]["content"])) if closed else None
        if oracle is None or example.teacher_messages is not None:
            restored.append(example)
            continue
        question = messages[1]["content"]
        restored.append(ChatExample(messages, context_teacher_messages(question, oracle, style)))
        count += 1
    return restored, count


def vocabulary_problem(student: Any, teacher: Any, teacher_name: str) -> str | None:
    """Why the teacher's tokenizer cannot be distilled from, or None: the KL compares the two
    distributions id by id, so both must number the same tokens the same way."""
    if student.get_vocab() == teacher.get_vocab():
        return None
    return (
        f"the distillation teacher {teacher_name} has another vocabulary than the student "
        f"({len(teacher)} vs {len(student)} tokens, or the same tokens numbered differently), so "
        "their logits cannot be compared: use a teacher of the student's family (the same "
        "tokenizer), or set tune.distill = 'none'"
    )


def load_teacher(path: str, dtype: Any) -> Any:
    """The frozen teacher model in `dtype` (the student's), in eval mode."""
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return teacher.eval().requires_grad_(False)


def token_kl(student_logits: Any, teacher_logits: Any, temperature: float) -> Any:
    """KL(teacher || student) of the temperature-softened distributions, one value per token.

    Args:
        student_logits, teacher_logits: (tokens, vocab); a wider head (padded vocabulary rows
            that no token maps to) is cut to the narrower one.
        temperature: T > 0.
    """
    import torch.nn.functional as F

    width = min(student_logits.size(-1), teacher_logits.size(-1))
    student = F.log_softmax(student_logits[:, :width].float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits[:, :width].float() / temperature, dim=-1)
    return (teacher.exp() * (teacher - student)).sum(-1)


@dataclass
class TeacherPromptCollator:
    """trl's collator, plus the teacher's rows for the examples that carry a teacher prompt.

    A teacher row is the teacher prompt followed by the student row's answer tokens, labelled as
    in the student row, so both rows hold the same answer tokens in the same order. Rows without
    a teacher prompt repeat the student's row (a `kl` teacher reads it; otherwise it is skipped).
    """

    inner: Callable[[list[dict[str, Any]]], dict[str, Any]]
    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from torch.nn.utils.rnn import pad_sequence

        prompts = [list(example.get(TEACHER_PROMPT_IDS) or []) for example in examples]
        batch = self.inner(
            [{k: v for k, v in example.items() if k != TEACHER_PROMPT_IDS} for example in examples]
        )
        ids, labels = [], []
        for example, prompt in zip(examples, prompts):
            row_ids, row_labels = list(example["input_ids"]), list(example["labels"])
            if prompt:
                start = next(i for i, label in enumerate(row_labels) if label != -100)
                row_ids = prompt + row_ids[start:]
                row_labels = [-100] * len(prompt) + row_labels[start:]
            ids.append(torch.tensor(row_ids))
            labels.append(torch.tensor(row_labels))
        batch["teacher_input_ids"] = pad_sequence(ids, True, self.pad_token_id)
        batch["teacher_attention_mask"] = pad_sequence(
            [torch.ones_like(row) for row in ids], True, 0
        )
        batch["teacher_labels"] = pad_sequence(labels, True, -100)
        batch["teacher_rows"] = torch.tensor([bool(prompt) for prompt in prompts])
        return batch


@dataclass
class Distiller:
    """The distillation term of the training loss.

    Args:
        temperature: T of both softmaxes.
        alpha: weight of the KL term on the tokens that have a teacher.
        teacher: a frozen model of the student's vocabulary that reads every row (its teacher
            prompt where it has one); None: the student with its adapter switched off reads the
            rows that have a teacher prompt (context distillation).
    """

    temperature: float
    alpha: float
    teacher: Any = None

    def loss_sum(
        self,
        model: Any,
        peft_model: Any,
        inputs: dict[str, Any],
        teacher_batch: dict[str, Any],
        logits: Any,
        picked: Any,
        autocast: Callable[[], AbstractContextManager] = nullcontext,
    ) -> tuple[Any, Any]:
        """The summed loss of the answer tokens, and the mean KL (None where no row had a
        teacher).

        Args:
            model: the student as the Trainer calls it (possibly wrapped for DDP).
            peft_model: the unwrapped student, whose adapter `disable_adapter()` switches off.
            inputs: the student's forward inputs (labels included).
            teacher_batch: the `TEACHER_BATCH` entries of the batch; empty without teacher
                prompts.
            logits: (batch, kept, vocab), the student's logits at the kept positions.
            picked: (batch, kept), the token each kept position predicts, -100 where none.
            autocast: the student's mixed-precision context, for a separate teacher.
        """
        import torch
        import torch.nn.functional as F

        ce = F.cross_entropy(
            logits.float().flatten(0, 1), picked.flatten(), ignore_index=-100, reduction="none"
        ).view_as(picked)  # 0 where picked is -100
        if self.teacher is not None:
            rows = torch.ones(picked.size(0), dtype=torch.bool, device=picked.device)
        elif teacher_batch:
            rows = teacher_batch["teacher_rows"]
        else:
            return ce.sum(), None
        if not rows.any():
            return ce.sum(), None
        answer = picked[rows] != -100  # (rows, kept)
        student = logits[rows][answer]  # (answer tokens, vocab), row by row
        teacher = self._teacher_logits(model, peft_model, inputs, teacher_batch, rows, autocast)
        if teacher.size(0) != student.size(0):
            raise RuntimeError(
                f"distillation: {student.size(0)} answer tokens in the student rows but "
                f"{teacher.size(0)} in the teacher rows; the rows must hold the same answer"
            )
        kl = token_kl(student, teacher, self.temperature)
        covered = ce[rows][answer].sum()
        total = ce.sum() - self.alpha * covered + self.alpha * self.temperature**2 * kl.sum()
        return total, kl.detach().mean()

    def _teacher_logits(self, model, peft_model, inputs, teacher_batch, rows, autocast):
        """The teacher's logits at its answer positions, (answer tokens, vocab), row by row."""
        import torch

        if teacher_batch:
            length = int(teacher_batch["teacher_attention_mask"][rows].sum(1).max())
            forward = {
                "input_ids": teacher_batch["teacher_input_ids"][rows, :length],
                "attention_mask": teacher_batch["teacher_attention_mask"][rows, :length],
            }
            labels = teacher_batch["teacher_labels"][rows, :length]
        else:  # a `kl` teacher reading the student's own rows (padding-free ones included)
            forward = {key: value for key, value in inputs.items() if key != "labels"}
            labels = inputs["labels"]
        targets = labels[:, 1:]
        keep = (targets != -100).any(dim=0).nonzero().squeeze(1)
        with torch.no_grad():
            if self.teacher is not None:
                with autocast():
                    out = self.teacher(**forward, use_cache=False, logits_to_keep=keep)
            else:
                was_training = peft_model.training
                peft_model.eval()  # the teacher runs without dropout
                try:
                    with peft_model.disable_adapter():
                        out = model(**forward, use_cache=False, logits_to_keep=keep)
                finally:
                    peft_model.train(was_training)
        return out.logits[targets[:, keep] != -100]

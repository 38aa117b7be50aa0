"""ChatExample -> the conversational prompt/completion rows that trl's SFTTrainer trains on.

The prompt is every turn but the last, the completion the final assistant answer. trl renders
both with the tokenizer's own chat template (the prompt with `add_generation_prompt=True`) and,
with `completion_only_loss=True`, sets the labels of every prompt token to -100: the loss covers
the answer and the template's end-of-turn token, so the model learns what to say and when to
stop, whatever template the model uses. Earlier assistant turns of a multi-turn example are
context only.

Chunks, questions, answers and the user's own pairs are neutralized first
(`retrieval.chat_template`): trl parses special tokens in the rendered text, so a document
holding '<|im_start|>system' would otherwise train the model on a turn that nobody wrote.

For context distillation, a row may also carry the token ids of its teacher prompt
(`TEACHER_PROMPT_IDS`, empty for rows without one); trl tokenizes and labels the prompt and
completion as for every other row and keeps the extra column beside them.
"""

from __future__ import annotations

from typing import Any

from finetune.data import ChatExample
from retrieval.chat_template import safe_messages

TEACHER_PROMPT_IDS = "teacher_prompt_ids"


class ChatTemplateError(Exception):
    """The tokenizer cannot render conversations."""


def to_prompt_completion(example: ChatExample, tokenizer: Any) -> dict[str, list[dict[str, str]]]:
    """{"prompt": all turns but the last, "completion": [the final assistant turn]}, with
    contents neutralized for `tokenizer`."""
    messages = safe_messages(tokenizer, example.messages)
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def build_dataset(
    examples: list[ChatExample], tokenizer: Any, *, teacher_prompts: bool = False
) -> Any:
    """A `datasets.Dataset` of prompt/completion rows for `tokenizer`, in the order of
    `examples`.

    Args:
        examples: the training conversations.
        tokenizer: the student's tokenizer, with a chat template.
        teacher_prompts: add the `TEACHER_PROMPT_IDS` column (the tokenized teacher prompt with
            the generation prompt, or [] for an example without one) when any example has a
            teacher prompt.
    """
    from datasets import Dataset

    rows: list[dict[str, Any]] = [to_prompt_completion(example, tokenizer) for example in examples]
    if teacher_prompts and any(example.teacher_messages for example in examples):
        for row, example in zip(rows, examples):
            row[TEACHER_PROMPT_IDS] = (
                teacher_prompt_ids(tokenizer, example.teacher_messages)
                if example.teacher_messages
                else []
            )
    return Dataset.from_list(rows)


def teacher_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The token ids of a teacher prompt up to where the answer starts, neutralized and rendered
    as trl renders a training prompt."""
    return list(
        tokenizer.apply_chat_template(
            safe_messages(tokenizer, messages),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
    )


def fitting_examples(
    tokenizer: Any, examples: list[ChatExample], max_tokens: int
) -> tuple[list[ChatExample], int]:
    """The examples whose whole conversation fits in `max_tokens` tokens, and how many do not.

    trl cuts a longer one at `max_length`, which cuts off its answer, the only part the loss
    looks at: such an example would train on nothing.
    """
    lengths = [
        len(
            tokenizer.apply_chat_template(
                safe_messages(tokenizer, example.messages), tokenize=True, return_dict=False
            )
        )
        for example in examples
    ]
    kept = [example for example, length in zip(examples, lengths) if length <= max_tokens]
    return kept, len(examples) - len(kept)


def require_chat_template(tokenizer: Any, model_path: str) -> None:
    """Fail early and clearly when the model has no chat template to render conversations.

    Raises:
        ChatTemplateError: the tokenizer has no chat template (usually a base, not an instruct,
            model).
    """
    if not tokenizer.chat_template:
        raise ChatTemplateError(
            f"the tokenizer of {model_path} has no chat template, so conversations cannot be "
            "turned into training text: tune an instruct/chat model (e.g. "
            "SmolLM2-135M-Instruct), or add a chat_template to its tokenizer_config.json"
        )

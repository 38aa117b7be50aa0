"""ChatExample -> the conversational prompt/completion rows that trl's SFTTrainer trains on.

The prompt is every turn but the last, the completion the final assistant answer. trl renders
both with the tokenizer's own chat template (the prompt with `add_generation_prompt=True`) and,
with `completion_only_loss=True`, sets the labels of every prompt token to -100: the loss covers
the answer and the template's end-of-turn token, so the model learns what to say and when to
stop, whatever template the model uses. Earlier assistant turns of a multi-turn example are
context only.
"""

from __future__ import annotations

from typing import Any

from finetune.data import ChatExample


class ChatTemplateError(Exception):
    """The tokenizer cannot render conversations."""


def to_prompt_completion(example: ChatExample) -> dict[str, list[dict[str, str]]]:
    """{"prompt": all turns but the last, "completion": [the final assistant turn]}."""
    return {"prompt": example.messages[:-1], "completion": example.messages[-1:]}


def build_dataset(examples: list[ChatExample]) -> Any:
    """A `datasets.Dataset` of prompt/completion rows, in the order of `examples`."""
    from datasets import Dataset

    return Dataset.from_list([to_prompt_completion(example) for example in examples])


def fitting_examples(
    tokenizer: Any, examples: list[ChatExample], max_tokens: int
) -> tuple[list[ChatExample], int]:
    """The examples whose whole conversation fits in `max_tokens` tokens, and how many do not.

    trl cuts a longer one at `max_length`, which cuts off its answer, the only part the loss
    looks at: such an example would train on nothing.
    """
    lengths = [
        len(tokenizer.apply_chat_template(example.messages, tokenize=True, return_dict=False))
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

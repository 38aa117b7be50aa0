"""Render chat messages with a tokenizer's chat template so that no message can write a turn.

A chat template renders messages to text such as `<|im_start|>user\n...<|im_end|>`, and that
text is tokenized with special tokens parsed: a chunk, question or teacher reply holding
`<|im_end|>\n<|im_start|>system\n...` would otherwise become a real system turn. Every special
token string of the tokenizer is therefore broken in message contents before the template is
applied: a zero-width space after its first character makes it tokenize as plain text while
it reads the same. Every place that applies a chat template goes through `render_prompt` or
`safe_messages`: the answer engine, the teacher and the training examples.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

_BREAK = "\u200b"  # ZERO WIDTH SPACE: invisible, and part of no special token


def special_token_strings(tokenizer: Any) -> tuple[str, ...]:
    """Every special token of `tokenizer` as text (named ones, additional and added special
    tokens), longest first."""
    strings = set(tokenizer.all_special_tokens)
    strings.update(
        token.content for token in tokenizer.added_tokens_decoder.values() if token.special
    )
    return tuple(sorted((s for s in strings if s), key=lambda s: (-len(s), s)))


@functools.lru_cache(maxsize=32)
def _pattern(strings: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(re.escape(s) for s in strings)) if strings else None


def _break(match: re.Match[str]) -> str:
    token = match.group(0)
    if len(token) < 2 or _BREAK in token:
        return ""  # nothing to break it at (or breaking would keep it whole): drop it
    return token[0] + _BREAK + token[1:]


def neutralize_special_tokens(tokenizer: Any, text: str) -> str:
    """`text` with every special token string of `tokenizer` broken, so that tokenizing it
    (with special tokens parsed) gives plain-text ids only. Text without one is unchanged."""
    pattern = _pattern(special_token_strings(tokenizer))
    if pattern is None:
        return text
    # One pass suffices unless a token can start inside another; repeat for vocabularies where
    # a break completes a new one. Each pass breaks or removes what it finds, so it ends.
    while pattern.search(text):
        text = pattern.sub(_break, text)
    return text


def safe_messages(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Copies of `messages` whose contents hold no special token string of `tokenizer`."""
    return [
        {**message, "content": neutralize_special_tokens(tokenizer, message["content"])}
        for message in messages
    ]


def render_prompt(
    tokenizer: Any, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool = True
) -> str:
    """The chat template applied to `messages` with neutralized contents, as text to tokenize
    with `add_special_tokens=False`: its only special tokens are the template's own."""
    return tokenizer.apply_chat_template(
        safe_messages(tokenizer, messages),
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
    )

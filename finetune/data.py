"""Training pairs from the user: read JSON-lines in the alpaca, ShareGPT or OpenAI-messages
format into one shape, `ChatExample`, and write them back out for other trainers.

Every record is checked on its own and every problem is reported at once with its line number,
so that a user fixes a file in one pass instead of one error per run.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.jsonl import decode_json_lines, read_utf8

ROLES = ("system", "user", "assistant")
EXPORT_FORMATS = ("messages", "sharegpt", "alpaca")
# ShareGPT speakers as LLaMA-Factory and ms-swift write them, mapped to our roles.
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
_OPENAI_ROLES = {role: role for role in ROLES}
_SHAREGPT_EXPORT = {"system": "system", "user": "human", "assistant": "gpt"}


@dataclass
class Grounding:
    """What a cited RAFT example's answer must hold and where it is: the check an answer in
    the model's own words passes before it replaces the target (`finetune.own_answers`)."""

    question: str
    """The question the example asks."""
    chunks: list[str]
    """The text of each shown chunk, numbered from 1 as in the prompt."""
    key_fact: str
    """What the answer must state (the pair's span, else its answer)."""
    holders: list[int]
    """The shown chunks that hold the pair's evidence."""
    evidence: str
    """The sentence(s) of the oracle chunk that state the key fact."""
    focused_prompt: list[dict[str, str]] | None = None
    """The same question shown with the oracle chunk alone, no distractors."""
    whole_sentence: bool = False
    """The key fact is a whole answer sentence (no span was chosen), which an answer may say in
    other words."""
    verdict: bool = False
    """The key fact is a yes/no label ('yes', 'nein'), which the answer must open with."""


@dataclass
class ChatExample:
    """One training conversation: an optional system turn, then user and assistant turns in
    alternation, ending with the assistant answer the model learns to write."""

    messages: list[dict[str, str]]
    """[{"role": "system" | "user" | "assistant", "content": "..."}, ...]"""
    teacher_messages: list[dict[str, str]] | None = None
    """The prompt a context-distillation teacher reads in place of `messages[:-1]` (for a
    closed-book example: the RAG prompt with its oracle chunk), or None. Not written to JSONL."""
    grounding: Grounding | None = None
    """For a cited RAFT example, what its answer must hold; None otherwise. Not written."""


class DataFormatError(Exception):
    """A training file with unusable records; `problems` lists every one as 'line N: reason'."""

    def __init__(
        self,
        path: Path,
        problems: list[str],
        hint: str = "fix these lines or pass --skip-bad-lines",
    ) -> None:
        self.path = path
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{path}: {count}:\n{listing}\n{hint}")


def read_examples(path: Path, *, skip_bad: bool = False) -> tuple[list[ChatExample], list[str]]:
    """Read training conversations from a JSON-lines file or a JSON file holding a list.

    The format is detected per record: alpaca (`instruction`, optional `input`, `output`,
    optional `system`), ShareGPT (`conversations` of `from`/`value`) or OpenAI (`messages` of
    `role`/`content`). Blank lines are ignored.

    Args:
        path: the .jsonl (or .json) file.
        skip_bad: keep the valid records and return the problems instead of raising.

    Returns:
        The examples in file order, and the problems ('line N: reason'; 'item N: reason' for a
        JSON list), empty unless `skip_bad`.

    Raises:
        FileNotFoundError: `path` does not exist.
        DataFormatError: a record is unusable (unless `skip_bad`), or no record is usable.
    """
    path = Path(path)
    try:
        text = read_utf8(path)
    except ValueError as error:
        raise DataFormatError(path, [str(error)], "save it as UTF-8") from error
    examples: list[ChatExample] = []
    problems: list[str] = []
    for where, record in _records(path, text, problems):
        try:
            examples.append(parse_record(record))
        except ValueError as error:
            problems.append(f"{where}: {error}")
    if problems and not skip_bad:
        raise DataFormatError(path, problems)
    if not examples:
        reason = "no training examples: every record is unusable" if problems else "empty file"
        raise DataFormatError(
            path,
            [*problems, reason],
            "give at least one record in the alpaca, ShareGPT or OpenAI messages format",
        )
    return examples, problems


def _records(path: Path, text: str, problems: list[str]) -> Iterable[tuple[str, Any]]:
    """Yield ('line N' or 'item N', decoded record); undecodable lines go to `problems`."""
    # A JSON list starts with '['; a JSON-lines record is an object, so it never does.
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataFormatError(
                path, [f"line {error.lineno}: not valid JSON ({error.msg})"], "fix the JSON list"
            ) from error
        yield from ((f"item {number}", item) for number, item in enumerate(items, 1))
        return
    yield from ((f"line {number}", record) for number, record in decode_json_lines(text, problems))


def parse_record(record: Any) -> ChatExample:
    """Turn one decoded alpaca, ShareGPT or OpenAI-messages record into a ChatExample.

    Raises:
        ValueError: the record matches no format or breaks its rules; the message says which.
    """
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = _turns(record["messages"], "messages", "role", "content", _OPENAI_ROLES)
    elif "conversations" in record:
        messages = _turns(
            record["conversations"], "conversations", "from", "value", _SHAREGPT_ROLES
        )
        if record.get("system") is not None:  # LLaMA-Factory's optional system column
            if messages[0]["role"] == "system":
                raise ValueError("a 'system' key and a system turn: keep one of them")
            messages.insert(0, {"role": "system", "content": _text(record, "system")})
    elif "instruction" in record or "output" in record:
        messages = _alpaca(record)
    else:
        raise ValueError(
            "unknown format: expected alpaca (instruction/output), ShareGPT (conversations) or "
            f"OpenAI (messages) keys, got {sorted(record)}"
        )
    return ChatExample(messages=messages)


def _text(record: dict, key: str, where: str = "", allow_empty: bool = False) -> str:
    value = record.get(key)
    name = f"{where}.{key}" if where else key
    if key not in record:
        raise ValueError(f"missing {name!r}")
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name} is empty")
    return value


def _alpaca(record: dict) -> list[dict[str, str]]:
    user = _text(record, "instruction")
    extra = _text(record, "input", allow_empty=True) if record.get("input") is not None else ""
    if extra.strip():
        user = f"{user}\n\n{extra}"
    answer = _text(record, "output")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    system = _text(record, "system", allow_empty=True) if record.get("system") is not None else ""
    if system.strip():
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _turns(
    turns: Any, field: str, role_key: str, content_key: str, roles: dict[str, str]
) -> list[dict[str, str]]:
    """Check a list of turns and map its speakers to our roles."""
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{field}: expected a non-empty list of turns")
    messages = []
    for index, turn in enumerate(turns):
        where = f"{field}[{index}]"
        if not isinstance(turn, dict):
            raise ValueError(f"{where}: expected an object, got {type(turn).__name__}")
        speaker = turn.get(role_key)
        if not isinstance(speaker, str) or speaker not in roles:
            raise ValueError(
                f"{where}.{role_key} = {speaker!r}: expected one of {', '.join(roles)}"
            )
        messages.append({"role": roles[speaker], "content": _text(turn, content_key, where)})
    _check_order(messages, field)
    return messages


def _check_order(messages: list[dict[str, str]], field: str) -> None:
    """A system turn only first, then user/assistant in alternation, ending with the answer."""
    start = 1 if messages[0]["role"] == "system" else 0
    for index, message in enumerate(messages[start:], start):
        expected = "user" if (index - start) % 2 == 0 else "assistant"
        if message["role"] == "system":
            raise ValueError(f"{field}[{index}]: a system turn may only come first")
        if message["role"] != expected:
            raise ValueError(
                f"{field}[{index}]: expected the {expected}'s turn here; turns must alternate "
                "user, assistant"
            )
    if len(messages) == start:
        raise ValueError(f"{field}: no user turn")
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last turn must be the assistant's")


def to_record(example: ChatExample, fmt: str) -> dict[str, Any]:
    """One example as a JSON-ready record in `fmt` ('messages', 'sharegpt' or 'alpaca').

    Raises:
        ValueError: unknown `fmt`, or a multi-turn example asked for as alpaca.
    """
    if fmt == "messages":
        return {"messages": [dict(message) for message in example.messages]}
    if fmt == "sharegpt":
        return {
            "conversations": [
                {"from": _SHAREGPT_EXPORT[m["role"]], "value": m["content"]}
                for m in example.messages
            ]
        }
    if fmt == "alpaca":
        system = [m["content"] for m in example.messages if m["role"] == "system"]
        turns = [m for m in example.messages if m["role"] != "system"]
        if len(turns) != 2:
            raise ValueError(
                f"an example with {len(turns) // 2} question/answer rounds does not fit alpaca, "
                "which holds one: export as messages or sharegpt"
            )
        record = {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
        if system:
            record["system"] = system[0]
        return record
    raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")


def write_examples_jsonl(examples: list[ChatExample], path: Path, fmt: str = "messages") -> None:
    """Write `examples` as JSON lines that LLaMA-Factory and ms-swift read.

    'messages' is the OpenAI layout (ms-swift's native one), 'sharegpt' uses `from` human/gpt/
    system and `value`, 'alpaca' holds single-turn examples only. The file is replaced
    atomically: a crash leaves the old file or the new one, never half of it.

    Args:
        examples: the conversations to write.
        path: the target .jsonl file; its folder must exist.
        fmt: 'messages', 'sharegpt' or 'alpaca'.

    Raises:
        ValueError: unknown `fmt`, or a multi-turn example written as alpaca.
    """
    path = Path(path)
    lines = [json.dumps(to_record(example, fmt), ensure_ascii=False) for example in examples]
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # Created exclusively, never through a link: a symlink planted at this predictable name
    # must not redirect the write. What is there (a planted link, or what a killed writer with
    # this pid left) is removed first; unlinking a link never touches its target.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
    )
    with open(descriptor, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{line}\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)

"""Reading training pairs in the alpaca, ShareGPT and OpenAI formats, and writing them back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.data import (
    ChatExample,
    DataFormatError,
    parse_record,
    read_examples,
    write_examples_jsonl,
)

QA = [{"role": "user", "content": "How long is the warranty?"}]
QA += [{"role": "assistant", "content": "Two years."}]
SYSTEM = {"role": "system", "content": "Answer from the manual."}
MULTI_TURN = [
    SYSTEM,
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello, ask away."},
    *QA,
]


def write_lines(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"instruction": "How long is the warranty?", "output": "Two years."}, QA),
        (
            {
                "instruction": "Summarise.",
                "input": "The rotor retires after 5000 runs.",
                "output": "5000 runs.",
                "system": "Answer from the manual.",
            },
            [
                SYSTEM,
                {"role": "user", "content": "Summarise.\n\nThe rotor retires after 5000 runs."},
                {"role": "assistant", "content": "5000 runs."},
            ],
        ),
        ({"instruction": QA[0]["content"], "input": "", "output": "Two years.", "system": ""}, QA),
        (
            {
                "conversations": [
                    {"from": "system", "value": SYSTEM["content"]},
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello, ask away."},
                    {"from": "user", "value": QA[0]["content"]},
                    {"from": "assistant", "value": "Two years."},
                ]
            },
            MULTI_TURN,
        ),
        (
            {
                "system": SYSTEM["content"],
                "conversations": [
                    {"from": "human", "value": QA[0]["content"]},
                    {"from": "gpt", "value": "Two years."},
                ],
            },
            [SYSTEM, *QA],
        ),
        ({"messages": MULTI_TURN, "weight": 1}, MULTI_TURN),
    ],
    ids=[
        "alpaca",
        "alpaca-input-system",
        "alpaca-empty-extras",
        "sharegpt",
        "sharegpt-system-key",
        "messages",
    ],
)
def test_every_format_parses_to_chat_messages(record, expected):
    assert parse_record(record).messages == expected


def test_a_file_mixing_formats_reads_in_order(tmp_path):
    path = write_lines(
        tmp_path / "pairs.jsonl",
        [
            {"instruction": "How long is the warranty?", "output": "Two years."},
            "",
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]},
            {"messages": QA},
        ],
    )
    examples, problems = read_examples(path)
    assert problems == []
    assert [e.messages for e in examples] == [
        QA,
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
        QA,
    ]


BROKEN = [
    {"instruction": "ok", "output": "fine"},  # 1
    "{not json",  # 2
    {"foo": 1},  # 3
    {"instruction": "no answer"},  # 4
    {"instruction": "q", "output": ""},  # 5
    {"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]},  # 6
    {"conversations": [{"from": "human", "value": "q"}]},  # 7
    {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}]},  # 8
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}]},  # 9
    {"messages": [{"role": "assistant", "content": "a"}]},  # 10
    {"messages": []},  # 11
    [1, 2],  # 12
    {"messages": QA},  # 13
    {"messages": [SYSTEM, {"role": "user", "content": "q"}, SYSTEM]},  # 14
]
BROKEN_PROBLEMS = [
    "line 2: not valid JSON (Expecting property name enclosed in double quotes)",
    "line 3: unknown format: expected alpaca (instruction/output), ShareGPT (conversations) or "
    "OpenAI (messages) keys, got ['foo']",
    "line 4: missing 'output'",
    "line 5: output is empty",
    "line 6: conversations[1].from = 'bot': expected one of human, user, gpt, assistant, system",
    "line 7: the last turn must be the assistant's",
    "line 8: messages[1]: expected the assistant's turn here; turns must alternate user, assistant",
    "line 9: messages[1].content: expected a string, got int",
    "line 10: messages[0]: expected the user's turn here; turns must alternate user, assistant",
    "line 11: messages: expected a non-empty list of turns",
    "line 12: expected a JSON object, got list",
    "line 14: messages[2]: a system turn may only come first",
]


def test_broken_lines_are_all_reported_with_their_line_numbers(tmp_path):
    path = write_lines(tmp_path / "pairs.jsonl", BROKEN)
    with pytest.raises(DataFormatError) as caught:
        read_examples(path)
    assert caught.value.problems == BROKEN_PROBLEMS
    message = str(caught.value)
    assert message.startswith(f"{path}: 12 problems:")
    assert all(problem in message for problem in BROKEN_PROBLEMS)
    assert message.endswith("fix these lines or pass --skip-bad-lines")


def test_skip_bad_keeps_the_good_lines_and_returns_the_problems(tmp_path):
    path = write_lines(tmp_path / "pairs.jsonl", BROKEN)
    examples, problems = read_examples(path, skip_bad=True)
    assert problems == BROKEN_PROBLEMS
    assert [e.messages for e in examples] == [
        [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "fine"}],
        QA,
    ]


def test_a_json_list_file_reports_items(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"messages": QA}, {"messages": [QA[0]]}], indent=2), "utf-8")
    with pytest.raises(DataFormatError, match="item 2: the last turn must be the assistant's"):
        read_examples(path)
    examples, problems = read_examples(path, skip_bad=True)
    assert [e.messages for e in examples] == [QA]
    assert problems == ["item 2: the last turn must be the assistant's"]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "pairs.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError, match="empty file"):
        read_examples(path, skip_bad=True)


def test_skipping_every_line_is_still_an_error(tmp_path):
    path = write_lines(tmp_path / "pairs.jsonl", [{"foo": 1}, "nope"])
    with pytest.raises(DataFormatError, match="every record is unusable") as caught:
        read_examples(path, skip_bad=True)
    assert caught.value.problems[:2] == [
        "line 1: unknown format: expected alpaca (instruction/output), ShareGPT (conversations) "
        "or OpenAI (messages) keys, got ['foo']",
        "line 2: not valid JSON (Expecting value)",
    ]


@pytest.mark.parametrize("fmt", ["messages", "sharegpt"])
def test_exports_round_trip(tmp_path, fmt):
    examples = [ChatExample(MULTI_TURN), ChatExample(QA), ChatExample([SYSTEM, *QA])]
    path = tmp_path / f"{fmt}.jsonl"
    write_examples_jsonl(examples, path, fmt)
    assert read_examples(path)[0] == examples
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_sharegpt_export_uses_human_and_gpt(tmp_path):
    path = tmp_path / "out.jsonl"
    write_examples_jsonl([ChatExample([SYSTEM, *QA])], path, "sharegpt")
    assert json.loads(path.read_text("utf-8")) == {
        "conversations": [
            {"from": "system", "value": SYSTEM["content"]},
            {"from": "human", "value": QA[0]["content"]},
            {"from": "gpt", "value": "Two years."},
        ]
    }


def test_alpaca_export_round_trips_single_turns_and_refuses_multi_turn(tmp_path):
    examples = [ChatExample(QA), ChatExample([SYSTEM, *QA])]
    path = tmp_path / "alpaca.jsonl"
    write_examples_jsonl(examples, path, "alpaca")
    assert read_examples(path)[0] == examples
    with pytest.raises(ValueError, match="export as messages or sharegpt"):
        write_examples_jsonl([ChatExample(MULTI_TURN)], path, "alpaca")
    with pytest.raises(ValueError, match="choose one of messages, sharegpt, alpaca"):
        write_examples_jsonl(examples, path, "csv")

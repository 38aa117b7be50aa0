"""JSON-lines files read for the user: every bad line is reported by its number at once, so a
file is fixed in one pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_utf8(path: Path) -> str:
    """The file's text (a UTF-8 byte-order mark is dropped).

    Raises:
        OSError: it cannot be read.
        ValueError: it is not UTF-8; the message says to save it as UTF-8.
    """
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error}): save it as UTF-8") from error


def decode_json_lines(text: str, problems: list[str]) -> Iterator[tuple[int, Any]]:
    """Yield (line number, value) for each non-blank line that is valid JSON; append a
    'line N: not valid JSON (reason)' problem for every other one as it is reached, so that
    the caller's own problems stay in line order."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"line {number}: not valid JSON ({error.msg})")
            continue
        yield number, value

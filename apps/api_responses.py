"""What the API server sends back: the OpenAI chat-completion object with ragtune's verified
citations and claims beside it, and a streamed answer as server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass

from apps.api_requests import server_error, timeout_error
from retrieval.answer_record import Answer

log = logging.getLogger("ragtune.server")


@dataclass
class Result:
    """A finished answer and why its generation stopped ('stop' or 'length')."""

    answer: Answer
    finish_reason: str


def extras(answer: Answer) -> dict:
    return {
        "citations": [c.to_dict() for c in answer.citations],
        "refused": answer.refused,
        "claims": [c.to_dict() for c in answer.claims],
        "model_citations": [
            {
                "n": n,
                "source": answer.retrieved[n - 1].source,
                "chunk_id": answer.retrieved[n - 1].chunk_id,
            }
            for n in answer.model_citations
        ],
        "quoted": answer.quoted,
        "gated": answer.gated,
    }


def completion_object(completion: dict, result: Result) -> dict:
    return {
        **completion,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.answer.answer},
                "finish_reason": result.finish_reason,
                "logprobs": None,
            }
        ],
        **extras(result.answer),
    }


def sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def chunk_object(completion: dict, delta: dict, finish_reason: str | None = None) -> dict:
    return {
        **completion,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


async def events(
    completion: dict,
    pieces: asyncio.Queue[str | None],
    future: Future,
    cancelled: threading.Event,
    deadline: float,
    timeout_s: float,
) -> AsyncIterator[str]:
    try:
        yield sse(chunk_object(completion, {"role": "assistant", "content": ""}))
        while True:
            try:
                piece = await asyncio.wait_for(pieces.get(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                cancelled.set()
                yield sse({"error": timeout_error(timeout_s).body})
                yield "data: [DONE]\n\n"
                return
            if piece is None:
                break
            yield sse(chunk_object(completion, {"content": piece}))
        try:
            result = future.result()
        except Exception:
            log.exception("streaming an answer failed (request %s)", completion["id"])
            yield sse({"error": server_error(completion["id"]).body})
        else:
            final = chunk_object(completion, {}, result.finish_reason)
            yield sse({**final, **extras(result.answer), "verified_content": result.answer.answer})
        yield "data: [DONE]\n\n"
    finally:
        # A client that left stops the job, and its generation, at the next token.
        cancelled.set()

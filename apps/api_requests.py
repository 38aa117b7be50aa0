"""What one request to the API server may be, read and checked before it reaches the answer
engine: the limits, the body (JSON only, size and nesting bounded), the chat-completion fields
ragtune uses, and errors answered as OpenAI-style JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for, and how many may wait."""

    max_queue: int = 64
    """Requests held at once (the one being answered plus those waiting); more get 429."""
    max_body_bytes: int = 64 * 1024
    max_question_chars: int = 4000
    max_tokens_cap: int = 1024
    """The largest `max_tokens` honoured; larger requests are answered with this many."""
    max_json_depth: int = 32
    """The deepest nesting of arrays and objects accepted in a body (a chat request needs 4)."""
    request_timeout_s: float = 120.0
    """Seconds a request may take, waiting in the queue included; then 504 and its generation
    stops."""
    workers: int = 1
    """Requests answered at once: the generator's `parallel`."""

    def __post_init__(self) -> None:
        if not self.request_timeout_s > 0:
            raise ValueError(f"the request timeout must be positive, got {self.request_timeout_s}")


class ApiError(Exception):
    """An error answered as OpenAI-style JSON: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, "type": kind, "param": param, "code": code}
        self.headers = headers


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[_Part] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat-completion request that ragtune uses; others are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = 1


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse({"error": error.body}, status_code=error.status, headers=error.headers)


def validation_reason(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
    )


SERVER_ERROR = "the server failed to answer; its log has the details"
"""The message of every 500: exception texts can hold paths, settings or corpus text."""

_JSON_STRUCTURE = re.compile(rb'["\\\[\]{}]')


def server_error(request_id: str) -> ApiError:
    return ApiError(500, f"{SERVER_ERROR} (request {request_id})", kind="server_error")


def timeout_error(seconds: float) -> ApiError:
    return ApiError(
        504,
        f"the answer took longer than the server's limit of {seconds:g} s",
        kind="server_error",
        code="timeout",
    )


def require_json(request: Request) -> None:
    """A body in any other type may come from a web page without a CORS preflight."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(
            415,
            "send the body as JSON with the header 'Content-Type: application/json'",
            code="unsupported_media_type",
        )


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """Whether JSON text nests arrays and objects more than `limit` deep, in one linear pass
    that jumps between quotes, backslashes and brackets (brackets inside strings do not
    count). The parser would recurse once a level and fail with RecursionError."""
    depth = 0
    in_string = False
    skip_to = 0  # the byte after a backslash is escaped
    for match in _JSON_STRUCTURE.finditer(body):
        if match.start() < skip_to:
            continue
        char = match.group()
        if in_string:
            if char == b"\\":
                skip_to = match.end() + 1
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif char in (b"]", b"}"):
            depth -= 1
    return False


async def read_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, f"the request body is over {limit} bytes", code="body_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_request(body: bytes, max_depth: int = ServerLimits.max_json_depth) -> ChatRequest:
    if nested_deeper_than(body, max_depth):
        raise ApiError(400, f"the body nests arrays or objects deeper than {max_depth} levels")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the body is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object with 'model' and 'messages'")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as error:
        raise ApiError(400, validation_reason(error)) from error
    if request.n != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    return request


def question_of(request: ChatRequest, limit: int) -> str:
    users = [m for m in request.messages if m.role == "user"]
    question = users[-1].text().strip() if users else ""
    if not question:
        raise ApiError(
            400, "no question: the last user message is empty or missing", param="messages"
        )
    if len(question) > limit:
        raise ApiError(
            413,
            f"the question has {len(question)} characters; the limit is {limit}",
            code="question_too_long",
            param="messages",
        )
    return question

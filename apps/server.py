"""An OpenAI-compatible HTTP API over a project's answer engine (`ragtune serve PROJECT`).

Endpoints:
    GET  /v1/models             `ragtune-<mode>` for every mode the project can serve, plus
                                `ragtune` (the project's default mode).
    POST /v1/chat/completions   one cited answer, whole or streamed as server-sent events.

Each request is one standalone question: the last user message. Earlier turns and system
messages are ignored, because the answer must rest on the retrieved documents alone, so a
follow-up has to restate what it refers to. Sampling fields (temperature, top_p, ...) are
ignored too: decoding follows the project's `generation` settings; `max_tokens` (or
`max_completion_tokens`) is honoured up to `ServerLimits.max_tokens_cap`.

Beyond the OpenAI schema, the completion object (and the final chunk of a stream) carries
`citations` (the verified citations: the shown chunks that support a sentence of the answer,
each with n, source, page, section, chunk_id, score, snippet, text), `claims` (each sentence:
text, cited, model_cited, supported, support, missing_facts), `model_citations` (the markers the
model wrote itself), `quoted`, `gated` and `refused`. The non-streamed content is the verified
answer: each sentence carries the marker of the chunk that supports it. A stream sends the raw
generated text as it comes; its final chunk adds `verified_content`, the verified answer.

The transformers backend answers one request at a time; the llamacpp backend answers
`generation.parallel` at once, decoded together by llama.cpp's continuous batching. Requests wait
in a bounded queue and are answered on worker threads, so the event loop keeps accepting and
refusing requests while the model works; a request that finds the queue full gets 429 with a
Retry-After estimate.

Web pages cannot drive it (`OriginPolicy`): a browser request whose Origin is not the server's
own loopback origin, or allow-listed, gets 403, and so does a request arriving on a loopback
address under a Host name that is not a loopback name (DNS rebinding: a page on
attacker.example, re-resolved to 127.0.0.1, would otherwise read answers and the corpus they
cite). Clients that send no Origin (curl, the OpenAI SDKs) are not affected. A POST body must
be sent as `application/json` (415 otherwise: a page's form or `text/plain` post, which needs
no CORS preflight, gets nothing), and JSON nested deeper than `ServerLimits.max_json_depth` is
refused with 400. With an API key, every route needs it, `/docs` and `/openapi.json` included.

Every request has a deadline (`ServerLimits.request_timeout_s`): one still unanswered then gets
504, and its generation stops at the next token, as it does when a streaming client leaves. Errors
of the server itself are answered with a generic 500; the details go to the server's log only.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from apps.answer_queue import AnswerQueue, QueueFull
from apps.api_requests import (
    ApiError,
    ServerLimits,
    error_response,
    parse_request,
    question_of,
    read_body,
    require_json,
    server_error,
    timeout_error,
)
from apps.api_responses import Result, completion_object, events
from apps.origin_policy import OriginPolicy
from retrieval.answer import AnswerEngine, ModeError
from retrieval.answer_record import Answer

if TYPE_CHECKING:
    from builder.project import Project

log = logging.getLogger("ragtune.server")

MODEL_PREFIX = "ragtune"


class _RefuseForeignPages:
    """ASGI middleware: answer a request that `OriginPolicy` refuses with 403, before routing
    (so the refusal covers every route, /docs and /openapi.json included)."""

    def __init__(self, app: Any, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (reason := self.policy.refusal(scope)) is not None:
            error = ApiError(403, reason, code="forbidden_origin")
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def model_modes(engine: AnswerEngine) -> dict[str, str]:
    """Model id → answer mode, for the modes this engine can serve."""
    models = {MODEL_PREFIX: engine.default_mode}
    models.update({f"{MODEL_PREFIX}-{mode}": mode for mode in engine.modes})
    return models


def _answer_job(
    engine: AnswerEngine,
    question: str,
    mode: str,
    max_tokens: int,
    emit: Callable[[str], None],
    cancelled: threading.Event,
) -> Result | None:
    """Answer one question on the worker thread, handing each piece to `emit`.

    Returns None when the client left before the answer was finished.
    """
    if cancelled.is_set():
        return None
    pieces = []
    # `cancelled` also stops the generation itself at its next token (the client left, or the
    # deadline passed), so an abandoned request does not hold the model to `max_tokens`.
    stream = engine.stream(question, mode, max_new_tokens=max_tokens, stop=cancelled)
    try:
        for item in stream:
            if cancelled.is_set():
                return None
            if isinstance(item, Answer):
                generated = len(
                    engine.generator.tokenizer("".join(pieces), add_special_tokens=False)[
                        "input_ids"
                    ]
                )
                finish = "length" if generated >= max_tokens else "stop"
                return Result(item, finish)
            pieces.append(item)
            emit(item)
    finally:
        stream.close()
    if cancelled.is_set():
        return None
    raise RuntimeError("the answer engine stopped without a final answer")


def create_app(
    engine: AnswerEngine,
    limits: ServerLimits | None = None,
    api_key: str | None = None,
    policy: OriginPolicy | None = None,
) -> FastAPI:
    """The API over an engine that is already loaded.

    Args:
        engine: the project's answer engine (the model is loaded once, here, for the process).
        limits: queue depth and request limits.
        api_key: when set, every request needs `Authorization: Bearer <api_key>`.
        policy: the web pages and Host names allowed (None: loopback only).
    """
    limits = limits or ServerLimits()
    policy = policy or OriginPolicy()
    queue = AnswerQueue(limits.max_queue, limits.workers)
    default_tokens = min(engine.generator.config.max_new_tokens, limits.max_tokens_cap)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.close()

    # The documentation routes are added below, behind the API key like every other route.
    app = FastAPI(
        title="ragtune", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.queue = queue
    if policy.allowed_origins:
        # Pages of allowed origins may also read the answers (and send the preflight that a
        # JSON POST with an Authorization header needs).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(policy.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
    # Added last, so it runs first: a refused request reaches nothing else.
    app.add_middleware(_RefuseForeignPages, policy=policy)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(Exception)
    async def unexpected_error(_request: Request, _error: Exception) -> JSONResponse:
        # Starlette logs the exception after this reply; the client learns nothing of it.
        return error_response(server_error(uuid.uuid4().hex))

    async def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        # compare_digest: the time taken must not reveal how much of the key matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), api_key.encode()
        ):
            raise ApiError(
                401,
                "invalid or missing API key: send the header 'Authorization: Bearer <key>'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorize)])
    def openapi() -> dict:
        return app.openapi()

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorize)])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="ragtune API")

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    def list_models() -> dict:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": MODEL_PREFIX}
                for name in model_modes(engine)
            ],
        }

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)])
    async def chat_completions(request: Request) -> Any:
        deadline = time.monotonic() + limits.request_timeout_s
        require_json(request)
        body = await read_body(request, limits.max_body_bytes)
        chat = parse_request(body, limits.max_json_depth)
        models = model_modes(engine)
        if chat.model not in models:
            raise ApiError(
                404,
                f"the model {chat.model!r} does not exist; available: {', '.join(models)}",
                code="model_not_found",
                param="model",
            )
        try:
            mode = engine.check_mode(models[chat.model])
        except ModeError as error:
            raise ApiError(404, str(error), code="model_not_found", param="model") from error
        question = question_of(chat, limits.max_question_chars)
        wanted = chat.max_completion_tokens or chat.max_tokens or default_tokens
        max_tokens = min(wanted, limits.max_tokens_cap)

        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        cancelled = threading.Event()
        started = asyncio.Event()

        def emit(piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        def job() -> Result | None:
            loop.call_soon_threadsafe(started.set)
            return _answer_job(
                engine, question, mode, max_tokens, emit if chat.stream else _ignore, cancelled
            )

        try:
            future = queue.submit(job)
        except QueueFull as full:
            raise ApiError(
                429,
                f"the answer queue is full ({queue.depth} requests); retry after "
                f"{full.retry_after} s",
                kind="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(full.retry_after)},
            ) from full
        completion = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": chat.model,
        }
        if not chat.stream:
            answered = asyncio.wrap_future(future)
            try:
                # asyncio.wait, unlike wait_for, leaves the job's future alone on a timeout.
                await asyncio.wait({answered}, timeout=max(deadline - time.monotonic(), 0))
            except asyncio.CancelledError:
                cancelled.set()
                raise
            if not answered.done():
                cancelled.set()
                raise timeout_error(limits.request_timeout_s)
            try:
                result = answered.result()
            except Exception as error:
                log.exception("answering %r failed (request %s)", question, completion["id"])
                raise server_error(completion["id"]) from error
            if result is None:  # stopped by the deadline just as the wait ended
                raise timeout_error(limits.request_timeout_s)
            return completion_object(completion, result)
        # Pieces are queued behind every emit() the worker made, so None arrives last.
        future.add_done_callback(lambda _f: loop.call_soon_threadsafe(pieces.put_nowait, None))
        # A stream's status is sent with its first event, so wait (within the deadline) for the
        # job to leave the queue first: one that never starts in time gets a real 504.
        try:
            await asyncio.wait_for(started.wait(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            cancelled.set()
            raise timeout_error(limits.request_timeout_s) from None
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return StreamingResponse(
            events(completion, pieces, future, cancelled, deadline, limits.request_timeout_s),
            media_type="text/event-stream",
        )

    return app


def _ignore(_piece: str) -> None:
    """A non-streamed request needs only the final answer."""


def warm_up(engine: AnswerEngine) -> None:
    """Pay the one-time costs (the query encoder's lazy load, torch's first kernels) at startup,
    not in the first client's time to first token."""
    if engine.retriever is not None:
        engine.retrieve(["warm-up"])
    engine.generator.generate([[{"role": "user", "content": "Hello"}]], max_new_tokens=1)


def serve(
    project: Project,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_queue: int = ServerLimits.max_queue,
    adapter: str | None = None,
    policy: OriginPolicy | None = None,
    timeout_s: float = ServerLimits.request_timeout_s,
) -> None:
    """Load the project's engine once, then answer on host:port until interrupted.

    Raises:
        ModelNotFoundError: a configured model cannot be found.
        AdapterError: the adapter folder is unusable.
    """
    import uvicorn

    from builder.engine import open_engine

    engine = open_engine(project, adapter, use="serve")
    warm_up(engine)
    limits = ServerLimits(
        max_queue=max_queue, request_timeout_s=timeout_s, workers=engine.generator.parallel
    )
    app = create_app(engine, limits, api_key, policy)
    uvicorn.run(app, host=host, port=port, log_level="info")


def main(argv: list[str] | None = None) -> int:
    """`python -m apps.server PROJECT [...]`: the program `ragtune serve` runs once it has
    checked its arguments. The API key, if any, is read from $RAGTUNE_API_KEY; origins and
    Host names to allow also from $RAGTUNE_ALLOW_ORIGINS and $RAGTUNE_ALLOW_HOSTS (commas)."""
    import argparse
    import os
    from pathlib import Path

    from builder.console import quiet_libraries, run_command
    from builder.project import open_project

    parser = argparse.ArgumentParser(prog="ragtune serve")
    parser.add_argument("project", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-queue", type=int, default=ServerLimits.max_queue)
    parser.add_argument("--timeout", type=float, default=ServerLimits.request_timeout_s)
    parser.add_argument("--adapter")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=os.environ.get("RAGTUNE_ALLOW_ORIGINS", "").split(","),
        help="a web page origin (scheme://host[:port]) allowed to call the API; '*': any",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=os.environ.get("RAGTUNE_ALLOW_HOSTS", "").split(","),
        help="a Host name accepted on loopback besides localhost, 127.0.0.1 and ::1",
    )

    def start(args: argparse.Namespace) -> int:
        project = open_project(args.project, args.set)
        quiet_libraries()
        api_key = os.environ.get("RAGTUNE_API_KEY") or None
        policy = OriginPolicy.allowing(args.allow_origin, args.allow_host)
        serve(
            project,
            args.host,
            args.port,
            api_key,
            args.max_queue,
            args.adapter,
            policy,
            args.timeout,
        )
        return 0

    return run_command(start, parser.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())

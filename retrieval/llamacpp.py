"""Text generation in llama.cpp (the xllamacpp bindings): the `generation.backend = 'llamacpp'`
counterpart of `retrieval.generation.Generator`, with the same methods the answer engine, the
API server and the evaluation call.

One load serves all four answer modes: the base GGUF is loaded with the tuned LoRA GGUF
attached, and each request sets the LoRA's scale (0 for base and rag, 1 for the tuned modes).
llama.cpp clears a sequence's prompt cache when the scale changes, so modes never share cached
attention state. Prompts are rendered with the transformers tokenizer's chat template and sent
as token ids, so both backends read exactly the same tokens: a comparison of the two is one of
weights and kernels, not of templates or tokenizers. Requests from several threads are decoded
together by llama.cpp's continuous batching, in `GenerationConfig.parallel` sequences.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from retrieval.chat_template import render_prompt
from retrieval.config import GenerationConfig
from retrieval.generation import AdapterError

INSTALL_HINT = "pip install 'xllamacpp>=2026.10.11549,<2027'"


class LlamaCppError(Exception):
    """llama.cpp could not load the model or answer a request; the message says what to do."""


def _text(response: dict) -> str:
    """The completion text of one (streamed or whole) llama.cpp response.

    Raises:
        LlamaCppError: the response is an error report.
    """
    choices = response.get("choices")
    if choices is None:
        error = response.get("error", response)
        message = error.get("message", error) if isinstance(error, dict) else error
        raise LlamaCppError(f"llama.cpp refused the request: {message}")
    return choices[0].get("text") or ""


class LlamaCppGenerator:
    """A GGUF model in llama.cpp, with the project's tuned LoRA when it has one.

    Args:
        server: the loaded `xllamacpp.Server`.
        tokenizer: the transformers tokenizer of the same model (renders and tokenizes).
        config: decoding settings.
        has_lora: whether the server was loaded with a LoRA adapter (adapter id 0).
    """

    def __init__(
        self, server: Any, tokenizer: Any, config: GenerationConfig, has_lora: bool
    ) -> None:
        self._server = server
        self.tokenizer = tokenizer
        self.config = config
        self._has_lora = has_lora
        # A transformers tokenizer is a Rust object that refuses concurrent mutable borrows.
        self._tokenize_lock = threading.Lock()

    @property
    def has_tuned(self) -> bool:
        return self._has_lora

    @property
    def parallel(self) -> int:
        """Requests decoded together; the server runs this many answers at once."""
        return self.config.parallel

    def _request(
        self,
        conversation: list[dict[str, str]],
        tuned: bool,
        max_new_tokens: int | None,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        if tuned and not self._has_lora:
            raise AdapterError("no tuned adapter is loaded: run `ragtune tune PROJECT` first")
        with self._tokenize_lock:
            text = render_prompt(self.tokenizer, conversation)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        temperature = self.config.temperature if temperature is None else temperature
        request: dict[str, Any] = {
            "prompt": ids,
            "n_predict": max_new_tokens or self.config.max_new_tokens,
            "temperature": temperature,
            # llama.cpp matches a slot's cached prompt by tokens alone: a prompt cached with
            # the LoRA at one scale would be reused at the other, so `rag+tuned` asked after
            # `rag` read the documents through the base weights. With a LoRA, no reuse.
            "cache_prompt": not self._has_lora,
        }
        if temperature > 0:
            # transformers' sampling defaults, so both backends sample alike.
            request.update(top_k=50, top_p=1.0, min_p=0.0)
        if self._has_lora:
            request["lora"] = [{"id": 0, "scale": 1.0 if tuned else 0.0}]
        return request

    def _complete(self, request: dict[str, Any]) -> str:
        return _text(self._server.handle_completions(request)).strip()

    def generate(
        self,
        conversations: Sequence[list[dict[str, str]]],
        *,
        tuned: bool = False,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Answer conversations side by side (up to `parallel` decoded together).

        Returns:
            The new text of each conversation, in input order.
        """
        if not conversations:
            return []
        return self._complete_all([self._request(c, tuned, max_new_tokens) for c in conversations])

    def _complete_all(self, requests: list[dict[str, Any]]) -> list[str]:
        """Each request's text, in order; up to `parallel` in flight, decoded together."""
        if len(requests) <= 1:
            return [self._complete(request) for request in requests]
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(requests))) as pool:
            return list(pool.map(self._complete, requests))

    def sample(
        self,
        conversations: Sequence[list[dict[str, str]]],
        *,
        samples: int,
        temperature: float,
        seed: int,
        max_new_tokens: int | None = None,
        json_schema: dict | None = None,
    ) -> list[list[str]]:
        """`samples` replies per conversation of the base model (greedy for one, else sampled
        at `temperature`, each sample its own seed), optionally constrained to `json_schema` by
        llama.cpp's grammar; what a teacher asks for.

        Returns:
            Each conversation's replies, in input order.
        """
        requests = []
        for conversation in conversations:
            for number in range(samples):
                request = self._request(
                    conversation, False, max_new_tokens, temperature if samples > 1 else 0.0
                )
                request["seed"] = seed + number
                if json_schema is not None:
                    request["json_schema"] = json_schema
                requests.append(request)
        flat = self._complete_all(requests)
        return [flat[i * samples : (i + 1) * samples] for i in range(len(conversations))]

    def score_replies(
        self,
        conversation: list[dict[str, str]],
        replies: Sequence[str],
        *,
        tuned: bool = False,
        max_reply_tokens: int = 64,
    ) -> list[float]:
        """Not available: llama.cpp's server gives no log-probabilities of given text.

        Raises:
            LlamaCppError: always, naming the settings that avoid the call.
        """
        raise LlamaCppError(
            "the llamacpp backend cannot score replies: set answer.quote_by = 'embedding', or "
            "generation.backend = 'transformers'"
        )

    def stream(
        self,
        conversation: list[dict[str, str]],
        *,
        tuned: bool = False,
        max_new_tokens: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text piece by piece as it is generated.

        Generation ends at the next token once `stop` is set or the caller closes this
        iterator, and its sequence is freed for the next request.
        """
        request = self._request(conversation, tuned, max_new_tokens) | {"stream": True}
        pieces: queue.Queue[str | None] = queue.Queue()
        failure: list[BaseException] = []
        closed = threading.Event()

        def on_chunk(chunk: dict) -> bool:
            try:
                text = _text(chunk)
            except LlamaCppError as error:
                failure.append(error)
                return True
            if text:
                pieces.put(text)
            # True cancels the request in llama.cpp.
            return closed.is_set() or (stop is not None and stop.is_set())

        def run() -> None:
            try:
                self._server.handle_completions(request, on_chunk)
            except BaseException as error:  # re-raised in the caller's thread below
                failure.append(error)
            finally:
                pieces.put(None)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            while (piece := pieces.get()) is not None:
                yield piece
        finally:
            closed.set()  # closed early: cancel at the next token
            worker.join()
        if failure:
            raise failure[0]


def load_llamacpp_generator(
    config: GenerationConfig, lora: Path | None = None
) -> tuple[LlamaCppGenerator, str]:
    """Load the configured model's GGUF in llama.cpp, with a GGUF LoRA when one is given.

    Args:
        config: the generation settings (`gguf`, `parallel`, `context_tokens`, `threads`).
        lora: a llama.cpp LoRA GGUF made from the tuned adapter, or None.

    Returns:
        (the generator, the GGUF path it loaded).

    Raises:
        ModelNotFoundError: no GGUF for the model, or its tokenizer cannot be found.
        LlamaCppError: xllamacpp is missing, or llama.cpp cannot load the files.
    """
    from transformers import AutoTokenizer

    from retrieval.models import (
        describe_load_failure,
        resolve_generator_gguf,
        resolve_generator_model,
    )

    try:
        import xllamacpp
    except ImportError as error:
        raise LlamaCppError(
            f"generation.backend = 'llamacpp' needs xllamacpp: {INSTALL_HINT}"
        ) from error
    base = resolve_generator_gguf(config.model, config.gguf)
    path = resolve_generator_model(config.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as error:
        raise describe_load_failure("generator", path, error) from error
    params = xllamacpp.CommonParams()
    params.model.path = str(base)
    params.n_parallel = config.parallel
    params.n_ctx = config.context_tokens * config.parallel
    params.verbosity = 0  # llama.cpp logs every request otherwise
    if config.threads:
        params.cpuparams.n_threads = config.threads
        params.cpuparams_batch.n_threads = config.threads
    if lora is not None:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(lora), 0.0)]
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as error:
        with_lora = f" with the LoRA {lora}" if lora is not None else ""
        raise LlamaCppError(
            f"llama.cpp could not load {base}{with_lora}: check that it is a GGUF model of "
            f"{config.model} (and the LoRA one exported from an adapter of it), or set "
            "generation.backend = 'transformers'"
        ) from error
    return LlamaCppGenerator(server, tokenizer, config, lora is not None), str(base)

"""The teacher model that writes training questions (sequence-level distillation: the tuned model
learns from its outputs). What it is asked lives in `finetune.generators`; this module only runs
it.

Three backends share one contract, `Teacher.generate(prompts, samples, json_schema) -> replies`:
a local transformers model generating in left-padded batches (`HFTeacher`), a local GGUF in
llama.cpp decoding side by side (`LlamaCppTeacher`, `synthesis.teacher_backend = 'llamacpp'`),
or any OpenAI-compatible chat endpoint such as vLLM, Ollama or llama.cpp's server
(`OpenAITeacher`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from finetune.synthesis_config import NO_TEACHER
from retrieval.chat_endpoint import ChatEndpoint, EndpointError
from retrieval.chat_template import render_prompt

Messages = list[dict[str, str]]
TEACHER_CONTEXT_TOKENS = 2048
"""llama.cpp context per parallel reply: a chunk, the instructions and a reply fit in it."""


class TeacherError(Exception):
    """A teacher that cannot be loaded or reached; the message says what to do."""


class Teacher(Protocol):
    """Writes replies to chat prompts."""

    name: str
    """Shown in `QAPair.generator` as 'teacher:<name>'."""

    def generate(
        self, prompts: list[Messages], samples: int = 1, json_schema: dict | None = None
    ) -> list[list[str]]:
        """`samples` replies per prompt, in order: greedy for one, sampled for more.
        `json_schema` asks for a JSON reply of that shape (enforced by endpoints that support
        `response_format`; local models are only asked, and the caller validates)."""
        ...


def require_chat_template(tokenizer: Any, name: object) -> None:
    """Raises TeacherError when the teacher's tokenizer has no chat template to prompt it with."""
    if not tokenizer.chat_template:
        raise TeacherError(
            f"the teacher {name} has no chat template: use an instruct/chat model such as "
            "embedded:SmolLM2-135M-Instruct"
        )


class HFTeacher:
    """A local transformers chat model, generating in left-padded batches.

    Args:
        model: 'embedded:SmolLM2-135M-Instruct', a model folder or a hub id.
        device: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.
        batch_size: Sequences per forward pass (prompts times samples); batching is what makes
            a CPU teacher usable.
        max_new_tokens: The longest reply.
        temperature: Of sampled replies (`samples` > 1).
        seed: Seeds sampling, so the same corpus gives the same questions.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        batch_size: int = 8,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        seed: int = 0,
    ) -> None:
        self.name = model
        self.model_spec = model
        self.device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self._model = None
        self._tokenizer = None

    def load(self) -> None:
        """Load the model once (resolving and converting the embedded one on first use)."""
        if self._model is not None:
            return
        from retrieval.config import GenerationConfig
        from retrieval.models import load_generator

        model, tokenizer, path = load_generator(
            GenerationConfig(model=self.model_spec, device=self.device)
        )
        require_chat_template(tokenizer, path)
        tokenizer.padding_side = "left"  # generation continues from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model, self._tokenizer = model, tokenizer

    def generate(
        self, prompts: list[Messages], samples: int = 1, json_schema: dict | None = None
    ) -> list[list[str]]:
        import torch

        self.load()
        tokenizer, model = self._tokenizer, self._model
        # The chunk text inside each prompt cannot write turns (see retrieval.chat_template).
        texts = [render_prompt(tokenizer, messages) for messages in prompts]
        # Similar lengths in one batch waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        replies: list[list[str]] = [[] for _ in texts]
        sampling = {"do_sample": False}
        if samples > 1:
            sampling = {"do_sample": True, "temperature": self.temperature, "top_p": 0.95}
            torch.manual_seed(self.seed)  # the same corpus gives the same questions
        for start in range(0, len(order), max(1, self.batch_size // samples)):
            rows = order[start : start + max(1, self.batch_size // samples)]
            batch = tokenizer(
                [texts[index] for index in rows],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(model.device)
            with torch.inference_mode():
                output = model.generate(
                    **batch,
                    **sampling,
                    num_return_sequences=samples,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
            # output: (batch * samples, prompt_len + new), each prompt's samples side by side.
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            for position, row in enumerate(new_tokens):
                text = tokenizer.decode(row, skip_special_tokens=True).strip()
                replies[rows[position // samples]].append(text)
        return replies


class LlamaCppTeacher:
    """A local chat model's GGUF in llama.cpp (xllamacpp), `batch_size` replies decoded together
    by its continuous batching; a JSON schema becomes a grammar the reply must follow.

    Args:
        model: 'embedded:SmolLM2-135M-Instruct' (the GGUF its package ships) or a model folder
            or hub id whose GGUF `gguf` names.
        gguf: the GGUF file, when the model is not the embedded one.
        batch_size: Replies decoded at once.
        max_new_tokens: The longest reply.
        temperature: Of sampled replies (`samples` > 1).
        seed: Seeds sampling (sample i of a prompt uses seed + i).
    """

    def __init__(
        self,
        model: str,
        gguf: str = "",
        batch_size: int = 8,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        seed: int = 0,
    ) -> None:
        self.name = model
        self.model_spec = model
        self.gguf = gguf
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self._generator = None

    def load(self) -> None:
        """Load the GGUF once."""
        if self._generator is not None:
            return
        from retrieval.config import GenerationConfig
        from retrieval.llamacpp import LlamaCppError, load_llamacpp_generator

        config = GenerationConfig(
            model=self.model_spec,
            gguf=self.gguf,
            parallel=max(1, self.batch_size),
            context_tokens=TEACHER_CONTEXT_TOKENS,
            max_new_tokens=self.max_new_tokens,
            temperature=0.0,
        )
        try:
            self._generator, _path = load_llamacpp_generator(config)
        except LlamaCppError as error:
            message = f"{error} (or set synthesis.teacher_backend = 'transformers')"
            raise TeacherError(message) from error
        require_chat_template(self._generator.tokenizer, self.model_spec)

    def generate(
        self, prompts: list[Messages], samples: int = 1, json_schema: dict | None = None
    ) -> list[list[str]]:
        if not prompts:
            return []
        self.load()
        return self._generator.sample(
            prompts,
            samples=samples,
            temperature=self.temperature,
            seed=self.seed,
            max_new_tokens=self.max_new_tokens,
            json_schema=json_schema,
        )


class OpenAITeacher:
    """A chat model behind an OpenAI-compatible `/v1/chat/completions` endpoint.

    Args:
        base_url: The server, e.g. 'http://localhost:8000' or 'http://localhost:11434/v1'.
        model: The model name the server expects.
        api_key: Sent as a bearer token when given (local servers usually need none).
        concurrency: Requests in flight at once (servers batch concurrent requests).
        max_tokens: The longest reply.
        timeout: Seconds to wait for one reply.
        temperature: Of sampled replies (`samples` > 1).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        max_tokens: int = 128,
        timeout: float = 120.0,
        temperature: float = 0.8,
    ) -> None:
        self.endpoint = ChatEndpoint(
            base_url,
            "teacher",
            api_key=api_key,
            timeout=timeout,
            unreachable_hint="start the server, or set synthesis.teacher = none",
            rejected_hint=f"check teacher_model_name = {model!r}",
        )
        self.model = model
        self.name = model or base_url
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.temperature = temperature

    def _complete(self, request: tuple[Messages, float, dict | None]) -> str:
        messages, temperature, response_format = request
        try:
            return self.endpoint.chat(
                self.model, messages, self.max_tokens, temperature, response_format
            )
        except EndpointError as error:
            raise TeacherError(str(error)) from error

    def generate(
        self, prompts: list[Messages], samples: int = 1, json_schema: dict | None = None
    ) -> list[list[str]]:
        if not prompts:
            return []
        temperature = self.temperature if samples > 1 else 0.0
        response_format = None
        if json_schema is not None:
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": json_schema, "strict": True},
            }
        requests = [(messages, temperature, response_format) for messages in prompts]
        requests = [request for request in requests for _ in range(samples)]
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            flat = list(pool.map(self._complete, requests))
        return [flat[index * samples : (index + 1) * samples] for index in range(len(prompts))]


def make_teacher(
    spec: str,
    model_name: str = "",
    device: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int = 64,
    seed: int = 0,
    backend: str = "transformers",
    gguf: str = "",
) -> Teacher | None:
    """Build the teacher a setting names.

    Args:
        spec: 'none' or '' for no teacher; 'http://...' or 'https://...' for an endpoint;
            otherwise 'embedded:...', a model folder or a hub id.
        model_name: The model name sent to an endpoint.
        device: Where a local teacher runs.
        batch_size: Prompts per batch (local) or requests in flight (endpoint).
        max_new_tokens: The longest reply.
        seed: Seeds a local teacher's sampling.
        backend: What runs a local teacher: 'transformers' or 'llamacpp' (its GGUF: the
            embedded model's, or `gguf`).
        gguf: A local teacher's GGUF file for the llamacpp backend.

    Returns:
        The teacher (nothing is loaded yet), or None.
    """
    spec = spec.strip()
    if spec.lower() in NO_TEACHER:
        return None
    if spec.startswith(("http://", "https://")):
        return OpenAITeacher(spec, model_name, concurrency=batch_size, max_tokens=max_new_tokens)
    if backend == "llamacpp":
        return LlamaCppTeacher(
            spec, gguf, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed
        )
    return HFTeacher(
        spec, device=device, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed
    )

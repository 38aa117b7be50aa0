"""Text generation with one loaded model, with or without a tuned adapter, batched or streamed.

The base model and the adapter share one copy of the base weights: a peft adapter is switched
off for the `base` and `rag` modes with `disable_adapter()`, so all four answer modes cost one
model load. A lock serializes generation, because the adapter switch is model-wide state and
the server answers several clients from threads.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from retrieval.chat_template import neutralize_special_tokens, render_prompt
from retrieval.config import GenerationConfig


class AdapterError(Exception):
    """An adapter folder that cannot be used; the message says why and what to do."""


class Generator:
    """A causal LM and its tokenizer, plus an optional tuned adapter or fully tuned model.

    Args:
        model: the base model, in eval mode on its device.
        tokenizer: its tokenizer (must have a chat template).
        config: decoding settings.
        tuned: a fully tuned model used instead of the adapter (method='full'), else None.
    """

    parallel = 1
    """Requests answered at once: one model-wide adapter switch, one generation at a time."""

    def __init__(
        self, model: Any, tokenizer: Any, config: GenerationConfig, tuned: Any = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self._tuned_model = tuned
        self._lock = threading.Lock()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def has_tuned(self) -> bool:
        from peft import PeftModel

        return self._tuned_model is not None or isinstance(self.model, PeftModel)

    @contextlib.contextmanager
    def _model_for(self, tuned: bool) -> Iterator[Any]:
        from peft import PeftModel

        if tuned:
            if not self.has_tuned:
                raise AdapterError("no tuned adapter is loaded: run `ragtune tune PROJECT` first")
            yield self._tuned_model if self._tuned_model is not None else self.model
        elif isinstance(self.model, PeftModel):
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.model

    def _encode(self, conversations: Sequence[list[dict[str, str]]]) -> Any:
        # Contents are neutralized first: the text is tokenized with special tokens parsed, so a
        # chunk holding '<|im_start|>system' would otherwise write a turn of its own.
        texts = [render_prompt(self.tokenizer, c) for c in conversations]
        self.tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return batch.to(self.model.device)

    def _generate_kwargs(self, max_new_tokens: int | None) -> dict[str, Any]:
        sample = self.config.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens or self.config.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if sample:
            kwargs["temperature"] = self.config.temperature
        else:  # silence the sampling defaults of the model's generation_config
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(
        self,
        conversations: Sequence[list[dict[str, str]]],
        *,
        tuned: bool = False,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """Answer a batch of conversations in one padded `generate` call.

        Returns:
            The new text of each conversation, without special tokens, in input order.
        """
        import torch

        if not conversations:
            return []
        batch = self._encode(conversations)
        with self._lock, self._model_for(tuned) as model, torch.inference_mode():
            output = model.generate(**batch, **self._generate_kwargs(max_new_tokens))
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        return [
            text.strip()
            for text in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        ]

    def score_replies(
        self,
        conversation: list[dict[str, str]],
        replies: Sequence[str],
        *,
        tuned: bool = False,
        max_reply_tokens: int = 64,
    ) -> list[float]:
        """Mean log-probability per token of each reply as the model's answer to `conversation`.

        The prompt is read once; its cache is copied for every reply, and all replies are
        scored in one batched forward pass.

        Returns:
            One score per reply (higher: the model finds it likelier), in input order.
        """
        import torch

        if not replies:
            return []
        prompt = self._encode([conversation])["input_ids"]
        pad = self.tokenizer.pad_token_id
        # The replies are chunk sentences: as plain text, like the prompt's contents.
        plain = [neutralize_special_tokens(self.tokenizer, r) for r in replies]
        encoded = [
            self.tokenizer(r, add_special_tokens=False)["input_ids"][:max_reply_tokens] or [pad]
            for r in plain
        ]
        width = max(len(ids) for ids in encoded)
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), prompt.shape[1] + width), dtype=torch.long)
        mask[:, : prompt.shape[1]] = 1
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, prompt.shape[1] : prompt.shape[1] + len(tokens)] = 1
        device = self.model.device
        with self._lock, self._model_for(tuned) as model, torch.inference_mode():
            head = model(input_ids=prompt, use_cache=True)
            cache = head.past_key_values
            cache.batch_repeat_interleave(len(encoded))
            tail = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), past_key_values=cache
            )
        # Position j of the replies is predicted by the logits one step before it: the prompt's
        # last position for j = 0, the reply's own position j - 1 after that.
        first = head.logits[:, -1:, :].expand(len(encoded), 1, -1)
        logits = torch.cat([first, tail.logits[:, :-1, :]], dim=1).float()
        log_probs = torch.log_softmax(logits, dim=-1).gather(2, ids.to(device)[..., None])[..., 0]
        counts = torch.tensor([len(t) for t in encoded], device=device)
        valid = torch.arange(width, device=device)[None, :] < counts[:, None]
        return ((log_probs * valid).sum(dim=1) / counts).tolist()

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
        iterator: a client that left, or ran out of time, must not keep the model (and its
        lock) busy until `max_new_tokens`.
        """
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        batch = self._encode([conversation])
        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        failure: list[BaseException] = []
        closed = threading.Event()

        def stopped(input_ids: Any, _scores: Any, **_kwargs: Any) -> Any:
            done = closed.is_set() or (stop is not None and stop.is_set())
            return torch.full(
                (input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device
            )

        def run() -> None:
            try:
                with self._lock, self._model_for(tuned) as model, torch.inference_mode():
                    model.generate(
                        **batch,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([stopped]),
                        **self._generate_kwargs(max_new_tokens),
                    )
            except BaseException as error:  # re-raised in the caller's thread below
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        try:
            yield from (piece for piece in streamer if piece)
        finally:
            closed.set()  # closed early: stop at the next token, and free the lock
            worker.join()
        if failure:
            raise failure[0]


def load_tuned(model: Any, adapter_dir: Path, config: GenerationConfig) -> tuple[Any, Any]:
    """Attach the adapter in `adapter_dir` to `model`, or load a fully tuned model from it.

    Returns:
        (the model to use as base, the fully tuned model or None).

    Raises:
        AdapterError: the folder holds neither a peft adapter nor a model.
    """
    adapter_dir = Path(adapter_dir)
    if (adapter_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        try:
            tuned = PeftModel.from_pretrained(model, str(adapter_dir))
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise AdapterError(f"cannot load the adapter in {adapter_dir}: {error}") from error
        return tuned.eval(), None
    if (adapter_dir / "config.json").is_file():
        from transformers import AutoModelForCausalLM

        full = AutoModelForCausalLM.from_pretrained(
            str(adapter_dir), dtype=model.dtype, trust_remote_code=config.trust_remote_code
        )
        return model, full.to(model.device).eval()
    raise AdapterError(
        f"{adapter_dir} holds neither a peft adapter (adapter_config.json) nor a model "
        "(config.json): run `ragtune tune PROJECT` again"
    )


def load_generator_with_adapter(
    config: GenerationConfig, adapter_dir: Path | None = None
) -> tuple[Generator, str]:
    """Load the configured generator once, with the tuned adapter when one is given.

    Returns:
        (the Generator, the resolved model path or id).

    Raises:
        ModelNotFoundError: the model cannot be found.
        AdapterError: the adapter folder is unusable.
    """
    from retrieval.models import load_generator

    model, tokenizer, path = load_generator(config)
    tuned = None
    if adapter_dir is not None:
        check_adapter_base(adapter_dir, path)
        model, tuned = load_tuned(model, adapter_dir, config)
    return Generator(model, tokenizer, config, tuned), path


def check_adapter_base(adapter_dir: Path, base_path: str) -> None:
    """An adapter trained on another base model gives garbage; say so instead."""
    card = Path(adapter_dir) / "adapter_config.json"
    if not card.is_file():
        return
    trained_on = json.loads(card.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if trained_on and Path(trained_on).name != Path(base_path).name:
        raise AdapterError(
            f"the adapter in {adapter_dir} was trained on {trained_on}, but the generator is "
            f"{base_path}: set generation.model to the adapter's base model, or tune again"
        )

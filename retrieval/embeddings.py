"""Encoders turn texts into L2-normalized float32 vectors; the chunker counts tokens with them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from retrieval.models import (
    ModelNotFoundError,
    describe_load_failure,
    pick_device,
    resolve_embedding_model,
)


class Encoder(Protocol):
    """What the builder and the retriever need from an embedding model."""

    name: str
    dim: int
    max_tokens: int

    def load(self) -> object:
        """Load the weights now (idempotent), e.g. from a thread while files are chunked."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return an (n, dim) float32 array of unit-length rows."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of model tokens in `text`, special tokens excluded."""
        ...


class SentenceTransformerEncoder:
    """A sentence-transformers model. The tokenizer loads at once (chunking needs only it); the
    weights load on the first `encode`, or earlier through `load()` from a background thread."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 32) -> None:
        from transformers import AutoTokenizer

        self.name = model
        self.path = resolve_embedding_model(model)
        self.device = device
        self.batch_size = batch_size
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        except (OSError, ValueError) as error:
            raise describe_load_failure("embedding", self.path, error) from error
        # A counting copy of the fast tokenizer: the model's tokenizer.json may pad and truncate
        # every text to a fixed length, which would make every text count the same.
        from tokenizers import Tokenizer

        self._counter = Tokenizer.from_str(self._tokenizer.backend_tokenizer.to_str())
        self._counter.no_truncation()
        self._counter.no_padding()
        self._model = None
        self.max_tokens = min(int(self._tokenizer.model_max_length), 512)
        self.dim = self._read_dim()

    def _read_dim(self) -> int:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.path)
        return int(config.hidden_size)

    def load(self):
        """Load the weights (idempotent) and return the SentenceTransformer."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(self.path, device=pick_device(self.device))
            except (OSError, ValueError) as error:
                raise describe_load_failure("embedding", self.path, error) from error
            self.max_tokens = int(self._model.max_seq_length)
            self.dim = int(self._model.get_embedding_dimension())
            # The first forward pass pays one-off allocations; pay them here, off the hot path.
            self._model.encode(["warm-up"], show_progress_bar=False)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.load().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        # The Rust backend directly: no "sequence longer than max length" warnings, and faster.
        return len(self._counter.encode(text, add_special_tokens=False).ids)


def encode_in_length_order(
    encoder: Encoder,
    texts: Sequence[str],
    slice_size: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Encode texts sorted by length, so each batch pads to similar lengths, in slices that
    report progress; rows come back in the order of `texts`."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.empty((len(texts), encoder.dim), dtype=np.float32)
    for start in range(0, len(order), slice_size):
        rows = order[start : start + slice_size]
        vectors[rows] = encoder.encode([texts[i] for i in rows])
        if on_progress:
            on_progress(len(rows))
    return vectors


def load_encoder(model: str, device: str = "auto", batch_size: int = 32) -> Encoder:
    """Build the encoder named by the embedding settings.

    Raises:
        ModelNotFoundError: the model is neither embedded, a folder, nor reachable on the hub.
    """
    return SentenceTransformerEncoder(model, device=device, batch_size=batch_size)


__all__ = [
    "Encoder",
    "ModelNotFoundError",
    "SentenceTransformerEncoder",
    "load_encoder",
]

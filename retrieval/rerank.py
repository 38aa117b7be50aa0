"""The reranking stage: a cross-encoder reads the question with each fused candidate and scores
the pair, which a bi-encoder's single vector per text cannot (`retrieval.reranker`).

Any sentence-transformers `CrossEncoder`, from a folder or a Hugging Face id already in the
local cache: nothing is downloaded while answering, so a model that is not on this machine
fails at once with what to do. No cross-encoder ships in a package, so reranking is off unless
one is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from retrieval.models import ModelNotFoundError, pick_device


class CrossEncoderReranker:
    """Scores (question, passage) pairs with a sentence-transformers `CrossEncoder`."""

    def __init__(self, name: str, model, batch_size: int = 32) -> None:
        self.name = name
        self._model = model
        self.batch_size = batch_size

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage, higher is better."""
        if not passages:
            return []
        scores = self._model.predict(
            [(question, passage) for passage in passages],
            batch_size=self.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(score) for score in scores.reshape(len(passages), -1)[:, -1]]


def load_reranker(name: str, device: str = "auto") -> CrossEncoderReranker:
    """Load the cross-encoder `retrieval.reranker` names, from a folder or the local cache.

    Raises:
        ModelNotFoundError: it is neither a loadable folder nor a model in the local cache.
    """
    from sentence_transformers import CrossEncoder

    local = Path(name).expanduser()
    try:
        model = CrossEncoder(
            str(local) if local.exists() else name,
            device=pick_device(device),
            local_files_only=True,
        )
    except (OSError, ValueError) as error:
        where = f"folder {local}" if local.exists() else f"{name!r} (not a folder, not cached)"
        raise ModelNotFoundError(
            f"retrieval.reranker: cannot load the cross-encoder {where}: "
            f"{type(error).__name__}. Download it on a machine with internet "
            f"(`huggingface-cli download {name} --local-dir DIR`), copy DIR here and set "
            "retrieval.reranker = DIR, or set retrieval.reranker = '' to search without it"
        ) from error
    return CrossEncoderReranker(name, model)

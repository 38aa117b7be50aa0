"""The quote gate: when the model's answer is unsupported, the engine quotes the shown sentence
closest to the question; the gate refuses instead when even that sentence scores below a bound,
because then the shown chunks most likely lack the answer and the quote would answer another
question.

The bound is calibrated by `ragtune tune` on the training pairs (never the held-out questions)
and saved beside the adapter as RUN/quote_gate.json, one bound per encoder that picks quotes:
the project's embedding model (the `rag` mode) and the tuned evidence selector (the tuned
modes). The statistic is the same in calibration and at answer time: the highest cosine
similarity between the question and a shown sentence (`best_quote_scores`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

QUOTE_GATE = "quote_gate.json"
"""The run folder's calibrated bounds."""
EMBEDDING_BOUND = "embedding"
"""The bound of quotes picked with the project's embedding model (the untuned modes)."""
SELECTOR_BOUND = "selector"
"""The bound of quotes picked with the tuned evidence selector (the tuned modes)."""

Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class GateBound:
    """One encoder's bound and how well it told the calibration cases apart.

    Attributes:
        bound: the lowest best-sentence similarity that still gets a quote.
        answerable: calibration cases with the pair's own chunk shown.
        lacking: cases with every chunk of the pair's document left out.
        kept: share of the answerable cases at or above the bound.
        refused: share of the lacking cases below it.
    """

    bound: float
    answerable: int
    lacking: int
    kept: float
    refused: float


def sentence_scores(question: str, sentences: Sequence[str], encode: Encode) -> list[float]:
    """The cosine similarity of each sentence to the question (`encode` returns unit rows):
    what the engine ranks quotes by and the gate compares with its bound."""
    vectors = encode([question, *sentences])
    return (vectors[1:] @ vectors[0]).tolist()


def best_quote_scores(
    questions: Sequence[str], candidates: Sequence[Sequence[str]], encode: Encode
) -> list[float | None]:
    """For each question, the highest cosine similarity between it and one of its candidate
    sentences (None without candidates). `encode` returns unit rows."""
    scores: list[float | None] = []
    for question, sentences in zip(questions, candidates):
        if not sentences:
            scores.append(None)
            continue
        scores.append(float(max(sentence_scores(question, sentences, encode))))
    return scores


def calibrate(answerable: Sequence[float], lacking: Sequence[float]) -> GateBound | None:
    """The bound that best tells the two kinds of case apart: the one that maximizes the mean of
    the share of answerable cases kept and the share of lacking ones refused (balanced
    accuracy; Youden's J). Of equally good bounds the lowest, which refuses least. None when a
    side is empty or no bound beats letting every quote through."""
    if not answerable or not lacking:
        return None
    kept_side, lacking_side = np.asarray(answerable), np.asarray(lacking)
    best_bound, best_score = None, 1.0  # a bound below every score: all kept, none refused
    for bound in np.unique(np.concatenate([kept_side, lacking_side])):
        score = float((kept_side >= bound).mean() + (lacking_side < bound).mean())
        if score > best_score + 1e-12:
            best_bound, best_score = float(bound), score
    if best_bound is None:
        return None
    return GateBound(
        bound=round(best_bound, 6),
        answerable=len(kept_side),
        lacking=len(lacking_side),
        kept=round(float((kept_side >= best_bound).mean()), 4),
        refused=round(float((lacking_side < best_bound).mean()), 4),
    )


def write_bounds(path: Path, bounds: dict[str, GateBound | None], inputs: str) -> None:
    """Save {encoder name: bound} (`EMBEDDING_BOUND`, `SELECTOR_BOUND`) with the digest of
    what they were calibrated on."""
    data = {
        "inputs": inputs,
        "bounds": {name: asdict(bound) if bound else None for name, bound in bounds.items()},
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_bounds(path: Path) -> dict[str, float]:
    """{encoder name: bound} from a run folder's file; {} when there is none.

    Raises:
        ValueError: the file is not what `write_bounds` writes.
    """
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            str(name): float(entry["bound"])
            for name, entry in data["bounds"].items()
            if entry is not None
        }
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{path}: not a quote gate file ({error}); rerun `ragtune tune`") from None

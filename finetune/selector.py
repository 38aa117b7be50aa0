"""The evidence selector: the project's embedding model fine-tuned on its synthesized pairs to
pick, among the sentences of the chunks shown with a question, the one that answers it.

When the model's own answer does not stand (`answer.own_answers`), the answer engine quotes one
shown sentence (`answer.unsupported = "quote"`), chosen by embedding similarity to the question;
under 'agreeing' that sentence also decides whether the own answer stands. A general
embedding model ranks a sentence that shares the question's words above the one that holds its
answer ("What is the MX-30's cooling time?" → the sentence naming the MX-30's cooling system).
The synthesized training pairs say which sentence answers each question, so `ragtune tune`
trains the embedding model on them, the way sentence-transformers adapts a retriever to a
domain: (question, answering sentence, hardest wrong sentence among those the engine shows)
triplets, multiple-negatives ranking loss. The tuned modes quote with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finetune.config import SelectorConfig
from finetune.pairs import UNANSWERABLE, QAPair
from retrieval.answer_match import holds_answer
from retrieval.attribution import candidate_sentences


@dataclass
class Triplet:
    question: str
    answering: str
    """The sentence of the pair's chunk that holds its answer."""
    wrong: str
    """The shown sentence most similar to the question that does not hold the answer."""


@dataclass
class SelectorResult:
    triplets: int
    steps: int
    seconds: float


def _sentences(texts: Sequence[str]) -> list[str]:
    return [sentence for sentence, _ in candidate_sentences(texts)]


def selector_triplets(
    pairs: Sequence[QAPair],
    chunk_texts: Mapping[str, str],
    shown: Sequence[Sequence[str]],
    encode: Callable[[list[str]], np.ndarray],
) -> list[Triplet]:
    """One triplet per pair whose answering sentence and a wrong one can be told apart.

    Args:
        pairs: the training pairs (the held-out questions never reach the selector).
        chunk_texts: chunk id → text, for each pair's own chunk.
        shown: for each pair, the texts of the chunks the engine shows with its question.
        encode: unit-row embeddings of texts (the untuned model) to pick the hardest sentences.
    """
    triplets = []
    for pair, texts in zip(pairs, shown):
        if pair.kind == UNANSWERABLE:
            continue
        fact = pair.span or pair.answer
        own = _sentences([chunk_texts.get(pair.chunk_id, "")])
        answering = [s for s in own if holds_answer(s, fact)] or [
            s for s in own if s in pair.evidence
        ]
        if not answering:
            continue
        wrong = [
            s
            for s in _sentences(texts)
            if s not in answering and s not in pair.evidence and not holds_answer(s, fact)
        ]
        if not wrong:
            continue
        triplets.append(_closest(pair.question, answering, wrong, encode))
    return triplets


def identity_triplets(
    questions: Sequence[str],
    card: str,
    shown: Sequence[Sequence[str]],
    encode: Callable[[list[str]], np.ndarray],
) -> list[Triplet]:
    """Triplets that teach the selector the persona: each training identity question ("who are
    you?") is answered by a sentence of the persona card, which the engine shows beside the
    retrieved chunks; the hardest wrong sentence comes from those chunks. Without them a tuned
    selector, which only ever saw the corpus's questions, quotes a handbook sentence instead.

    Args:
        questions: the identity texts' training questions (never the held-out ones).
        card: the persona card's text (`Identity.card`).
        shown: for each question, the texts of the retrieved chunks shown beside the card.
        encode: unit-row embeddings of texts (the untuned model).
    """
    answering = _sentences([card])
    triplets = []
    for question, texts in zip(questions, shown):
        wrong = [s for s in _sentences(texts) if s not in answering]
        if not answering or not wrong:
            continue
        triplets.append(_closest(question, answering, wrong, encode))
    return triplets


def _closest(
    question: str,
    answering: list[str],
    wrong: list[str],
    encode: Callable[[list[str]], np.ndarray],
) -> Triplet:
    """The answering sentence and the wrong one closest to the question."""
    vectors = encode([question, *answering, *wrong])
    similarity = vectors[1:] @ vectors[0]
    best = int(np.argmax(similarity[: len(answering)]))
    hardest = int(np.argmax(similarity[len(answering) :]))
    return Triplet(question, answering[best], wrong[hardest])


def train_selector(
    model_path: str, triplets: Sequence[Triplet], out_dir: Path, config: SelectorConfig
) -> SelectorResult:
    """Fine-tune the sentence-transformers model at `model_path` on `triplets` and save it to
    `out_dir` (safetensors)."""
    import math
    import tempfile

    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from transformers import PrinterCallback

    began = time.monotonic()
    model = SentenceTransformer(model_path)
    data = Dataset.from_dict(
        {
            "anchor": [t.question for t in triplets],
            "positive": [t.answering for t in triplets],
            "negative": [t.wrong for t in triplets],
        }
    )
    steps = math.ceil(len(triplets) / config.batch_size) * max(1, math.ceil(config.epochs))
    work = tempfile.TemporaryDirectory(prefix="ragtune-selector-")
    args = SentenceTransformerTrainingArguments(
        output_dir=work.name,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=max(1, steps // 10),
        save_strategy="no",
        report_to=[],
        seed=config.seed,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=losses.MultipleNegativesRankingLoss(model),
    )
    # The caller reports progress: no log printing, no model-card widgets computed with a bar.
    trainer.remove_callback(PrinterCallback)
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback).__name__.endswith("ModelCardCallback"):
            trainer.remove_callback(callback)
    with work:
        state = trainer.train()
    model.save(str(out_dir), safe_serialization=True)
    return SelectorResult(len(triplets), int(state.global_step), time.monotonic() - began)

"""RAFT-style training examples (retrieval-augmented fine-tuning, Zhang et al. 2024).

Each question is shown with its oracle chunk among distractors that the project's own index
retrieves for it (hard negatives: similar text that does not hold the answer), in the exact
prompt the answer engine uses (`retrieval.prompt`), and the target answer cites the document
that holds the answer as [n]. Two kinds of examples teach the rest of the behaviour:

- oracle left out: the distractors alone, and the target is the engine's refusal sentence (the
  style's, `retrieval.prompt.refusal_sentence`), so the model learns to say it found nothing
  rather than invent an answer with a citation; an unanswerable pair's target is the same;
- closed book: the question alone, answered without citations, so the `tuned` mode (adapter
  without retrieval) is trained on the prompt it will see.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from finetune.config import RaftConfig
from finetune.data import ChatExample, Grounding
from finetune.distill import context_teacher_messages
from finetune.pairs import UNANSWERABLE, QAPair
from retrieval.config import StyleConfig
from retrieval.prompt import (
    SENTENCE_STOPS,
    PromptDocument,
    closed_book_messages,
    rag_messages,
    refusal_sentence,
)
from retrieval.search import Hit


@dataclass
class RaftReport:
    examples: int = 0
    with_oracle: int = 0
    without_oracle: int = 0
    closed_book: int = 0
    oracle_duplicates: int = 0
    """Distractors that also held the evidence (overlapping chunks); cited like the oracle."""

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


_SPACE = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def _holds_evidence(text: str, pair: QAPair) -> bool:
    evidence = _squash(pair.evidence or pair.answer)
    return bool(evidence) and evidence in _squash(text)


def _is_sentence(answer: str) -> bool:
    """Whether an answer is a sentence (it ends with a stop) rather than a value."""
    return answer.rstrip().endswith(tuple(SENTENCE_STOPS))


def cited_answer(answer: str, numbers: Sequence[int]) -> str:
    """`answer` ending with its citation markers, e.g. 'Two years [2].'"""
    marks = "".join(f"[{n}]" for n in numbers)
    text = answer.strip()
    if text.endswith((".", "!", "?")):
        return f"{text[:-1].rstrip()} {marks}{text[-1]}"
    return f"{text} {marks}"


def _in_retrieved_order(hits: Sequence[Hit], oracle: Hit, documents: int) -> list[Hit]:
    """The first `documents` hits as retrieved, the oracle among them where the retriever put it,
    or in the last place when it ranked lower."""
    top = [oracle if h.chunk_id == oracle.chunk_id else h for h in hits[:documents]]
    if oracle in top:
        return top
    others = [h for h in hits if h.chunk_id != oracle.chunk_id]
    return [*others[: documents - 1], oracle]


def raft_examples(
    pairs: Sequence[QAPair],
    oracle_hits: dict[str, Hit],
    search_many: Callable[[list[str], int], list[list[Hit]]],
    documents: int,
    config: RaftConfig,
    style: StyleConfig | None = None,
) -> tuple[list[ChatExample], RaftReport]:
    """Turn question/answer pairs into RAFT training conversations.

    Args:
        pairs: the training pairs (never the evaluation split).
        oracle_hits: the chunk each pair was written from, by chunk id, as a `Hit`.
        search_many: the project's retriever: questions and k → hits per question.
        documents: chunks shown per example, oracle included: the answer engine's count, so
            that training sees the prompt length and layout of inference.
        config: the shares of the special kinds of example.
        style: the persona, voice and refusal sentence the answer engine's system prompts
            carry (None: none); refusal targets are its sentence.

    Returns:
        The conversations (shuffled with the config's seed) and what they contain.
    """
    rng = random.Random(config.seed)
    place_rng = random.Random(config.seed + 1)  # its own, so the place leaves the other draws be
    report = RaftReport()
    distractor_count = documents - 1
    # One batched search for all questions; the extra depth leaves room to skip the oracle.
    retrieved = search_many([p.question for p in pairs], documents + 2)
    examples: list[ChatExample] = []
    refusal = refusal_sentence(style)
    for pair, hits in zip(pairs, retrieved):
        oracle = oracle_hits[pair.chunk_id]
        distractors = [h for h in hits if h.chunk_id != pair.chunk_id][:distractor_count]
        keep_oracle = rng.random() >= config.without_oracle
        if not keep_oracle:
            shown = list(distractors)
        elif config.oracle_place == "random":
            shown = [*distractors, oracle]
            place_rng.shuffle(shown)
        else:
            shown = _in_retrieved_order(hits, oracle, documents)
        prompt_docs = [PromptDocument.of(h) for h in shown]
        holders = [n for n, hit in enumerate(shown, start=1) if _holds_evidence(hit.text, pair)]
        if any(_holds_evidence(h.text, pair) for h in distractors):
            report.oracle_duplicates += 1
        if keep_oracle and not holders:  # evidence not found verbatim: cite the oracle itself
            holders = [shown.index(oracle) + 1]
        if pair.kind == UNANSWERABLE:  # the oracle is shown and still does not answer
            holders = []
        grounding = None
        if holders:
            target = cited_answer(pair.answer, holders[:1])
            report.with_oracle += 1
            grounding = Grounding(
                pair.question,
                [doc.checked_text for doc in prompt_docs],
                pair.span or pair.answer,
                holders,
                pair.evidence,
                focused_prompt=rag_messages(pair.question, [PromptDocument.of(oracle)], style),
                whole_sentence=not pair.span and _is_sentence(pair.answer),
                verdict=pair.kind in ("yes", "no") and bool(pair.span),
            )
        else:
            target = refusal
            report.without_oracle += 1
        messages = rag_messages(pair.question, prompt_docs, style)
        examples.append(
            ChatExample([*messages, {"role": "assistant", "content": target}], grounding=grounding)
        )
        if rng.random() < config.closed_book and pair.kind != UNANSWERABLE:
            closed = closed_book_messages(pair.question, style)
            # What a context-distillation teacher reads instead (tune.context_distill).
            oracle_doc = PromptDocument.of(oracle)
            examples.append(
                ChatExample(
                    [*closed, {"role": "assistant", "content": pair.answer.strip()}],
                    teacher_messages=context_teacher_messages(pair.question, oracle_doc, style),
                )
            )
            report.closed_book += 1
    rng.shuffle(examples)
    report.examples = len(examples)
    return examples, report

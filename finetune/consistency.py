"""Does the base model, shown a question's chunk in the answer prompt, pick the pair's evidence
as its answer? A weak teacher writes questions that its chosen answer does not answer ('What
is the code of conduct?' for a sentence about 2024); the model that will be tuned, reading the
chunk as `rag` mode shows it, then prefers another sentence of the chunk, and the pair is
dropped.

The check ranks the chunk's sentences by the model's own likelihood of each as its reply
(`Generator.score_replies`: the prompt read once, every sentence scored in one batched pass),
so it costs one forward pass per pair, not a generation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from finetune.pairs import QAPair
from finetune.text import split_sentences, token_text
from retrieval.documents import Chunk
from retrieval.prompt import PromptDocument, rag_messages

ScoreReplies = Callable[[list[dict[str, str]], Sequence[str]], list[float]]
"""score(conversation, replies) -> one likelihood score per reply (higher: likelier)."""
Consistent = Callable[[Sequence[tuple[QAPair, Chunk]]], list[bool]]
"""consistent([(pair, its chunk), ...]) -> whether each pair passes."""
MAX_CANDIDATES = 24


def evidence_rank(pair: QAPair, chunk: Chunk, score: ScoreReplies) -> int | None:
    """The rank (0 = likeliest) of the pair's evidence among its chunk's sentences as the
    model's reply, or None when the chunk has no other sentence to compare with."""
    sentences = split_sentences(" ".join(chunk.text.split()))[:MAX_CANDIDATES]
    others = [
        sentence for sentence in sentences if token_text(sentence) != token_text(pair.evidence)
    ]
    if not others:
        return None
    candidates = [pair.evidence, *others]
    document = PromptDocument.of(chunk)
    scores = score(rag_messages(pair.question, [document]), candidates)
    return sum(other > scores[0] for other in scores[1:])


def rank_check(score: ScoreReplies, top: int = 1) -> Consistent:
    """A `Consistent` check: the evidence is among the model's `top` likeliest sentences."""

    def consistent(items: Sequence[tuple[QAPair, Chunk]]) -> list[bool]:
        verdicts = []
        for pair, chunk in items:
            rank = evidence_rank(pair, chunk, score)
            verdicts.append(rank is None or rank < top)
        return verdicts

    return consistent

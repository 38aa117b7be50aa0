"""Self-cognition training examples ("who are you?", "who made you?") for a persona, in the
style of LLaMA-Factory's identity data: the training questions of the persona's language, each
answered with one of its identity answers, in both layouts the answer engine uses.

- RAG layout (`rag+tuned`): the persona card first, as the engine shows it to such a question,
  then what the index retrieves for the question; the target cites the card as [1].
- Closed book (`tuned`): the question alone under the persona's system prompt; no citation.

The evaluation asks the persona's held-out identity questions, never these.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from finetune.data import ChatExample
from finetune.raft import cited_answer
from finetune.text import split_sentences
from retrieval.config import StyleConfig
from retrieval.persona import Identity, persona_hit, with_persona
from retrieval.prompt import PromptDocument, closed_book_messages, rag_messages
from retrieval.search import Hit


def identity_count(style: StyleConfig, other_examples: int, identity_texts: Identity) -> int:
    """How many identity examples to add: `identity_share` of the other examples, at least
    one per training question and layout."""
    if not style.persona or style.identity_share <= 0:
        return 0
    return max(
        round(style.identity_share * other_examples), 2 * len(identity_texts.train_questions)
    )


def identity_examples(
    identity_texts: Identity,
    style: StyleConfig,
    search_many: Callable[[list[str], int], list[list[Hit]]],
    documents: int,
    count: int,
    seed: int = 0,
) -> list[ChatExample]:
    """`count` identity conversations, alternating RAG and closed-book layouts.

    Args:
        identity_texts: the persona's questions and answers.
        style: the style whose system prompts the conversations carry.
        search_many: the project's retriever (questions, k → hits per question).
        documents: chunks per prompt, as the answer engine shows them.
        count: how many conversations.
        seed: picks the answers.
    """
    if count <= 0:
        return []
    rng = random.Random(seed)
    questions = list(identity_texts.train_questions)
    retrieved = dict(zip(questions, search_many(questions, documents)))
    examples = []
    for i in range(count):
        question = questions[(i // 2) % len(questions)]
        answer = rng.choice(identity_texts.answers)
        if i % 2 == 0:
            card = persona_hit(identity_texts, 1.0)
            shown = with_persona(retrieved[question], card, documents)
            messages = rag_messages(question, [PromptDocument.of(h) for h in shown], style)
            # Every sentence cites the card, so each passes the citation check on its own.
            target = " ".join(cited_answer(s, [1]) for s in split_sentences(answer))
        else:
            messages = closed_book_messages(question, style)
            target = answer
        examples.append(ChatExample([*messages, {"role": "assistant", "content": target}]))
    return examples

"""Pairs that the layout of a chunk states outright, without a model: an FAQ question and its
answer, a table row under its column headers, a 'Key: value' line, the first sentence under a
section heading. The extractors live in `finetune.rule_questions`; with
`synthesis.english_rules` they also rewrite English sentences into questions (grammar rules
for English text only, off by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from finetune.generators.naming import document_labels, with_document
from finetune.pairs import QAPair
from finetune.rule_questions import rule_pairs
from finetune.synthesis_config import SynthesisConfig
from retrieval.documents import Chunk


def generate(chunks: Sequence[Chunk], config: SynthesisConfig) -> list[QAPair]:
    """Structural pairs of every chunk, in chunk order, each question naming its document
    (`finetune.generators.naming`): twenty filings share 'What is the Commission File
    Number?'."""
    labels = document_labels(chunks)
    return [
        replace(pair, question=with_document(pair.question, labels[pair.source]))
        for pair in rule_pairs(chunks, config.max_pairs_per_chunk, sentences=config.english_rules)
    ]

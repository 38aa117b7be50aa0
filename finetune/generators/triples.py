"""Teacher-first questions, for a capable teacher (a 7B model behind Ollama or vLLM, a hub model
on a GPU): per chunk, the teacher writes several question / answer / evidence triples of mixed
types as JSON, sampled so that its candidates differ:

- factoid: answered by the passage;
- yes: a yes/no question the passage answers yes;
- no: a yes/no question with a false premise (a wrong number, name or condition), answered no;
- unanswerable: about the passage's topic but not answered by it; the target is the refusal
  sentence, so the tuned model learns to say so rather than to invent. The pair records the
  English `NO_ANSWER`; its training target is the style's sentence, written when the format
  stage builds the example (`finetune.raft`), so a new `style.refusal` needs no new synthesis.

Endpoints enforce the JSON schema through `response_format`; a local model is only asked for it
and every reply is validated here, an invalid one counted as unparsable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from finetune.generators.naming import document_labels, with_document
from finetune.pairs import TEACHER_PREFIX, UNANSWERABLE, QAPair
from finetune.synthesis_config import SynthesisConfig
from finetune.teacher import Messages, Teacher
from finetune.text import split_sentences, tokens
from retrieval.documents import Chunk
from retrieval.prompt import NO_ANSWER

from . import Progress

TYPES = ("factoid", "yes", "no", UNANSWERABLE)
MIN_CHUNK_WORDS = 25
"""Chunks shorter than this (headings, table fragments) say too little for several questions."""

SCHEMA = {
    "type": "object",
    "properties": {
        "pairs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "enum": list(TYPES)},
                    "question": {"type": "string"},
                    "answer": {"type": "string"},
                    "evidence": {"type": "string"},
                },
                "required": ["type", "question", "answer", "evidence"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["pairs"],
    "additionalProperties": False,
}

SYSTEM = (
    "You write training questions about a passage of a document, as JSON. Each question names "
    "the document, is written in the passage's language, and does not copy the passage."
)


def build_prompt(chunk: Chunk, label: str) -> Messages:
    """The chat prompt asking for mixed-type triples about `chunk`."""
    where = label or chunk.source
    request = (
        f"Document: {where}\n\nPassage:\n{chunk.text.strip()}\n\n"
        "Write 4 questions a user could ask about this document: 2 of type 'factoid' that the "
        "passage answers; 1 of type 'yes' (a yes/no question the passage answers yes) or 'no' "
        "(a yes/no question with a false premise, such as a wrong number, answered no); 1 of "
        "type 'unanswerable' (on the passage's topic, but the passage does not answer it). For "
        "each give: type; question; answer (short, from the passage; for 'yes' and 'no' start "
        "with Yes or No; empty for 'unanswerable'); evidence (one sentence copied exactly from "
        "the passage that supports the answer; empty for 'unanswerable').\n"
        'Reply with JSON only: {"pairs": [{"type": ..., "question": ..., "answer": ..., '
        '"evidence": ...}, ...]}'
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": request}]


def parse_triples(reply: str) -> list[dict[str, str]] | None:
    """The valid triples of a reply (the first JSON object in it), or None when it holds no
    JSON object with a 'pairs' list."""
    start = reply.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(reply[start:])
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("pairs"), list):
        return None
    valid = []
    for entry in value["pairs"]:
        if not isinstance(entry, dict):
            continue
        fields = {name: entry.get(name, "") for name in ("type", "question", "answer", "evidence")}
        if not all(isinstance(text, str) for text in fields.values()):
            continue
        fields = {name: " ".join(text.split()) for name, text in fields.items()}
        if fields["type"] in TYPES and fields["question"]:
            valid.append(fields)
    return valid


def supporting_sentence(answer: str, chunk_text: str) -> str:
    """The sentence of `chunk_text` that shares the most words with `answer`."""
    wanted = set(tokens(answer))
    sentences = split_sentences(" ".join(chunk_text.split())) or [chunk_text]
    return max(sentences, key=lambda sentence: len(wanted & set(tokens(sentence))))


def _pair(triple: dict[str, str], chunk: Chunk, label: str, generator: str) -> QAPair | None:
    kind, answer, evidence = triple["type"], triple["answer"], triple["evidence"]
    if kind == UNANSWERABLE:
        answer, evidence = NO_ANSWER, ""
    else:
        if not answer:
            return None
        evidence = evidence or supporting_sentence(answer, chunk.text)
        if kind in ("yes", "no"):
            first = answer.split(None, 1)[0].strip(".,!").lower() if answer.split() else ""
            if first not in ("yes", "no") or first != kind:
                return None  # the label must match its type
            answer = f"{kind.capitalize()}. {evidence}"
    return QAPair(
        question=with_document(triple["question"], label),
        answer=answer,
        chunk_id=chunk.chunk_id,
        source=chunk.source,
        page=chunk.page,
        section=chunk.section,
        evidence=evidence,
        generator=generator,
        kind=kind,
    )


def pick_chunks(chunks: Sequence[Chunk], budget: int) -> list[Chunk]:
    """Up to `budget` chunks with enough text, documents taking turns, each document's chunks
    evenly spaced along it. Deterministic."""
    by_source: dict[str, list[Chunk]] = {}
    for chunk in sorted(chunks, key=lambda chunk: (chunk.source, chunk.position)):
        if len(chunk.text.split()) >= MIN_CHUNK_WORDS:
            by_source.setdefault(chunk.source, []).append(chunk)
    quota = dict.fromkeys(by_source, 0)
    remaining = min(budget, sum(len(own) for own in by_source.values()))
    while remaining:
        for source, own in by_source.items():
            if remaining and quota[source] < len(own):
                quota[source] += 1
                remaining -= 1
    picked = []
    for source, own in by_source.items():
        count = quota[source]
        picked.extend(own[int((i + 0.5) * len(own) / count)] for i in range(count))
    return picked


def generate(
    chunks: Sequence[Chunk],
    config: SynthesisConfig,
    teacher: Teacher,
    progress: Progress | None = None,
) -> tuple[list[QAPair], int]:
    """Ask `teacher` for triples about enough chunks to write about `config.teacher_budget`
    questions (four a reply, `config.teacher_samples` replies a chunk).

    Returns:
        (pairs, number of replies that held no valid JSON).
    """
    samples = max(1, config.teacher_samples)
    labels = document_labels(chunks)
    budget = config.teacher_budget(len(chunks))
    chosen = pick_chunks(chunks, -(-budget // (4 * samples)))
    generator = f"{TEACHER_PREFIX}{teacher.name}"
    pairs: list[QAPair] = []
    unparsable = 0
    step = max(1, config.teacher_batch_size)
    for start in range(0, len(chosen), step):
        batch = chosen[start : start + step]
        prompts = [build_prompt(chunk, labels[chunk.source]) for chunk in batch]
        for chunk, replies in zip(batch, teacher.generate(prompts, samples, SCHEMA)):
            for reply in replies:
                triples = parse_triples(reply)
                if triples is None:
                    unparsable += 1
                    continue
                for triple in triples:
                    pair = _pair(triple, chunk, labels[chunk.source], generator)
                    if pair is not None:
                        pairs.append(pair)
        if progress:
            progress("teacher", min(start + step, len(chosen)), len(chosen))
    return pairs, unparsable

"""Questions written by a teacher model (sequence-level distillation): the teacher reads a chunk
and writes a question it answers with a quote; the tuned model later learns from those outputs.

Two backends share one contract, `Teacher.generate(prompts) -> texts`: a local transformers
model generating in left-padded greedy batches (`HFTeacher`), or any OpenAI-compatible chat
endpoint such as vLLM, Ollama or llama.cpp's server (`OpenAITeacher`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from finetune.pairs import TEACHER_PREFIX, QAPair
from finetune.synthesis_config import NO_TEACHER
from finetune.text import split_sentences, tokens
from retrieval.chat_endpoint import ChatEndpoint, EndpointError
from retrieval.chat_template import render_prompt
from retrieval.documents import Chunk

Messages = list[dict[str, str]]

TEACHER_SYSTEM = (
    "You write exam questions about a passage. Reply with exactly two lines:\n"
    "Question: <one question a user could ask that the passage answers>\n"
    "Answer: <the answer, quoted from the passage>"
)


class TeacherError(Exception):
    """A teacher that cannot be loaded or reached; the message says what to do."""


class Teacher(Protocol):
    """Writes one reply per chat prompt."""

    name: str
    """Shown in `QAPair.generator` as 'teacher:<name>'."""

    def generate(self, prompts: list[Messages]) -> list[str]:
        """One reply per prompt, in order."""
        ...


def _request(where: str, text: str) -> str:
    return (
        f"Passage from {where}:\n\n{text.strip()}\n\n"
        "Write one question a user could ask that this passage answers, and the answer quoted "
        "from the passage. Reply in exactly this format:\nQuestion: ...\nAnswer: ..."
    )


# One worked example: small teachers follow a shown format far better than a described one.
_EXAMPLE = [
    {
        "role": "user",
        "content": _request(
            "manuals/pump.txt, section Maintenance",
            "The filter cartridge should be replaced every six months. A worn cartridge lets "
            "dust into the pump and shortens its life.",
        ),
    },
    {
        "role": "assistant",
        "content": "Question: How often should the filter cartridge be replaced?\n"
        "Answer: The filter cartridge should be replaced every six months.",
    },
]


def build_prompt(chunk: Chunk) -> Messages:
    """The chat prompt that asks for one question about `chunk` and its quoted answer."""
    where = chunk.source + (f", section {chunk.section}" if chunk.section else "")
    return [
        {"role": "system", "content": TEACHER_SYSTEM},
        *_EXAMPLE,
        {"role": "user", "content": _request(where, chunk.text)},
    ]


# Possessive quantifiers (*+): each run is taken whole and never given back, which matches the
# same labels (neighbouring classes are disjoint) without retrying every split of a long blank
# run between two `\s*` (quadratic on 'a' followed by spaces).
_LABEL = r"[*_#\s]*+(?:\d++[.)]\s*+)?{}\s*+\d*+[*_]*+\s*+:\s*+[*_]*+"
_QUESTION = re.compile(_LABEL.format(r"(?:question|q)"), re.IGNORECASE)
_ANSWER = re.compile(_LABEL.format(r"(?:answer|a)"), re.IGNORECASE)


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip("*_\"'“”` ").strip()


def parse_teacher_output(text: str) -> tuple[str, str] | None:
    """The (question, answer) in a teacher reply, or None when it holds none.

    Tolerates Markdown bold labels, 'Q:'/'A:', numbering, quotes and text around the pair; a
    reply without labels is read as a question line ending in '?' followed by its answer.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    question = answer = None
    for position, line in enumerate(lines):
        label = _QUESTION.match(line)
        if label and question is None:
            question = _clean(line[label.end() :])
            # The answer may follow on the same line: 'Question: ...? Answer: ...'.
            inline = re.search(r"\s(?:answer|a)\s*:\s*", question, re.IGNORECASE)
            if inline:
                answer = _clean(question[inline.end() :])
                question = _clean(question[: inline.start()])
            continue
        label = _ANSWER.match(line)
        if label and question is not None and answer is None:
            answer = _clean(" ".join([line[label.end() :], *lines[position + 1 : position + 2]]))
            answer = _first_sentences(answer)
            break
    if question is None:
        asked = next((i for i, line in enumerate(lines) if line.rstrip().endswith("?")), None)
        if asked is None or asked + 1 >= len(lines):
            return None
        question, answer = _clean(lines[asked]), _first_sentences(_clean(lines[asked + 1]))
    if not question or not answer:
        return None
    if "?" in question:
        question = question[: question.index("?") + 1]
    return question, answer


def _first_sentences(text: str, limit: int = 2) -> str:
    # Small teachers ramble after the answer; keep what looks like the answer itself.
    text = re.split(r"\s(?:question|q)\s*:", text, flags=re.IGNORECASE)[0]
    return " ".join(split_sentences(text)[:limit]).strip()


def supporting_sentence(answer: str, chunk_text: str) -> str:
    """The sentence of `chunk_text` that shares the most words with `answer` (the evidence)."""
    wanted = set(tokens(answer))
    sentences = split_sentences(re.sub(r"\s+", " ", chunk_text)) or [chunk_text]
    return max(sentences, key=lambda sentence: len(wanted & set(tokens(sentence))))


def pairs_from_outputs(
    chunks: Sequence[Chunk], outputs: Sequence[str], teacher_name: str
) -> tuple[list[QAPair], int]:
    """Turn teacher replies (one per chunk) into pairs.

    Returns:
        (pairs, number of replies that held no question and answer).
    """
    pairs, unparsable = [], 0
    for chunk, output in zip(chunks, outputs):
        parsed = parse_teacher_output(output)
        if parsed is None:
            unparsable += 1
            continue
        question, answer = parsed
        pairs.append(
            QAPair(
                question=question,
                answer=answer,
                chunk_id=chunk.chunk_id,
                source=chunk.source,
                page=chunk.page,
                section=chunk.section,
                evidence=supporting_sentence(answer, chunk.text),
                generator=f"{TEACHER_PREFIX}{teacher_name}",
            )
        )
    return pairs, unparsable


class HFTeacher:
    """A local transformers chat model, generating greedily in left-padded batches.

    Args:
        model: 'embedded:SmolLM2-135M-Instruct', a model folder or a hub id.
        device: 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.
        batch_size: Prompts per forward pass; batching is what makes a CPU teacher usable.
        max_new_tokens: The longest reply.
    """

    def __init__(
        self, model: str, device: str = "auto", batch_size: int = 8, max_new_tokens: int = 64
    ) -> None:
        self.name = model
        self.model_spec = model
        self.device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._model = None
        self._tokenizer = None

    def load(self) -> None:
        """Load the model once (resolving and converting the embedded one on first use)."""
        if self._model is not None:
            return
        from retrieval.config import GenerationConfig
        from retrieval.models import load_generator

        model, tokenizer, path = load_generator(
            GenerationConfig(model=self.model_spec, device=self.device)
        )
        if not tokenizer.chat_template:
            raise TeacherError(
                f"the teacher {path} has no chat template: use an instruct/chat model such as "
                "embedded:SmolLM2-135M-Instruct"
            )
        tokenizer.padding_side = "left"  # generation continues from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._model, self._tokenizer = model, tokenizer

    def generate(self, prompts: list[Messages]) -> list[str]:
        import torch

        self.load()
        tokenizer, model = self._tokenizer, self._model
        # The chunk text inside each prompt cannot write turns (see retrieval.chat_template).
        texts = [render_prompt(tokenizer, messages) for messages in prompts]
        # Similar lengths in one batch waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        replies: list[str] = [""] * len(texts)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = tokenizer(
                [texts[index] for index in rows],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(model.device)
            with torch.inference_mode():
                output = model.generate(
                    **batch,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    # A second 'Question:' means the pair is complete and the model rambles on.
                    stop_strings=["\n\nQuestion:"],
                    tokenizer=tokenizer,
                )
            # output: (batch, prompt_len + new); the prompt part is identical for every row.
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            for index, row in zip(rows, new_tokens):
                replies[index] = tokenizer.decode(row, skip_special_tokens=True).strip()
        return replies


class OpenAITeacher:
    """A chat model behind an OpenAI-compatible `/v1/chat/completions` endpoint.

    Args:
        base_url: The server, e.g. 'http://localhost:8000' or 'http://localhost:11434/v1'.
        model: The model name the server expects.
        api_key: Sent as a bearer token when given (local servers usually need none).
        concurrency: Requests in flight at once (servers batch concurrent requests).
        max_tokens: The longest reply.
        timeout: Seconds to wait for one reply.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        max_tokens: int = 128,
        timeout: float = 120.0,
    ) -> None:
        self.endpoint = ChatEndpoint(
            base_url,
            "teacher",
            api_key=api_key,
            timeout=timeout,
            unreachable_hint="start the server, or set synthesis.teacher = none",
            rejected_hint=f"check teacher_model_name = {model!r}",
        )
        self.model = model
        self.name = model or base_url
        self.concurrency = concurrency
        self.max_tokens = max_tokens

    def _complete(self, messages: Messages) -> str:
        try:
            return self.endpoint.chat(self.model, messages, self.max_tokens)
        except EndpointError as error:
            raise TeacherError(str(error)) from error

    def generate(self, prompts: list[Messages]) -> list[str]:
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(self._complete, prompts))


def make_teacher(
    spec: str,
    model_name: str = "",
    device: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int = 64,
) -> Teacher | None:
    """Build the teacher a setting names.

    Args:
        spec: 'none' or '' for no teacher; 'http://...' or 'https://...' for an endpoint;
            otherwise 'embedded:...', a model folder or a hub id.
        model_name: The model name sent to an endpoint.
        device: Where a local teacher runs.
        batch_size: Prompts per batch (local) or requests in flight (endpoint).
        max_new_tokens: The longest reply.

    Returns:
        The teacher (nothing is loaded yet), or None.
    """
    spec = spec.strip()
    if spec.lower() in NO_TEACHER:
        return None
    if spec.startswith(("http://", "https://")):
        return OpenAITeacher(spec, model_name, concurrency=batch_size, max_tokens=max_new_tokens)
    return HFTeacher(spec, device=device, batch_size=batch_size, max_new_tokens=max_new_tokens)

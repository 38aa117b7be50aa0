"""The assistant's persona (`StyleConfig`): the line every answer mode's system prompt carries,
the identity questions and answers in the answer language, and the persona card.

The identity texts are data, one file per language in `retrieval/identity/` (the way
LLaMA-Factory ships `identity.json`): answers with {name} and {organization} slots, questions for
training, different questions held out for the evaluation, and the language's yes and no with
its form of a yes/no check question (`verdicts`, for the synthesized yes/no pairs). A language
without a file can still set the answer language; only a persona (a name) needs the file.

The persona card is a passage about the assistant, written from those answers. The answer engine
shows it, as a cited document, when a question is closer to the identity questions than to any
indexed chunk, so "who are you?" is answered from a shown passage like every other question: it
passes the relevance gate and the citation check instead of being refused or flagged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from retrieval.config import StyleConfig
from retrieval.text_units import UNSPACED_CHARS

IDENTITY_DIR = Path(__file__).parent / "identity"
PERSONA_SOURCE = "ragtune.toml [style]"
PERSONA_CHUNK_ID = "style:persona"
_LENGTH_TOKEN = re.compile(f"[{UNSPACED_CHARS}]|[^\\W{UNSPACED_CHARS}]+")


class StyleError(ValueError):
    """A style that cannot be applied; the message says what to do."""


@dataclass(frozen=True)
class Identity:
    """The identity texts of one persona in one language, with the slots filled in."""

    language: str
    """The language's English name, as the system prompt names it."""
    answers: tuple[str, ...]
    train_questions: tuple[str, ...]
    eval_questions: tuple[str, ...]
    """Held out from training: the evaluation asks these."""

    @property
    def card(self) -> str:
        """The persona card's text: every answer, each a sentence or two about the assistant."""
        return " ".join(self.answers)


def identity_languages() -> list[str]:
    return sorted(path.stem for path in IDENTITY_DIR.glob("*.json"))


@cache
def _identity_file(code: str) -> dict[str, Any]:
    path = IDENTITY_DIR / f"{code}.json"
    if not path.is_file():
        raise StyleError(
            f"style.language = {code!r}: no identity texts for it (have: "
            f"{', '.join(identity_languages())}); add {path.name} to {IDENTITY_DIR} in the "
            "format of en.json, or leave style.name empty"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def language_name(code: str) -> str | None:
    """The English name of an ISO 639-1 code that has identity texts, else None."""
    path = IDENTITY_DIR / f"{code}.json"
    return _identity_file(code)["language"] if path.is_file() else None


def identity(style: StyleConfig) -> Identity:
    """The persona's identity texts in its answer language (English when none is set).

    Raises:
        StyleError: the style has no name, or its language has no identity file.
    """
    if not style.persona:
        raise StyleError("style.name is empty: a persona needs a name")
    data = _identity_file(style.language.strip() or "en")
    name, organization = style.name.strip(), style.organization.strip()
    answers = data["answers"] if organization else data["answers_without_organization"]
    return Identity(
        language=data["language"],
        answers=tuple(a.format(name=name, organization=organization) for a in answers),
        train_questions=tuple(data["train"]),
        eval_questions=tuple(data["eval"]),
    )


@dataclass(frozen=True)
class Verdicts:
    """The answer language's yes and no, and its way of asking whether an answer is right."""

    yes: str
    no: str
    check_question: str
    """'{question} Is it {answer}?': a question made a yes/no one by proposing its answer."""

    def ask(self, question: str, answer: str) -> str:
        return self.check_question.format(question=question.strip(), answer=answer.strip())


def verdicts(style: StyleConfig | None) -> Verdicts | None:
    """The yes/no words of the style's answer language (English when none is set); None for a
    language whose identity file does not give them."""
    code = (style.language.strip() if style is not None else "") or "en"
    if not (IDENTITY_DIR / f"{code}.json").is_file():
        return None
    data = _identity_file(code)
    if not all(data.get(key) for key in ("yes", "no", "check_question")):
        return None
    return Verdicts(data["yes"], data["no"], data["check_question"])


def persona_preamble(style: StyleConfig | None) -> str:
    """What the system prompt says of the persona, its voice and its language ('' for none)."""
    if style is None or not style.active:
        return ""
    parts = []
    if style.persona:
        who = f"You are {style.name.strip()}"
        if style.organization.strip():
            who += f", the assistant of {style.organization.strip()}"
        parts.append(who + ".")
    if style.voice.strip():
        parts.append(" ".join(style.voice.split()))
    code = style.language.strip()
    if code:
        name = language_name(code)
        parts.append(
            f"Answer in {name}." if name else f"Answer in the language with ISO code '{code}'."
        )
    return " ".join(parts)


def length_phrase(style: StyleConfig | None, default: str) -> str:
    """'in about N words' for a style with a length target, else `default`."""
    if style is not None and style.answer_words:
        return f"in about {style.answer_words} words"
    return default


def answer_length(text: str) -> int:
    """Length in words, each character of an unspaced script (Chinese, Japanese) counting as
    one word, so that a length target means the same in every language."""
    return len(_LENGTH_TOKEN.findall(text))


def persona_hit(identity_texts: Identity, similarity: float) -> Any:
    """The persona card as a retrieved chunk, scored by its similarity to the question."""
    from retrieval.search import Hit

    return Hit(
        source=PERSONA_SOURCE,
        page=None,
        section=None,
        chunk_id=PERSONA_CHUNK_ID,
        score=similarity,
        text=identity_texts.card,
        dense_score=similarity,
    )


def with_persona(hits: list[Any], card: Any, documents: int) -> list[Any]:
    """`hits` with the persona card first, when it is closer to the question than every
    retrieved chunk (the last hit makes room), else `hits` as they are."""
    best = max((h.dense_score for h in hits if h.dense_score is not None), default=-1.0)
    if card.dense_score < best:
        return hits
    return [card, *hits][:documents]


class PersonaCard:
    """Decides, per question, whether the persona card is shown: the question's cosine to the
    nearest training identity question is the card's score, compared with the retrieved chunks'
    cosines and the engine's relevance threshold.

    Args:
        identity_texts: the persona's identity texts.
        encode: the retriever's encoder (texts → unit-norm rows).
        min_relevance: the engine's relevance threshold (`AnswerConfig.min_relevance`).
    """

    def __init__(self, identity_texts: Identity, encode: Any, min_relevance: float) -> None:
        self.identity = identity_texts
        self.encode = encode
        self.min_relevance = min_relevance
        self._keys = None

    def place(
        self,
        questions: list[str],
        hits: list[list[Any]],
        documents: int,
        question_vectors: Any = None,
    ) -> list[list[Any]]:
        """The hits of each question, with the card where it belongs; `question_vectors` are the
        questions' embeddings when the caller has them (encoded here otherwise)."""
        if not questions:
            return hits
        if self._keys is None:
            self._keys = self.encode(list(self.identity.train_questions))
        if question_vectors is None:
            question_vectors = self.encode(list(questions))
        similarity = (question_vectors @ self._keys.T).max(axis=1)
        placed = []
        for found, score in zip(hits, similarity.tolist()):
            if score < self.min_relevance:
                placed.append(found)
            else:
                placed.append(with_persona(found, persona_hit(self.identity, score), documents))
        return placed

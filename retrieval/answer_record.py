"""What the answer engine returns: one answered question with its verified citations, as plain
data that the CLI, the app, the server and the evaluation show or serialize."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from retrieval.attribution import Claim, with_markers
from retrieval.search import Hit

UNSUPPORTED_MARK = "(unsupported: no shown passage says this)"


@dataclass(frozen=True)
class Citation:
    """A retrieved chunk that the answer cites as [n]."""

    n: int
    source: str
    page: int | None
    section: str | None
    chunk_id: str
    score: float
    snippet: str
    """The sentences of the chunk that share the most words with the answer (for display)."""
    text: str
    """The whole chunk, for checking the answer against it."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Answer:
    """One answered question, as plain data."""

    question: str
    mode: str
    answer: str
    """The answer as shown: each sentence with its verified citation markers."""
    citations: list[Citation] = field(default_factory=list)
    """The verified citations: the shown chunks that support a sentence of the answer."""
    retrieved: list[Hit] = field(default_factory=list)
    refused: bool = False
    """True when the engine found nothing relevant or the model said it could not answer."""
    dropped_citations: int = 0
    """[n] markers that pointed at no shown document and were removed from the answer."""
    seconds: float = 0.0
    """Wall time spent on this answer (a batch's time divided by its size when batched)."""
    claims: list[Claim] = field(default_factory=list)
    """Each sentence of the answer, checked against the shown chunks (modes that retrieve)."""
    model_answer: str = ""
    """The text the model wrote, before verification (invalid markers and markup removed)."""
    model_citations: list[int] = field(default_factory=list)
    """The valid [n] markers the model wrote itself, in order of first use."""
    removed_markup: int = 0
    """Prompt tags (<document ...>) the model copied into its answer; removed."""
    quoted: bool = False
    """True when the answer is a quoted sentence of a shown chunk (answer.unsupported='quote')."""
    gated: bool = False
    """True when the answer is a refusal because no shown sentence was close enough to the
    question to quote (`answer.quote_gate`)."""

    @property
    def unsupported_claims(self) -> list[Claim]:
        return [c for c in self.claims if c.supported is False]

    def marked_text(self) -> str:
        """The answer as plain text with each unsupported sentence marked, for display."""
        if not self.unsupported_claims:
            return self.answer
        return " ".join(
            with_markers(c.text, c.cited) + (f" {UNSUPPORTED_MARK}" if c.supported is False else "")
            for c in self.claims
        )

    def to_dict(self, with_retrieved: bool = False) -> dict:
        data = {
            "question": self.question,
            "mode": self.mode,
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "refused": self.refused,
            "dropped_citations": self.dropped_citations,
            "seconds": round(self.seconds, 3),
            "claims": [c.to_dict() for c in self.claims],
            "model_answer": self.model_answer,
            "model_citations": list(self.model_citations),
            "removed_markup": self.removed_markup,
            "quoted": self.quoted,
            "gated": self.gated,
        }
        if with_retrieved:
            data["retrieved"] = [h.to_dict() for h in self.retrieved]
        return data


_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def best_snippet(text: str, answer: str, limit: int = 320) -> str:
    """The chunk's sentence (plus its neighbour when short) sharing the most words with the
    answer: what the user should read to check the claim."""
    sentences = [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]
    if not sentences:
        return ""
    wanted = {w.lower() for w in _WORD.findall(answer) if len(w) > 2}
    overlaps = [len(wanted & {w.lower() for w in _WORD.findall(s)}) for s in sentences]
    best = max(range(len(sentences)), key=lambda i: (overlaps[i], -i))
    snippet = sentences[best]
    if len(snippet) < limit // 2 and best + 1 < len(sentences):
        snippet += " " + sentences[best + 1]
    return snippet if len(snippet) <= limit else snippet[: limit - 1].rstrip() + "…"

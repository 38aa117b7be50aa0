"""The answer engine shared by `ragtune ask`, the app, the API server and the evaluation:
retrieve, build the prompt, generate with or without the tuned adapter, keep honest citations.

Modes:
    base        the model alone
    rag         the model reading the retrieved chunks
    tuned       the tuned model alone
    rag+tuned   the tuned model reading the retrieved chunks
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from retrieval.answer_record import Answer, Citation, best_snippet
from retrieval.attribution import (
    Claim,
    TermStatistics,
    answer_lead,
    candidate_sentences,
    cited_numbers,
    render,
    split_claims,
    strip_prompt_markup,
    verify_claims,
)
from retrieval.config import AnswerConfig, StyleConfig
from retrieval.embeddings import Encoder
from retrieval.generation import Generator
from retrieval.persona import PERSONA_SOURCE, PersonaCard, identity
from retrieval.prompt import (
    PromptDocument,
    closed_book_messages,
    is_no_answer,
    parse_citations,
    rag_messages,
    refusal_sentence,
)
from retrieval.quote_gate import EMBEDDING_BOUND, SELECTOR_BOUND, sentence_scores
from retrieval.search import Hit, Retriever

MODES = ("base", "rag", "tuned", "rag+tuned")
STATISTICS_SAMPLE = 20_000
"""Chunks read for the word frequencies behind claim verification; a sample beyond that."""


class ModeError(ValueError):
    """A mode that is unknown or not available in this project."""


def uses_retrieval(mode: str) -> bool:
    return mode.startswith("rag")


def uses_adapter(mode: str) -> bool:
    return mode.endswith("tuned")


def prompt_documents(hits: Sequence[Hit]) -> list[PromptDocument]:
    return [PromptDocument.of(h) for h in hits]


def quote_candidates(hits: Sequence[Hit]) -> list[tuple[str, int]]:
    """The shown sentences a quote may be: (sentence, chunk number from 1)."""
    return candidate_sentences([h.text for h in hits], [t for h in hits for t in h.headings()])


@dataclass(frozen=True)
class Pick:
    """The shown sentence picked to quote, its chunk's number from 1, and whether it scored
    below the quote gate's bound."""

    sentence: str
    number: int
    below_bound: bool = False


class AnswerEngine:
    """Answers questions in any of the four modes with one loaded model.

    Args:
        generator: the loaded model (with its adapter, when the project has one).
        retriever: the project's index; None disables the RAG modes.
        config: refusal threshold, batch size and default mode.
        documents: retrieved chunks put into the prompt.
        style: the persona, voice, length and refusal sentence every mode's system prompt
            carries; with a persona, its card is shown to questions that ask who the assistant
            is. The engine refuses in the style's sentence (`refusal_sentence`).
        selector: the evidence selector tuned beside the adapter (`finetune.selector`): the
            tuned modes pick their quote with it, the others with the retriever's encoder.
    """

    def __init__(
        self,
        generator: Generator,
        retriever: Retriever | None,
        config: AnswerConfig,
        documents: int = 3,
        style: StyleConfig | None = None,
        selector: Encoder | None = None,
        quote_bounds: dict[str, float] | None = None,
    ) -> None:
        self.generator = generator
        self.selector = selector
        self.quote_bounds = quote_bounds or {}
        self.retriever = retriever
        self.config = config
        self.documents = documents
        self.style = style if style is not None and style.active else None
        self.refusal = refusal_sentence(self.style)
        self._statistics: TermStatistics | None = None
        self.persona: PersonaCard | None = None
        if self.style is not None and self.style.persona and retriever is not None:
            self.persona = PersonaCard(identity(self.style), self._embed, config.min_relevance)

    @property
    def modes(self) -> list[str]:
        """The modes this engine can answer in."""
        return [
            m
            for m in MODES
            if (self.retriever is not None or not uses_retrieval(m))
            and (self.generator.has_tuned or not uses_adapter(m))
        ]

    @property
    def default_mode(self) -> str:
        if self.config.mode != "auto":
            return self.config.mode
        if self.retriever is None:
            return "tuned" if self.generator.has_tuned else "base"
        return "rag+tuned" if self.generator.has_tuned else "rag"

    def check_mode(self, mode: str | None) -> str:
        """The mode to use for `mode` (None: the default).

        Raises:
            ModeError: unknown mode, or one this project cannot serve (and why).
        """
        mode = mode or self.default_mode
        if mode not in MODES:
            raise ModeError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        if uses_adapter(mode) and not self.generator.has_tuned:
            raise ModeError(f"mode {mode!r} needs a tuned adapter: run `ragtune tune PROJECT`")
        if uses_retrieval(mode) and self.retriever is None:
            raise ModeError(f"mode {mode!r} needs an index: run `ragtune build PROJECT`")
        return mode

    def retrieve(self, questions: Sequence[str]) -> list[list[Hit]]:
        if self.retriever is None:
            raise ModeError("this engine has no index: run `ragtune build PROJECT`")
        questions = list(questions)
        if self.persona is None:
            return self.retriever.search_many(questions, self.documents)
        # One encoding serves the search and the persona card's placing.
        vectors = self._embed(questions) if questions else None
        hits = self.retriever.search_many(questions, self.documents, query_vectors=vectors)
        return self.persona.place(questions, hits, self.documents, vectors)

    def relevant(self, hits: Sequence[Hit]) -> bool:
        """Whether any hit is similar enough to the question to be worth reading.

        The fused hybrid score is a rank statistic with no absolute meaning, so the threshold
        applies to the cosine similarity of the dense candidates; a keyword-only index trusts
        any BM25 match.
        """
        if not hits:
            return False
        dense = [h.dense_score for h in hits if h.dense_score is not None]
        if not dense:
            return True
        return max(dense) >= self.config.min_relevance

    def _messages(self, question: str, mode: str, hits: Sequence[Hit]) -> list[dict[str, str]]:
        if uses_retrieval(mode):
            return rag_messages(question, prompt_documents(hits), self.style)
        return closed_book_messages(question, self.style)

    @property
    def statistics(self) -> TermStatistics | None:
        """Word frequencies over the indexed chunks (a sample of large indexes), read once."""
        if self._statistics is None and self.retriever is not None:
            store, size = self.retriever.index.store, self.retriever.size
            if size <= STATISTICS_SAMPLE:
                texts = (chunk.text for chunk in store.iter_chunks())
            else:
                step = size / STATISTICS_SAMPLE
                rows = [int(i * step) for i in range(STATISTICS_SAMPLE)]
                texts = (chunk.text for chunk in store.chunks_at(rows))
            self._statistics = TermStatistics.from_texts(texts)
        return self._statistics

    def _embed(self, texts: list[str]):
        return self.retriever.encoder.encode(texts)

    def verify(self, text: str, hits: Sequence[Hit]) -> list[Claim]:
        """The sentences of `text` checked against the shown chunks `hits`."""
        return self.check_claims(
            split_claims(text, verdict=True), [PromptDocument.of(h).checked_text for h in hits]
        )

    def check_claims(
        self, claims: Sequence[tuple[str, list[int]]], chunks: Sequence[str]
    ) -> list[Claim]:
        """(sentence, markers) claims checked against chunk texts numbered from 1, with the
        engine's word statistics, threshold, tie-breaking and refusal test."""
        return verify_claims(
            claims,
            chunks,
            statistics=self.statistics,
            threshold=self.config.support_threshold,
            embed=self._embed if self.retriever is not None else None,
            skip=self.is_refusal,
        )

    def _pick(self, question: str, mode: str, hits: Sequence[Hit]) -> Pick | None:
        """The shown sentence that best answers `question` (`AnswerConfig.quote_by`) and its
        chunk's number, or None when the chunks hold no candidate."""
        candidates = quote_candidates(hits)
        if not candidates:
            return None
        sentences = [sentence for sentence, _ in candidates]
        bound = None
        if self.config.quote_by == "embedding" and self.retriever is not None:
            tuned = self.selector is not None and uses_adapter(mode)
            encode = self.selector.encode if tuned else self._embed
            scores = sentence_scores(question, sentences, encode)
            # The bounds are calibrated on the corpus's questions: a question the persona card
            # answers ("who are you?") is not gated.
            if self.config.quote_gate and not any(h.source == PERSONA_SOURCE for h in hits):
                bound = self.quote_bounds.get(SELECTOR_BOUND if tuned else EMBEDDING_BOUND)
        else:
            scores = self.generator.score_replies(
                self._messages(question, mode, hits), sentences, tuned=uses_adapter(mode)
            )
        best = max(range(len(candidates)), key=lambda i: scores[i])
        sentence, number = candidates[best]
        return Pick(sentence, number, below_bound=bound is not None and scores[best] < bound)

    def _agrees(self, claims: Sequence[Claim], sentence: str) -> bool:
        """Whether every checkable claim is supported by `sentence` alone."""
        alone = self.check_claims([(c.text, []) for c in claims], [sentence])
        return all(c.supported is not False for c in alone)

    def _finish(
        self, question: str, mode: str, hits: list[Hit], text: str, seconds: float
    ) -> Answer:
        text, markup = strip_prompt_markup(text)
        if not uses_retrieval(mode):
            cleaned, _, _ = parse_citations(text, 0)
            return Answer(
                question,
                mode,
                cleaned,
                refused=self.is_refusal(cleaned),
                seconds=seconds,
                model_answer=cleaned,
                removed_markup=markup,
            )
        cleaned, model_cited, dropped = parse_citations(text, len(hits))
        answer = Answer(
            question,
            mode,
            cleaned,
            retrieved=hits,
            dropped_citations=dropped,
            seconds=seconds,
            model_answer=cleaned,
            model_citations=model_cited,
            removed_markup=markup,
        )
        if self.is_refusal(cleaned):
            answer.refused = True
            return answer
        claims = self.verify(cleaned, hits)
        policy = self.config.unsupported
        # Nothing left to show (the model wrote only prompt markup, say) counts as unsupported.
        empty = not cleaned.strip()
        if policy == "drop":
            claims = [c for c in claims if c.supported is not False]
        elif policy == "quote":
            # An answer that states nothing a chunk could confirm ('## Who', a bare 'Yes.') is
            # no answer to show as the model's: it gets the quote, its verdict kept before it.
            says_nothing = all(c.supported is None for c in claims)
            unsupported = empty or says_nothing or any(c.supported is False for c in claims)
            picked = None
            if unsupported or self.config.own_answers == "agreeing":
                picked = self._pick(question, mode, hits)
            if picked is not None and picked.below_bound:
                # No shown sentence is close enough to the question to answer it, so neither
                # is an answer made of them, supported or not.
                answer.answer, answer.refused, answer.gated = self.refusal, True, True
                return answer
            if picked is not None and (unsupported or not self._agrees(claims, picked.sentence)):
                quote = Claim(
                    f"\u201c{picked.sentence}\u201d",
                    cited=[picked.number],
                    supported=True,
                    support=1.0,
                )
                # The model's verdict ('Yes,', 'No.') stays before the quote that backs it:
                # it claims nothing a chunk could confirm, and a quote alone has no verdict.
                lead = answer_lead(cleaned)
                claims = [Claim(lead), quote] if lead else [quote]
                answer.quoted = True
        if (policy == "drop" and not claims) or (empty and not answer.quoted):
            answer.answer, answer.refused = self.refusal, True
            return answer
        answer.claims = claims
        if claims:  # else no claim and no quote (flag, or no candidate): shown as written
            answer.answer = render(claims)
        cited_text = {}
        for claim in claims:
            for n in claim.cited:
                cited_text[n] = cited_text.get(n, "") + " " + claim.text
        answer.citations = [
            Citation(
                n=n,
                source=hits[n - 1].source,
                page=hits[n - 1].page,
                section=hits[n - 1].section,
                chunk_id=hits[n - 1].chunk_id,
                score=hits[n - 1].score,
                snippet=best_snippet(hits[n - 1].text, cited_text[n]),
                text=hits[n - 1].text,
            )
            for n in cited_numbers(claims)
        ]
        return answer

    def is_refusal(self, text: str) -> bool:
        """Whether `text` says the style's refusal sentence or the English one."""
        return is_no_answer(text, self.style)

    def _refusal(self, question: str, mode: str, hits: list[Hit]) -> Answer:
        return Answer(question, mode, self.refusal, retrieved=hits, refused=True)

    def answer(self, question: str, mode: str | None = None) -> Answer:
        return self.answer_many([question], mode)[0]

    def answer_many(
        self,
        questions: Sequence[str],
        mode: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        hits: Sequence[list[Hit]] | None = None,
    ) -> list[Answer]:
        """Answer many questions with one retrieval pass and batched generation.

        Prompts are grouped by length so a batch wastes little work on padding. `hits`, one list
        per question, replaces the engine's own search in RAG modes (a benchmark that shows
        chosen chunks).

        Raises:
            ModeError: see `check_mode`.
        """
        mode = self.check_mode(mode)
        began = time.monotonic()
        if not uses_retrieval(mode):
            hits = [[] for _ in questions]
        elif hits is None:
            hits = self.retrieve(questions)
        elif len(hits) != len(questions):
            raise ValueError(f"{len(hits)} hit lists for {len(questions)} questions")
        retrieval_seconds = (time.monotonic() - began) / max(len(questions), 1)
        answers: list[Answer | None] = [None] * len(questions)
        pending = []
        for i, (question, found) in enumerate(zip(questions, hits)):
            if uses_retrieval(mode) and not self.relevant(found):
                answers[i] = self._refusal(question, mode, found)
            else:
                pending.append((i, self._messages(question, mode, found)))
        pending.sort(key=lambda item: sum(len(m["content"]) for m in item[1]))
        size = self.config.batch_size
        done = len(questions) - len(pending)
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            began = time.monotonic()
            texts = self.generator.generate([m for _, m in batch], tuned=uses_adapter(mode))
            each = (time.monotonic() - began) / len(batch) + retrieval_seconds
            for (i, _), text in zip(batch, texts):
                answers[i] = self._finish(questions[i], mode, hits[i], text, each)
            done += len(batch)
            if progress:
                progress(done, len(questions))
        return [a for a in answers if a is not None]

    def stream(
        self,
        question: str,
        mode: str | None = None,
        max_new_tokens: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated, then the finished `Answer` (whose text
        has the invalid citation markers removed).

        Args:
            question: the question.
            mode: one of `modes` (None: the default mode).
            max_new_tokens: a limit on the answer's length (None: the generation setting).
            stop: once set, generation ends at its next token (a client left or timed out).

        Raises:
            ModeError: see `check_mode`.
        """
        mode = self.check_mode(mode)
        began = time.monotonic()
        hits = self.retrieve([question])[0] if uses_retrieval(mode) else []
        if uses_retrieval(mode) and not self.relevant(hits):
            yield self.refusal
            yield self._refusal(question, mode, hits)
            return
        pieces = []
        messages = self._messages(question, mode, hits)
        # Only passed when given, so generators without a stop hook keep working.
        extra = {"stop": stop} if stop is not None else {}
        for piece in self.generator.stream(
            messages, tuned=uses_adapter(mode), max_new_tokens=max_new_tokens, **extra
        ):
            pieces.append(piece)
            yield piece
        if stop is not None and stop.is_set():
            return  # nobody waits for the answer: skip verifying it
        text = "".join(pieces).strip()
        yield self._finish(question, mode, hits, text, time.monotonic() - began)

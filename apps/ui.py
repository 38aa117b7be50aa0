"""What the pages share: the project the app was started on, its answer engine (loaded once per
process), and the display of answers and their sources.

Every text that comes from a document, a model or the user goes through `escape_markdown`, so
a document cannot make the page show an outside image, a link or HTML.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from builder.app_cli import parse_app_args
from builder.config import ConfigError
from builder.engine import open_engine
from builder.project import Project, open_project
from builder.safe_markdown import escape_markdown, highlight_segments, segments_markdown
from retrieval.answer import AnswerEngine, ModeError
from retrieval.answer_record import Answer, Citation
from retrieval.generation import AdapterError
from retrieval.index import IndexLayout, IndexLoadError
from retrieval.models import ModelNotFoundError
from retrieval.search import Hit

MODE_LABELS = {
    "base": "Base model",
    "rag": "RAG",
    "tuned": "Tuned model",
    "rag+tuned": "RAG + tuned",
}
MODE_HELP = {
    "base": "the model alone",
    "rag": "the model reading the retrieved passages",
    "tuned": "the tuned model alone",
    "rag+tuned": "the tuned model reading the retrieved passages",
}


MAX_QUESTION_CHARS = 2000
"""The longest question the pages send to the engine (retrieval and the prompt grow with it)."""


def question_refused(question: str) -> bool:
    """Show why `question` is not asked and return True when it is too long.

    The inputs have no `max_chars`: Streamlit would cut a pasted question silently.
    """
    if len(question) <= MAX_QUESTION_CHARS:
        return False
    st.error(
        f"The question has {len(question):,} characters; the limit is "
        f"{MAX_QUESTION_CHARS:,}. Shorten it and ask again."
    )
    return True


def text(value: str) -> None:
    """Show untrusted text as it is: nothing in it is rendered as Markdown or HTML."""
    st.markdown(escape_markdown(value))


def error(message: str) -> None:
    st.error(escape_markdown(message))


def app_args() -> tuple[Path, list[str]]:
    """The project folder and overrides given after `--` on the Streamlit command line."""
    try:
        return parse_app_args(sys.argv[1:])
    except ValueError as problem:
        error(str(problem))
        st.stop()


def project() -> Project:
    """The project the app serves, its settings read afresh on every run."""
    root, overrides = app_args()
    try:
        return open_project(root, overrides)
    except ConfigError as problem:
        error(str(problem))
        st.stop()


def _release(engine: AnswerEngine) -> None:
    if engine.retriever is not None:
        engine.retriever.close()


@st.cache_resource(
    max_entries=1, show_spinner="Loading the model and the index…", on_release=_release
)
def _load_engine(
    root: str, overrides: tuple[str, ...], adapter: str, generation: str
) -> AnswerEngine:
    # `adapter` and `generation` are only part of the cache key: a new tuned adapter or a
    # rebuilt index makes a new key, so the engine is loaded again (and the old one released).
    return open_engine(open_project(Path(root), list(overrides)))


def engine() -> AnswerEngine:
    """The project's answer engine, reloaded when its adapter or index generation changes."""
    root, overrides = app_args()
    current = project()
    try:
        adapter = current.current_adapter()
        generation = IndexLayout(current.index_root).current_name()
        return _load_engine(
            str(Path(root).resolve()), tuple(overrides), str(adapter or ""), generation or ""
        )
    except (ModelNotFoundError, AdapterError, IndexLoadError, FileNotFoundError) as problem:
        error(str(problem))
        st.stop()


def mode_picker(engine: AnswerEngine) -> str:
    """A radio of the modes this engine can answer in, the engine's default preselected."""
    modes = engine.modes
    default = engine.default_mode
    return st.radio(
        "Answer mode",
        modes,
        index=modes.index(default) if default in modes else 0,
        format_func=MODE_LABELS.get,
        captions=[MODE_HELP[m] for m in modes],
        # A new mode (a tuned adapter appeared) gives a new widget with the new default.
        key="mode-" + "-".join(modes),
    )


def where(item: Citation | Hit) -> str:
    """'manual.pdf · p. 3 · § Errors'."""
    parts = [item.source]
    if item.page:
        parts.append(f"p. {item.page}")
    if item.section:
        parts.append(f"§ {item.section}")
    return " · ".join(parts)


def show_citation(citation: Citation) -> None:
    with st.container(border=True):
        st.markdown(f"**\\[{citation.n}\\]** " + escape_markdown(where(citation)))
        segments = highlight_segments(citation.text, citation.snippet)
        st.markdown(segments_markdown(segments))


def show_details(answer: Answer) -> None:
    """Under an answer: its mode and time, removed citations, and the cited sources."""
    st.caption(
        escape_markdown(f"{MODE_LABELS.get(answer.mode, answer.mode)} · {answer.seconds:.1f} s")
    )
    if answer.dropped_citations:
        st.caption(
            f"{answer.dropped_citations} citation(s) pointed at no retrieved passage "
            "and were removed"
        )
    for citation in answer.citations:
        show_citation(citation)
    if answer.retrieved and not answer.citations:
        with st.expander(f"Retrieved passages ({len(answer.retrieved)}), none cited"):
            for hit in answer.retrieved:
                st.markdown("**" + escape_markdown(where(hit)) + "**")
                text(" ".join(hit.text.split())[:400])


def show_answer(answer: Answer) -> None:
    text(answer.marked_text())
    unsupported = len(answer.unsupported_claims)
    if unsupported:
        st.warning(
            f"{unsupported} of {len(answer.claims)} sentence(s) are not supported by any shown "
            "passage: check them before relying on them."
        )
    if answer.quoted:
        st.caption("Quoted from the shown passage that best answers the question.")
    if answer.gated:
        st.caption("No shown passage was close enough to the question to quote (the quote gate).")
    show_details(answer)


def stream_answer(engine: AnswerEngine, question: str, mode: str) -> Answer | None:
    """Show the answer as it is generated, then its sources; None when the mode is refused."""
    placeholder = st.empty()
    pieces: list[str] = []
    try:
        for piece in engine.stream(question, mode):
            if isinstance(piece, Answer):
                with placeholder.container():
                    show_answer(piece)
                return piece
            pieces.append(piece)
            placeholder.markdown(escape_markdown("".join(pieces)) + " ▌")
    except ModeError as problem:
        placeholder.error(escape_markdown(str(problem)))
    return None

"""Tune the model on the project's documents in the background, with live progress."""

import streamlit as st

from apps import ui
from builder.config import ConfigError
from builder.jobs import JobError, JobStatus, cancel_job, job_status, start_tune_job
from builder.safe_markdown import escape_markdown
from retrieval.index import IndexLayout

STAGES = {
    "starting": "Starting",
    "synthesize": "Writing practice questions from the documents",
    "split": "Setting questions aside for evaluation",
    "style": "Rewriting the answers in your house voice",
    "format": "Preparing the training examples",
    "train": "Training",
    "check": "Checking general answers before and after",
    "selector": "Training the evidence selector for quotes",
}

project = ui.project()
_root, overrides = ui.app_args()
st.title("Tune on your documents")
st.write(
    "Tuning writes question and answer pairs from your indexed documents, trains a small "
    "adapter on them and makes it the model the chat uses. It runs in the background: you can "
    "leave this page, or close the browser, and come back."
)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def show_running(status: JobStatus) -> None:
    label = STAGES.get(status.stage, status.stage)
    if status.fraction is None:
        st.progress(0.0, text=escape_markdown(label))
    else:
        st.progress(
            status.fraction, text=escape_markdown(f"{label}: {status.step} / {status.max_steps}")
        )
    facts = []
    if status.loss is not None:
        facts.append(f"loss {status.loss:.3f}")
    if status.eta_s is not None:
        facts.append(f"about {duration(status.eta_s)} left")
    if status.message:
        facts.append(status.message)
    if facts:
        st.caption(escape_markdown(" · ".join(facts)))
    if st.button("Cancel tuning", icon=":material/stop:"):
        cancel_job(project)
        st.rerun()


def show_finished(status: JobStatus) -> None:
    if status.stage == "done":
        adapter = project.current_adapter()
        where = f" The chat now uses {adapter.parent.name}." if adapter else ""
        st.success(escape_markdown(f"Tuning finished.{where}"))
    elif status.stage == "cancelled":
        st.info("The last tuning run was cancelled.")
    elif status.stage == "failed":
        ui.error(f"The last tuning run failed: {status.message}")
    has_index = IndexLayout(project.index_root).current() is not None
    if not has_index:
        st.info("Build the index on the Documents page first: tuning learns from it.")
    if st.button("Tune on my corpus", type="primary", disabled=not has_index):
        try:
            start_tune_job(project, [arg for o in overrides for arg in ("--set", o)])
        except JobError as problem:
            ui.error(str(problem))
        else:
            st.rerun()


def style_form() -> None:
    """The [style] section of ragtune.toml: who the assistant is and how it speaks."""
    style = project.config.style
    with st.expander("Persona and house voice", expanded=style.active):
        st.caption(
            "Tuning teaches the assistant its name and your voice; every answer mode's prompt "
            "carries them too. Leave a field empty to keep the default."
        )
        with st.form("style"):
            name = st.text_input("Assistant's name", style.name)
            organization = st.text_input("Organization", style.organization)
            voice = st.text_area("Voice (one paragraph)", style.voice)
            words = st.number_input(
                "Target answer length (words, 0: none)", 0, 400, style.answer_words
            )
            language = st.text_input(
                "Answer language (ISO code such as en, de, zh)", style.language
            )
            refusal = st.text_input(
                "Refusal sentence, in the answer language (empty: the English one)",
                style.refusal,
            )
            examples = st.text_input(
                "File of example answers, one per line (relative to the project)", style.examples
            )
            if st.form_submit_button("Save"):
                try:
                    project.save_style(
                        {
                            "name": name.strip(),
                            "organization": organization.strip(),
                            "voice": " ".join(voice.split()),
                            "answer_words": int(words),
                            "language": language.strip(),
                            "refusal": " ".join(refusal.split()),
                            "examples": examples.strip(),
                        }
                    )
                except ConfigError as problem:
                    ui.error(str(problem))
                else:
                    st.success("Saved to ragtune.toml; the next tuning run uses it.")


style_form()


@st.fragment(run_every=2)
def panel() -> None:
    status = job_status(project)
    if status.running:
        show_running(status)
    else:
        show_finished(status)
    if status.log_tail or status.running:
        with st.expander("Log (last lines)", expanded=status.stage == "failed"):
            st.code(status.log_tail or "(nothing yet)", language=None)


panel()

"""One question through several answer modes, side by side."""

import streamlit as st

from apps import ui
from builder.safe_markdown import escape_markdown

RESULT = "compare_result"

engine = ui.engine()
st.title("Compare answer modes")
modes = engine.modes
if len(modes) < 2:
    st.info(
        "Only the base model can answer in this project: build the index on the Documents "
        "page (adds RAG) or tune on the Tune page (adds the tuned modes) to compare."
    )
    st.stop()

with st.form("compare"):
    question = st.text_input("Question")
    chosen = st.multiselect(
        "Modes (two to four)",
        modes,
        default=modes,
        format_func=ui.MODE_LABELS.get,
        max_selections=4,
    )
    submitted = st.form_submit_button("Compare", type="primary")

if submitted:
    if not question.strip() or len(chosen) < 2:
        st.warning("Write a question and pick at least two modes.")
        st.stop()
    if ui.question_refused(question):
        st.stop()
    answers = {}
    for column, mode in zip(st.columns(len(chosen)), chosen):
        with column:
            st.subheader(ui.MODE_LABELS[mode])
            answers[mode] = ui.stream_answer(engine, question, mode)
    st.session_state[RESULT] = (question, answers)
elif RESULT in st.session_state:
    question, answers = st.session_state[RESULT]
    st.markdown("**Question:** " + escape_markdown(question))
    for column, (mode, answer) in zip(st.columns(len(answers)), answers.items()):
        with column:
            st.subheader(ui.MODE_LABELS[mode])
            if answer is not None:
                ui.show_answer(answer)

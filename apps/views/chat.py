"""Chat with the documents: streamed answers with their cited sources, in the chosen mode."""

import streamlit as st

from apps import ui

HISTORY = "chat_history"

engine = ui.engine()
with st.sidebar:
    mode = ui.mode_picker(engine)
    if st.button("Clear the conversation", icon=":material/delete:"):
        st.session_state[HISTORY] = []

st.title("Ask your documents")
if engine.retriever is None:
    st.info(
        "There is no index yet, so answers come from the model alone. Add documents and "
        "rebuild the index on the Documents page."
    )

history = st.session_state.setdefault(HISTORY, [])
for turn in history:
    with st.chat_message("user"):
        ui.text(turn["question"])
    with st.chat_message("assistant"):
        if turn["answer"] is not None:
            ui.show_answer(turn["answer"])

question = st.chat_input("Ask a question about your documents")
if question and not ui.question_refused(question):
    with st.chat_message("user"):
        ui.text(question)
    with st.chat_message("assistant"):
        answer = ui.stream_answer(engine, question, mode)
    history.append({"question": question, "answer": answer})

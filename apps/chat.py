"""The ragtune app. `ragtune app PROJECT` runs `streamlit run apps/chat.py -- PROJECT`.

This script only lays out the navigation; each page is a script in apps/views/.
"""

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="ragtune", layout="wide")
pages = [
    st.Page(VIEWS / "chat.py", title="Chat", default=True),
    st.Page(VIEWS / "compare.py", title="Compare modes"),
    st.Page(VIEWS / "documents.py", title="Documents"),
    st.Page(VIEWS / "tune.py", title="Tune"),
    st.Page(VIEWS / "evaluation.py", title="Evaluation"),
]
st.navigation(pages).run()

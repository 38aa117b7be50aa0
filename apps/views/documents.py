"""The documents folder: upload files, list and remove them, rebuild the index."""

import time

import streamlit as st

from apps import ui
from builder.build import BuildError, build
from builder.documents import DocumentError, list_documents, remove_document, save_upload
from builder.jobs import job_status
from builder.safe_markdown import escape_markdown
from retrieval.loaders import SUPPORTED_SUFFIXES

NOTES = "documents_notes"
UPLOADER = "documents_uploader"
STAGES = {
    "scan": "Checking files",
    "load": "Reading and chunking",
    "embed": "Embedding passages",
    "index": "Writing the index",
}


def file_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


project = ui.project()
st.title("Documents")
st.caption("Folder: " + escape_markdown(str(project.docs_dir)))

# Messages from the action that caused the last rerun.
for kind, note in st.session_state.pop(NOTES, []):
    getattr(st, kind)(escape_markdown(note))

st.subheader("Add documents")
with st.form("upload", clear_on_submit=True):
    files = st.file_uploader(
        f"Files ({', '.join(SUPPORTED_SUFFIXES)}; up to "
        f"{project.config.ingest.max_file_mb:g} MB each)",
        type=[suffix.lstrip(".") for suffix in SUPPORTED_SUFFIXES],
        accept_multiple_files=True,
        key=UPLOADER,
    )
    add = st.form_submit_button("Add to the documents folder")
if add and files:
    notes = []
    for file in files:
        try:
            saved = save_upload(project, file.name, file.getvalue())
        except DocumentError as problem:
            notes.append(("error", f"Not added: {problem}"))
        else:
            verb = "Replaced" if saved.replaced else "Added"
            notes.append(("success", f"{verb} {saved.source}"))
    st.session_state[NOTES] = notes
    st.rerun()

listing = list_documents(project)
st.subheader(f"In the folder ({len(listing.documents)})")
if listing.documents:
    st.dataframe(
        [
            {
                "document": d.source,
                "size": file_size(d.size),
                "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(d.modified)),
                "index": d.status,
                "passages": d.chunks,
            }
            for d in listing.documents
        ],
        hide_index=True,
        width="stretch",
    )
else:
    st.info("No documents yet: add some above.")
for skip in listing.skipped:
    st.caption(escape_markdown(f"Not indexed: {skip.source}: {skip.reason}"))

if listing.documents:
    with st.form("remove"):
        doomed = st.multiselect("Remove documents", [d.source for d in listing.documents])
        remove = st.form_submit_button("Remove the selected documents")
    if remove and doomed:
        notes = []
        for source in doomed:
            try:
                remove_document(project, source)
            except DocumentError as problem:
                notes.append(("error", str(problem)))
            else:
                notes.append(("success", f"Removed {source}"))
        st.session_state[NOTES] = notes
        st.rerun()

st.subheader("Index")
if listing.generation is None:
    st.write("Not built yet.")
elif listing.index_up_to_date:
    st.write(f"Generation {listing.generation}, up to date with the folder.")
else:
    st.warning(
        f"Generation {listing.generation} is out of date with the folder: rebuild to include "
        "the changes."
    )
tuning = job_status(project).running
if tuning:
    st.caption("A tuning job is reading the index; rebuild once it has finished.")
if st.button("Rebuild the index", type="primary", disabled=tuning or not listing.documents):
    bar = st.progress(0.0, text="Starting")
    last = [0.0]

    def show(stage: str, done: int, total: int) -> None:
        # Redraw at most ten times a second, and always at a stage's end.
        now = time.monotonic()
        if done < total and now - last[0] < 0.1:
            return
        last[0] = now
        fraction = done / total if total else 1.0
        bar.progress(fraction, text=f"{STAGES.get(stage, stage)}: {done} / {total}")

    try:
        report = build(project, progress=show)
    except BuildError as problem:
        bar.empty()
        ui.error(str(problem))
        for skip in problem.report.skipped:
            st.caption(escape_markdown(f"Skipped {skip.source}: {skip.reason}"))
        st.stop()
    except FileNotFoundError as problem:
        bar.empty()
        ui.error(str(problem))
        st.stop()
    bar.progress(1.0, text="Done")
    notes = [
        (
            "success",
            f"Index generation {report.generation}: {report.total_files} files, "
            f"{report.total_chunks} passages (added {len(report.added)}, updated "
            f"{len(report.updated)}, removed {len(report.removed)}) in {report.seconds:.1f} s",
        )
    ]
    notes += [("warning", f"Skipped {s.source}: {s.reason}") for s in report.skipped]
    st.session_state[NOTES] = notes
    st.rerun()

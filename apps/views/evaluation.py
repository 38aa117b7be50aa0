"""The latest A/B evaluation report: per-mode means with intervals, and a chart per metric."""

import streamlit as st

from apps import ui
from builder.reports import ReportError, metric_means, open_latest_report, summary_rows
from builder.safe_markdown import escape_markdown
from eval.labels import metric_info

project = ui.project()
st.title("Evaluation")
try:
    report = open_latest_report(project)
except ReportError as problem:
    ui.error(str(problem))
    st.stop()
if report is None:
    st.info("No evaluation report yet. Make one from a terminal:")
    st.code(f"ragtune eval {project.root}", language="bash")
    st.stop()

summary = report.summary
confidence = summary.get("bootstrap", {}).get("confidence", 0.95)
st.caption(
    escape_markdown(
        f"Run {report.run}: {summary.get('questions')} questions; mean "
        f"[{confidence:.0%} bootstrap interval] per answer mode"
    )
)
st.dataframe(summary_rows(summary), hide_index=True, width="stretch")
for sentence in report.sentences:
    st.markdown("- " + escape_markdown(sentence))

columns = st.columns(2)
for number, key in enumerate(summary["metrics"]):
    means = metric_means(summary, key)
    if not means:
        continue
    with columns[number % 2]:
        st.markdown("**" + escape_markdown(metric_info(key).label) + "**")
        st.bar_chart(means, horizontal=True, height=60 + 40 * len(means))

if report.html_path is not None:
    st.caption("Full report: " + escape_markdown(str(report.html_path)))
    st.download_button(
        "Download report.html",
        report.html_path.read_bytes(),
        file_name=f"{report.run}.html",
        mime="text/html",
    )

"""The evaluation report: the summary and its sentences, the terminal table, report.json and a
self-contained, escaped report.html."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from eval.charts import bar_chart, nice_ceiling
from eval.labels import mode_label
from eval.metrics import score_answer
from eval.questions import EvalQuestion
from eval.report import (
    comparison_pairs,
    format_summary_table,
    per_question_records,
    sentences_in_words,
    summarize,
    write_report,
)

MODES = ("base", "rag", "tuned", "rag+tuned")
HOSTILE = '<script>alert("x")</script><img src="http://evil.example/x.png" onerror="boom()">'


def _rows(n: int = 120) -> dict[str, list[dict]]:
    """Rows where rag+tuned is clearly better than rag on F1, equal on exact match."""
    rng = np.random.default_rng(7)
    base = rng.random(n)
    rows = {}
    for offset, mode in zip((0.0, 0.2, 0.05, 0.35), MODES):
        rag = "rag" in mode
        rows[mode] = [
            {
                "token_f1": float(min(1.0, value + offset + rng.normal(0, 0.05))),
                "exact_match": float(index % 3 == 0),
                "faithfulness": float(rng.random()) if rag else None,
                "latency_s": 0.5 + (1.0 if rag else 0.0) + float(rng.random()) * 0.1,
                "refusal": 0.0,
            }
            for index, value in enumerate(base)
        ]
    return rows


@pytest.fixture(scope="module")
def summary() -> dict:
    return summarize(_rows(), samples=500, seed=0)


def test_mode_labels():
    assert [mode_label(m) for m in MODES] == ["Base", "RAG", "Tuned", "RAG+tuned"]


def test_comparison_pairs_put_the_focus_pairs_first():
    pairs = comparison_pairs(list(MODES))
    assert pairs[:4] == [
        ("rag+tuned", "rag", True),
        ("rag+tuned", "tuned", True),
        ("rag", "base", True),
        ("tuned", "base", True),
    ]
    assert sorted(pairs[4:]) == [("rag+tuned", "base", False), ("tuned", "rag", False)]
    assert comparison_pairs(["rag", "x"]) == [("x", "rag", False)]


def test_summary_means_intervals_and_counts(summary):
    assert summary["modes"] == list(MODES) and summary["questions"] == 120
    assert summary["metrics"] == ["token_f1", "exact_match", "faithfulness", "refusal", "latency_s"]
    cell = summary["per_mode"]["rag"]["token_f1"]
    assert cell["low"] < cell["mean"] < cell["high"] and cell["n"] == 120
    assert summary["per_mode"]["base"]["faithfulness"] == {
        "mean": None,
        "low": None,
        "high": None,
        "n": 0,
    }
    assert len(summary["comparisons"]) == 6 * 5


def _comparison(summary, a, b, metric):
    return next(
        c for c in summary["comparisons"] if (c["a"], c["b"], c["metric"]) == (a, b, metric)
    )


def test_summary_verdicts(summary):
    assert _comparison(summary, "rag+tuned", "rag", "token_f1")["verdict"] == "better"
    assert _comparison(summary, "rag+tuned", "rag", "exact_match")["verdict"] == (
        "no clear difference"
    )
    assert _comparison(summary, "rag", "base", "latency_s")["verdict"] == "worse"
    assert _comparison(summary, "tuned", "base", "faithfulness")["verdict"] == "not comparable"


def test_summary_rejects_modes_with_different_questions():
    with pytest.raises(ValueError, match="same questions"):
        summarize({"rag": [{"token_f1": 1.0}], "base": []})
    with pytest.raises(ValueError, match="at least one mode"):
        summarize({})


def test_sentences_in_words(summary):
    sentences = sentences_in_words(summary)
    text = "\n".join(sentences)
    assert re.search(
        r"^RAG\+tuned beats RAG on token F1 by 0\.\d+ \(95% CI 0\.\d+ to 0\.\d+\)\.$", text, re.M
    )
    # exact match is 0 for both modes on every question: said as such, without an interval
    assert "RAG+tuned and RAG are equal on exact match for every question." in text
    assert "RAG is worse than Base on latency (s) by " in text
    # The 4 focus pairs x 5 metrics, less faithfulness where one side is closed-book.
    assert len(sentences) == 4 * 5 - 3
    assert len(sentences_in_words(summary, focus_only=False)) == 6 * 5 - 5


def test_the_headline_comes_first_and_exploratory_findings_are_holm_corrected():
    rng = np.random.default_rng(3)
    rows = {
        "rag": [{"correct": float(i % 2), "token_f1": float(rng.random())} for i in range(60)],
        "rag+tuned": [
            {"correct": float(i % 2 or i % 3 == 0), "token_f1": float(rng.random())}
            for i in range(60)
        ],
    }
    summary = summarize(rows, samples=1000)
    roles = {(c["metric"], c["role"]) for c in summary["comparisons"]}
    assert roles == {("correct", "headline"), ("token_f1", "exploratory")}
    headline = _comparison(summary, "rag+tuned", "rag", "correct")
    assert headline["p_holm"] is None and headline["p"] < 0.05
    first = sentences_in_words(summary)[0]
    assert first.startswith("Headline (pre-registered): RAG+tuned beats RAG on correctness")
    # A difference that one interval would call significant is not claimed once corrected.
    fake = dict(_comparison(summary, "rag+tuned", "rag", "token_f1"))
    fake.update(verdict="better", mean=0.1, low=0.01, high=0.2, p=0.04, p_holm=0.12)
    from eval.report import comparison_sentence

    assert "no clear difference" in comparison_sentence(fake)
    assert "Holm-adjusted p 0.12" in comparison_sentence(fake)


def test_a_gap_in_favour_of_the_second_mode_is_stated_as_a_positive_number():
    rows = {
        "rag": [{"latency_s": 2.0 + i % 2 * 0.1} for i in range(50)],
        "rag+tuned": [{"latency_s": 1.0 + i % 3 * 0.1} for i in range(50)],
    }
    sentence = sentences_in_words(summarize(rows, samples=300))[0]
    assert sentence.startswith("RAG+tuned beats RAG on latency (s) by 0.9"), sentence
    assert "-" not in sentence


def test_format_summary_table(summary):
    table = format_summary_table(summary)
    lines = table.splitlines()
    assert lines[0] == "120 questions; mean [95% bootstrap CI]"
    assert lines[1].split() == ["metric", "Base", "RAG", "Tuned", "RAG+tuned"]
    faithfulness = next(line for line in lines if line.startswith("faithfulness"))
    assert "n/a" in faithfulness and re.search(r"0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]", faithfulness)


def test_bar_chart_draws_bars_and_error_bars():
    svg = bar_chart("token F1 <1>", ["Base", "RAG"], [(0.5, 0.4, 0.6), (None, None, None)], 1.0)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 1 and svg.count('class="error"') == 1 and "n/a" in svg
    assert "token F1 &lt;1&gt;" in svg and "<1>" not in svg
    assert nice_ceiling(0.0) == 1.0 and nice_ceiling(3.2) == 5 and nice_ceiling(0.11) == 0.2


def _report_inputs():
    questions = [
        EvalQuestion("When is the rotor retired?", "after 5000 runs", ["manual/rotor.md"]),
        EvalQuestion(f"Hostile question {HOSTILE}?", "yes", ["evil.md"]),
    ]
    chunk = f"The rotor is retired after 5000 runs. {HOSTILE}"

    def answer(mode: str, text: str) -> dict:
        rag = "rag" in mode
        return {
            "question": "q",
            "mode": mode,
            "answer": text,
            "citations": [
                {
                    "n": 1,
                    "source": "manual/rotor.md",
                    "page": 2,
                    "section": HOSTILE,
                    "chunk_id": "c1",
                    "score": 0.8,
                    "snippet": HOSTILE,
                    "text": chunk,
                }
            ]
            if rag
            else [],
            "retrieved": [
                {"source": "manual/rotor.md", "chunk_id": "c1", "score": 0.8, "text": chunk}
            ]
            if rag
            else [],
            "refused": False,
            "dropped_citations": 0,
            "seconds": 0.3,
        }

    answers = {
        mode: [
            answer(mode, "The rotor is retired after 5000 runs [1]."),
            answer(mode, f"Yes. {HOSTILE} [1]"),
        ]
        for mode in MODES
    }
    rows = {mode: [score_answer(q, a) for q, a in zip(questions, answers[mode])] for mode in MODES}
    return questions, answers, rows


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style:
            self.style += data

    def handle_endtag(self, tag):
        self._in_style = False


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    questions, answers, rows = _report_inputs()
    summary = summarize(rows, samples=200)
    per_question = per_question_records(questions, answers, rows)
    meta = {
        "project": "demo <b>",
        "questions_file": "q.jsonl",
        "k": 5,
        "faithfulness_threshold": 0.6,
    }
    out = tmp_path_factory.mktemp("report") / "nested"
    json_path, html_path = write_report(out, summary, per_question, meta)
    return summary, per_question, json_path, html_path


def test_report_json_round_trips(written):
    summary, per_question, json_path, _ = written
    assert json_path.name == "report.json"
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert report["summary"] == summary
    assert report["questions"] == per_question
    assert report["sentences"] == sentences_in_words(summary)
    assert "60%" in report["definitions"]["faithfulness"]  # the threshold in meta is quoted
    first = report["questions"][0]
    assert first["reference"] == "after 5000 runs"
    rag = first["modes"]["rag"]
    assert rag["citations"][0]["text"].startswith("The rotor is retired")
    assert rag["retrieved"] == [{"source": "manual/rotor.md", "chunk_id": "c1", "score": 0.8}]
    assert rag["latency_s"] == 0.3 and rag["metrics"]["faithfulness"] == 1.0


def test_report_html_escapes_everything_and_loads_nothing(written):
    _, _, _, html_path = written
    page = html_path.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page  # the hostile text is shown, escaped
    assert "demo &lt;b&gt;" in page
    parser = _Tags()
    parser.feed(page)
    names = {tag for tag, _ in parser.tags}
    assert not names & {"script", "img", "link", "iframe", "object", "embed", "base", "form"}
    for tag, attrs in parser.tags:
        assert not {"src", "href", "srcset", "action", "onerror", "onload"} & set(attrs), tag
    assert "url(" not in parser.style and "@import" not in parser.style
    csp = next(a for t, a in parser.tags if t == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in csp["content"]


def test_report_html_has_charts_tables_definitions_and_answers(written):
    summary, _, _, html_path = written
    page = html_path.read_text(encoding="utf-8")
    assert page.count('<svg class="chart"') == len(summary["metrics"])
    assert 'class="error"' in page  # error bars
    assert "How each metric is computed" in page and "at least 60% of the sentence" in page
    assert "paired bootstrap" in page
    header = re.search(r"<th>#</th><th>question</th>(.*?)</tr>", page).group(1)
    assert re.findall(r"<th>(.*?)</th>", header) == ["Base", "RAG", "Tuned", "RAG+tuned"]
    assert page.count("The rotor is retired after 5000 runs [1].") == 4  # one per mode
    assert "manual/rotor.md, p. 2" in page

"""Each benchmark script's --smoke mode, run as a user runs it (a subprocess): it must exit 0 and
print its table with real figures. Every script embeds with the real all-MiniLM-L6-v2 and starts
fresh Python processes that import torch, so each takes longer than 20 s: the slow tier."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBMEDQA = ROOT.parent / "shared" / "data" / "pubmedqa"
NUMBER = r"[-+]?\d+(?:\.\d+)?"


def run_smoke(script: str, *extra: str, timeout: int = 600) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--smoke", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{script} --smoke failed:\n{result.stderr[-4000:]}"
    return result.stdout


def cells(output: str, label: str) -> list[str]:
    """The cells of the table row that starts with `label` (columns are 2+ spaces apart)."""
    for line in output.splitlines():
        if re.match(re.escape(label) + r"(\s{2,}|$)", line):
            return [label, *re.split(r"\s{2,}", line[len(label) :].strip())]
    raise AssertionError(f"no row {label!r} in:\n{output}")


def number(cell: str) -> float:
    found = re.match(NUMBER, cell)
    assert found, f"not a number: {cell!r}"
    return float(found.group())


@pytest.mark.slow
def test_train_smoke_compares_like_with_like():
    out = run_smoke("train.py")
    assert re.search(r"^trainer\s+method\s+batch\s+tokens/s\s+tokens/CPU-s\s+peak", out, re.M)
    ours = cells(out, "ragtune (finetune.train)")
    plain = cells(out, "plain trl SFTTrainer, same settings")
    defaults = cells(out, "out of the box: full fine-tune, trl defaults")
    assert ours[1:3] == plain[1:3] == ["lora", "4"]
    assert defaults[1:3] == ["full", "8"]
    for row in (ours, plain, defaults):
        assert number(row[3]) > 0 and number(row[5]) > 0  # tokens/s, peak MiB
    # The same batch through the same weights: the first-step losses agree.
    assert abs(number(ours[6]) - number(plain[6])) < 1e-3
    assert cells(out, "settings that differ, ragtune vs same-settings trl")[1] == "0"
    assert number(cells(out, "tokens/s, ragtune ÷ same-settings trl")[1]) > 0
    assert number(cells(out, "synthesis, rules, kept pairs/s")[1]) > 0


@pytest.mark.slow
def test_answer_smoke_reports_documents_and_refusals_apart():
    out = run_smoke("answer.py")
    assert "3 chunks in the prompt (answer.documents of the config that ran)" in out
    assert cells(out, "chunks in the rag prompt (answer.documents)")[1] == "3"
    # Two gold questions generate; the off-topic one is refused without generating.
    assert cells(out, "questions timed: generated / refused without generating")[1] == "2 / 1"
    ttft = cells(out, "TTFT p50 / p95 s, generated: ragtune engine.stream")[1]
    assert re.fullmatch(rf"{NUMBER} / {NUMBER}", ttft)
    assert number(cells(out, "refusal without generating, p50 / p95 s")[1]) > 0
    served = cells(out, "serve: 3 concurrent clients, generated, p50 / p95 s")
    assert served[2].startswith("2 requests")
    assert cells(out, "serve: refused without generating, p50 / p95 s")[2].startswith("1 request")


@pytest.mark.slow
def test_backends_smoke_puts_both_backends_side_by_side():
    out = run_smoke("backends.py")
    # Both backends on the same prompts, one column each.
    assert cells(out, "backend")[1] == "transformers | llamacpp"
    assert cells(out, "answers timed (rag, generated)")[1] == "2 | 2"
    for label in ("decode tokens/s (engine.stream)", "8-token answer, total s p50"):
        assert all(number(side) > 0 for side in cells(out, label)[1].split(" | "))
    ttfts = cells(out, "TTFT p50 / p95 s (engine.stream)")[1].split(" | ")
    assert all(re.fullmatch(rf"{NUMBER} / {NUMBER}", side) for side in ttfts)
    served = cells(out, "3 concurrent clients (serve), generated, p50 / p95 s")
    assert served[2] == "answers at once: 1 | 4"


@pytest.mark.slow
def test_ingest_smoke_reports_recall_against_exact_search():
    out = run_smoke("ingest.py", "--data", str(PUBMEDQA))
    assert re.search(r"^vector index\s+recall@10, PubMedQA questions", out, re.M)
    assert cells(out, "flat (exact)")[1] == "1.000"
    for name in ("hnsw (production)", "ivf"):
        row = cells(out, name)
        assert 0 < number(row[1]) <= 1 and 0 < number(row[2]) <= 1
        assert re.fullmatch(rf"{NUMBER} / {NUMBER}", row[3])  # dense p50 / p95 ms
    assert re.search(r"search at 3000 chunks: \d+ real texts", out)
    assert number(cells(out, "hybrid search (Retriever, HNSW index), p50 / p95 ms")[1]) > 0
    assert number(cells(out, "build end to end, chunks/s")[1]) > 0


@pytest.mark.slow
def test_pubmedqa_smoke_runs_both_variants():
    out = run_smoke("pubmedqa.py", "--data", str(PUBMEDQA))
    assert re.search(r"^system\s+accuracy % \[95% CI\]", out, re.M)
    for label in ("RAG", "RAG + tuned on synthesized pairs", "RAG + tuned on 4 labelled"):
        assert re.fullmatch(rf"{NUMBER} \[{NUMBER}, {NUMBER}\]", cells(out, label)[1])
    assert re.search(rf"\(3 questions\): hit@5 {NUMBER}, MRR {NUMBER}", out)


@pytest.mark.slow
def test_sec10q_smoke_reports_verified_citations_on_real_filings():
    out = run_smoke("sec10q.py", "--data", str(ROOT.parent / "shared" / "data" / "sec10q"))
    assert "SEC 10-Q: 2 filings, 2 questions" in out
    assert re.search(r"gold filing in the top 5 retrieved: \d/2", out)
    assert cells(out, "metric")[1:] == ["base", "rag"]
    assert cells(out, "fact errors per answer")[1] == "n/a"  # base does not retrieve
    assert number(cells(out, "gold-token recall")[2]) >= 0


@pytest.mark.slow
def test_synthesis_smoke_reports_pairs_by_source_type_and_file():
    out = run_smoke("synthesis.py")
    kept = cells(out, "kept pairs (of generated)")
    assert number(kept[1]) > 0
    assert cells(out, "  structural: kept (generated)")[1]
    assert cells(out, "  teacher: kept (generated)")[1]
    assert number(cells(out, "files with a kept pair")[1]) > 0


@pytest.mark.slow
def test_synthesis_structural_smoke_counts_the_layout_rules_pairs():
    out = run_smoke("synthesis.py", "--structural")
    assert number(cells(out, "structural pairs, before the filters")[1]) > 0
    assert re.fullmatch(r"\d+/\d+", cells(out, "files with a pair")[1])


RETRIEVAL_STAGES = (
    "naive: LangChain splitter 1000/150 + flat FAISS",
    "dense",
    "BM25",
    "hybrid (RRF)",
    "hybrid + document stage",
    "hybrid + headers",
    "hybrid + headers + document stage",
    "+ PDF tables (default)",
)


@pytest.mark.slow
def test_retrieval_smoke_reports_every_stage_beside_the_naive_baseline():
    out = run_smoke("retrieve.py")
    assert re.search(r"^SEC 10-Q: 2 documents, 3 questions", out, re.M)
    assert re.search(r"^PubMedQA: 10 documents, 10 questions", out, re.M)
    header = r"^stage\s+hit@1\s+hit@3\s+hit@5\s+hit@10\s+MRR@10\s+ms/question p50"
    assert len(re.findall(header, out, re.M)) == 2
    for label in RETRIEVAL_STAGES:
        row = cells(out, label)
        hits = [number(cell) for cell in row[1:5]]
        assert hits == sorted(hits) and hits[0] >= 0 and hits[-1] <= 1  # hit@k grows with k
        assert number(row[6]) > 0  # ms per question


@pytest.mark.slow
def test_quote_smoke_compares_every_selector_with_the_upper_bound():
    out = run_smoke("quote.py")
    assert "chunks shown (answer.documents)" in out
    bound = cells(out, "any sentence (upper bound)")
    for name in ("embedding", "likelihood, untuned", "first sentence of the top chunk"):
        row = cells(out, name)
        assert 0 <= number(row[1]) <= number(bound[1]) <= 1
        assert 0 <= number(row[2]) <= number(bound[2]) <= 1


@pytest.mark.slow
def test_refusals_smoke_asks_each_question_with_and_without_its_gold():
    out = run_smoke("refusals.py")
    assert "answerable questions with gold sources" in out
    for name in ("correct, gold shown", "refused, gold shown", "refused, gold removed"):
        assert 0 <= number(cells(out, name)[1]) <= 1
    kinds = ("refused", "own answer", "quoted")
    removed = [number(cells(out, f"{kind}, gold removed")[1]) for kind in kinds]
    assert abs(sum(removed) - 1) < 0.002  # each answer is one of the three (3 decimals)
    assert "refusal gap (removed - shown)" in out


@pytest.mark.slow
def test_own_answers_smoke_scores_both_rules_on_the_same_answers():
    out = run_smoke("own_answers.py")
    rows = {
        (found[0], found[1]): [float(v) for v in found[2:]]
        for found in re.findall(r"^(rag) +(\w+)" + rf" +({NUMBER})" * 4, out, re.M)
    }
    assert set(rows) == {("rag", "supported"), ("rag", "agreeing")}
    assert all(0 <= value <= 1 for values in rows.values() for value in values)
    # 'agreeing' only turns own answers into quotes.
    assert rows[("rag", "agreeing")][3] >= rows[("rag", "supported")][3]


@pytest.mark.slow
def test_scale_smoke_measures_both_engines_and_projects_10m_chunks():
    out = run_smoke("scale.py", "--data", str(PUBMEDQA))
    chunks = {cells(out, label)[4] for label in ("local", "ray, 1 worker", "ray, 2 workers")}
    assert len(chunks) == 1 and int(chunks.pop()) > 0  # the same corpus through every engine
    for label in ("local", "ray, 1 worker", "ray, 2 workers"):
        assert number(cells(out, label)[1]) > 0
    assert number(cells(out, "ray, 2 workers")[3]) > 0  # Ray's start, timed apart
    assert re.search(r"IVF-PQ at 20,000 vectors: \d+ real", out)
    assert 0 < number(cells(out, "recall@10 against exact search")[1]) <= 1
    latency = cells(out, "search p50 / p95 ms (k 50, nprobe 16)")[1]
    assert re.fullmatch(rf"{NUMBER} / {NUMBER}", latency)
    assert re.search(r"^projection for 10,000,000 chunks", out, re.M)
    for workers in ("2", "16", "64"):
        row = cells(out, workers)
        assert number(row[2].replace(",", "")) > 0  # embed hours


@pytest.mark.slow
def test_teacher_smoke_runs_both_backends_on_the_same_prompts():
    out = run_smoke("teacher.py")
    assert re.search(r"^measure\s+transformers\s+llamacpp", out, re.M)
    for row in ("load (s)", "s per question", "replies holding a question"):
        assert all(number(cell) >= 0 for cell in cells(out, row)[1:3])
    assert "identical greedy replies:" in out


def test_bootstrap_smoke_times_a_reports_intervals():
    """Imports no model library: fast enough for the fast tier."""
    out = run_smoke("bootstrap.py", timeout=120)
    mean, paired = cells(out, "mean, one mode"), cells(out, "paired difference")
    assert number(mean[1]) == 60 and number(paired[1]) == 90  # 15 metrics, 4 modes, 6 pairs
    assert number(mean[3]) > 0 and number(cells(out, "report")[2]) > 0

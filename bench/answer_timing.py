"""What the answer benchmarks share (`bench/answer.py`, `bench/backends.py`): the timed
questions, one streamed answer timed, `ragtune serve` under concurrent clients, the table.
Imported first by both, it quiets the model libraries before they load."""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from builder.sample_corpus import load_sample_questions
from retrieval.answer import AnswerEngine
from retrieval.answer_record import Answer

MODEL = "embedded:SmolLM2-135M-Instruct"

DEVICES = ["generation.device=cpu", "embedding.device=cpu"]

OFF_TOPIC = "Which team won the 1966 football World Cup final at Wembley?"
"""Smoke mode's question that the sample corpus cannot answer, so that a refusal is timed."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], digits: int = 1) -> str:
    """'p50 / p95' of `values`, or 'n/a' when there are none."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.{digits}f} / {percentile(values, 0.95):.{digits}f}"


def gold_questions(docs: Path | None = None) -> list[str]:
    """The sample corpus's gold questions; with `docs`, those whose document is in it."""
    return [
        item["question"]
        for item in load_sample_questions()
        if docs is None or (docs / item["source"]).is_file()
    ]


def count_tokens(engine: AnswerEngine, text: str) -> int:
    return len(engine.generator.tokenizer(text, add_special_tokens=False)["input_ids"])


def time_engine(engine: AnswerEngine, question: str) -> dict:
    """ragtune end to end: everything `ragtune ask` and the server do for one question."""
    started = time.perf_counter()
    first = None
    pieces = []
    refused = False
    for item in engine.stream(question, "rag"):
        if first is None:
            first = time.perf_counter() - started
        if isinstance(item, Answer):
            refused = item.refused
            break
        pieces.append(item)
    total = time.perf_counter() - started
    return {
        "ttft": first,
        "total": total,
        "tokens": count_tokens(engine, "".join(pieces)),
        "refused": refused,
    }


def decode_rate(runs: list[dict]) -> float:
    """Tokens per second after the first one arrived."""
    return sum(r["tokens"] - 1 for r in runs) / sum(r["total"] - r["ttft"] for r in runs)


def refuses_without_generating(engine: AnswerEngine, question: str) -> bool:
    return not engine.relevant(engine.retrieve([question])[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_server(
    project_root: Path,
    questions: list[str],
    clients: int,
    settings: list[str],
    refusing: set[str],
) -> dict:
    """Start `ragtune serve`, then fire `clients` concurrent requests at once; latencies of the
    questions in `refusing` (answered without generating) are kept apart."""
    import openai

    port = free_port()
    command = [sys.executable, "-m", "builder.cli", "serve", str(project_root), "--port", str(port)]
    # No 504s: on a busy machine the last of 20 queued answers can take minutes to come.
    command += ["--timeout", "1800"]
    for setting in settings:
        command += ["--set", setting]
    server = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    api = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600
    )
    try:
        started = time.perf_counter()
        while True:
            try:
                api.models.list()
                break
            except openai.APIConnectionError:
                if server.poll() is not None or time.perf_counter() - started > 300:
                    raise RuntimeError("ragtune serve did not start") from None
                time.sleep(0.2)
        startup = time.perf_counter() - started
        generated: list[float] = []
        refused_fast: list[float] = []
        cited, refused = [], []
        gate = threading.Barrier(clients)

        def one(question: str) -> None:
            gate.wait()
            began = time.perf_counter()
            reply = api.chat.completions.create(
                model="ragtune-rag", messages=[{"role": "user", "content": question}]
            )
            seconds = time.perf_counter() - began
            (refused_fast if question in refusing else generated).append(seconds)
            cited.append(bool(reply.citations))
            refused.append(reply.refused)

        threads = [
            threading.Thread(target=one, args=(questions[i % len(questions)],))
            for i in range(clients)
        ]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(30)
    if len(generated) + len(refused_fast) != clients:
        answered = len(generated) + len(refused_fast)
        raise RuntimeError(f"only {answered} of {clients} requests were answered")
    return {
        "startup": startup,
        "generated": generated,
        "refused_fast": refused_fast,
        "wall": wall,
        "cited": sum(cited),
        "refused": sum(refused),
    }


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>15}  note")
    print("-" * (width + 40))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>15}  {note}")


def answer_arguments(doc: str, smoke_help: str) -> argparse.Namespace:
    """--project, --questions, --clients and --smoke, as both answer benchmarks take them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a built project (default: build the sample)")
    parser.add_argument("--questions", type=int, default=10, help="questions timed one by one")
    parser.add_argument("--clients", type=int, default=20, help="concurrent API clients")
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    return parser.parse_args()

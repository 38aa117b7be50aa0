"""Answer benchmark: prints a table.

1. Time to first token and decode speed in mode rag (`answer.documents` chunks in the prompt, as
   the project's config sets it: 3 by default; the table says how many ran), embedded
   SmolLM2-135M on the CPU: ragtune's `engine.stream` (query embedding, hybrid search, prompt,
   generation) against a plain `model.generate` + `TextIteratorStreamer` on the very same
   prompt, retrieved beforehand and not timed. The two alternate question by question. Goal:
   ragtune's TTFT <= 1 s. Its TTFT is also split into retrieval, prompt building and the
   model's prefill, with the prompt's length. A what-if row times the plain baseline with the
   weights cast to bfloat16.
   Questions whose best chunk is below `answer.min_relevance` are refused by the engine without
   generating ("I could not find this in the documents."): they are timed apart and left out
   of the TTFT and decode figures, which compare generated answers only (plain generate cannot
   refuse, so it is not run on them).
2. API latency: N concurrent `openai` clients (default 20), each asking a different gold question,
   against `ragtune serve` running as a real subprocess on loopback: p50/p95 request latency,
   for generated answers and for refusals without generation apart.

3. Backends side by side (`generation.backend`, transformers then llamacpp), on the same rag
   prompts and the embedded SmolLM2-135M in both (the llamacpp backend runs the shipped Q4_1
   GGUF; transformers its dequantized float32 copy): TTFT and decode tokens/s of `engine.stream`,
   the total time of an answer forced to 64 tokens (EOS ignored, so both decode the same
   count), eval throughput (`answer_many` over other questions, the engine's batching: padded
   batches in transformers, `generation.parallel` sequences in llama.cpp) in `rag` and, when
   the project has an adapter, `rag+tuned`, with how many answers a second run words otherwise,
   and `ragtune serve` under N concurrent clients, each backend in its own server process.

--smoke: a tiny random generator (tests/tiny_models.py) on 4 documents of the sample corpus,
3 questions (one off-topic, to be refused), 3 clients; the backend section runs the embedded
model on 2 questions with 8-token answers. Its figures only show that the script works.

Usage:
    python bench/answer.py [--project DIR] [--questions 10] [--clients 20] [--smoke]
        [--backends-only]
Without --project it writes the sample corpus and builds it in a temporary folder.
"""

from __future__ import annotations

import argparse
import copy
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from machine import OtherLoad
from smoke import TINY_LABEL, build_sample, single_threaded, tiny_generator

from builder.engine import open_engine
from builder.project import open_project
from builder.sample_corpus import load_sample_questions
from retrieval.answer import AnswerEngine
from retrieval.answer_record import Answer
from retrieval.prompt import NO_ANSWER

MODEL = "embedded:SmolLM2-135M-Instruct"
DEVICES = ["generation.device=cpu", "embedding.device=cpu"]
OFF_TOPIC = "Which team won the 1966 football World Cup final at Wembley?"
"""Smoke mode's question that the sample corpus cannot answer, so that a refusal is timed."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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


def time_plain(engine: AnswerEngine, messages: list[dict[str, str]], model=None) -> dict:
    """The baseline: the same prompt straight into `model.generate` with a streamer."""
    import torch
    from transformers import TextIteratorStreamer

    tokenizer, model = engine.generator.tokenizer, model or engine.generator.model
    started = time.perf_counter()
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)

    def run() -> None:
        with torch.inference_mode():
            model.generate(
                **inputs,
                streamer=streamer,
                max_new_tokens=engine.generator.config.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )

    worker = threading.Thread(target=run)
    worker.start()
    first = None
    pieces = []
    for piece in streamer:
        if piece and first is None:
            first = time.perf_counter() - started
        pieces.append(piece)
    worker.join()
    total = time.perf_counter() - started
    return {"ttft": first, "total": total, "tokens": count_tokens(engine, "".join(pieces))}


def time_prefill(engine: AnswerEngine, messages: list[dict[str, str]]) -> float:
    """One forward pass over the prompt: the floor under any time to first token."""
    import torch

    batch = engine.generator._encode([messages])
    started = time.perf_counter()
    with torch.inference_mode():
        engine.generator.model(**batch, logits_to_keep=1)
    return time.perf_counter() - started


def decode_rate(runs: list[dict]) -> float:
    """Tokens per second after the first one arrived."""
    return sum(r["tokens"] - 1 for r in runs) / sum(r["total"] - r["ttft"] for r in runs)


def bench_stream(engine: AnswerEngine, questions: list[str]) -> dict:
    import torch

    # What-if: the same model in bfloat16 (ragtune loads float32 on the CPU).
    bf16 = copy.deepcopy(engine.generator.model).to(torch.bfloat16)
    for question in questions[:2]:  # warm-up: the encoder's lazy load, torch's first kernels
        time_engine(engine, question)
        messages = engine._messages(question, "rag", engine.retrieve([question])[0])
        time_plain(engine, messages)
        time_plain(engine, messages, bf16)
    ours, plain, plain_bf16, refusals = [], [], [], []
    retrieval_s, prompt_s, prompt_tokens, prefill_s = [], [], [], []
    for number, question in enumerate(questions):
        started = time.perf_counter()
        hits = engine.retrieve([question])[0]
        retrieval_s.append(time.perf_counter() - started)
        if not engine.relevant(hits):
            # The engine answers without generating; plain generate has no such path.
            refusal = time_engine(engine, question)
            if not refusal["refused"] or refusal["tokens"] > count_tokens(engine, NO_ANSWER):
                raise RuntimeError(f"expected a refusal without generation for {question!r}")
            refusals.append(refusal)
            continue
        started = time.perf_counter()
        messages = engine._messages(question, "rag", hits)
        prompt_tokens.append(
            len(engine.generator._encode([messages])["input_ids"][0])  # what generate() sees
        )
        prompt_s.append(time.perf_counter() - started)
        prefill_s.append(time_prefill(engine, messages))
        if number % 2:
            plain.append(time_plain(engine, messages))
            ours.append(time_engine(engine, question))
        else:
            ours.append(time_engine(engine, question))
            plain.append(time_plain(engine, messages))
        plain_bf16.append(time_plain(engine, messages, bf16))
    return {
        "ours": ours,
        "plain": plain,
        "plain_bf16": plain_bf16,
        "refusals": refusals,
        "retrieval_ms": statistics.median(retrieval_s) * 1000,
        "prompt_ms": median(prompt_s) * 1000,
        "prompt_tokens": median(prompt_tokens),
        "prefill_ms": median(prefill_s) * 1000,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


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


BACKENDS = ("transformers", "llamacpp")


def time_forced(engine: AnswerEngine, messages: list[dict[str, str]], tokens: int) -> float:
    """Seconds to generate exactly `tokens` new tokens (EOS ignored) for the prompt."""
    import torch

    generator = engine.generator
    started = time.perf_counter()
    if engine.generator.config.backend == "llamacpp":
        # No prompt cache: the prompt was just streamed, and transformers reads it afresh.
        request = generator._request(messages, False, tokens)
        request.update(ignore_eos=True, cache_prompt=False)
        reply = generator._server.handle_completions(request)
        made = reply["usage"]["completion_tokens"]
    else:
        batch = generator._encode([messages])
        with torch.inference_mode():
            output = generator.model.generate(
                **batch,
                **generator._generate_kwargs(tokens),
                min_new_tokens=tokens,
            )
        made = output.shape[1] - batch["input_ids"].shape[1]
    seconds = time.perf_counter() - started
    if made != tokens:
        raise RuntimeError(
            f"asked for {tokens} tokens, {engine.generator.config.backend} made {made}"
        )
    return seconds


def bench_backend(
    root: Path,
    settings: list[str],
    questions: list[str],
    served_questions: list[str],
    clients: int,
    forced_tokens: int,
    eval_questions: list[str],
) -> dict:
    """One backend: streamed answers, forced-length answers, eval throughput, then serve.

    The warm-up and eval questions are others than the timed ones, so that llama.cpp's prompt
    cache never holds a prompt it is timed on (transformers keeps none).
    """
    project = open_project(root, settings)
    engine = open_engine(project)
    for question in [q for q in served_questions if q not in questions][:2]:  # warm-up
        time_engine(engine, question)
    hits = engine.retrieve(questions)
    generating = [(q, h) for q, h in zip(questions, hits) if engine.relevant(h)]
    streamed = [time_engine(engine, q) for q, _ in generating]
    forced = [
        time_forced(engine, engine._messages(q, "rag", h), forced_tokens) for q, h in generating
    ]
    evals = {mode: bench_eval(engine, eval_questions, mode) for mode in eval_modes(engine)}
    refusing = {q for q in served_questions if refuses_without_generating(engine, q)}
    parallel = engine.generator.parallel
    del engine, project
    served = bench_server(root, served_questions, clients, settings, refusing)
    return {
        "streamed": streamed,
        "forced": forced,
        "evals": evals,
        "eval_count": len(eval_questions),
        "parallel": parallel,
        "served": served,
    }


def eval_modes(engine) -> list[str]:
    """The retrieving modes `ragtune eval` compares that this project can answer in."""
    return ["rag", "rag+tuned"] if engine.generator.has_tuned else ["rag"]


def bench_eval(engine, questions: list[str], mode: str) -> dict:
    """Seconds per answer of `answer_many` (the first run), and how many answers a second run
    of the same questions words differently (an A/B report should not move between runs)."""
    began = time.perf_counter()
    first = [a.model_answer for a in engine.answer_many(questions, mode)]
    seconds = (time.perf_counter() - began) / len(questions)
    second = [a.model_answer for a in engine.answer_many(questions, mode)]
    return {"s": seconds, "differ": sum(a != b for a, b in zip(first, second))}


def backend_rows(results: dict[str, dict], clients: int, forced_tokens: int) -> list[tuple]:
    """The side-by-side table: one column per backend."""

    def both(cell) -> str:
        return " | ".join(cell(results[b]) for b in BACKENDS)

    def streamed(result, key):
        return [r[key] for r in result["streamed"]]

    modes = list(results[BACKENDS[0]]["evals"])
    count = results[BACKENDS[0]]["eval_count"]

    return [
        ("backend", both(lambda r: r["name"]), ""),
        (
            "answers timed (rag, generated)",
            both(lambda r: str(len(r["streamed"]))),
            "the same questions and prompts",
        ),
        (
            "TTFT p50 / p95 s (engine.stream)",
            both(lambda r: spread(streamed(r, "ttft"), 3)),
            "ask, the app",
        ),
        (
            "decode tokens/s (engine.stream)",
            both(lambda r: f"{decode_rate(r['streamed']):.1f}"),
            "after the first token",
        ),
        (
            f"{forced_tokens}-token answer, total s p50",
            both(lambda r: f"{median(r['forced']):.3f}"),
            "EOS ignored: the same token count",
        ),
        *(
            (
                f"eval, {mode}: s per answer (answer_many)",
                both(lambda r, mode=mode: f"{r['evals'][mode]['s']:.3f}"),
                f"{count} other questions, batched; llamacpp decodes generation.parallel at once",
            )
            for mode in modes
        ),
        *(
            (
                f"eval, {mode}: answers worded otherwise in a second run",
                both(lambda r, mode=mode: str(r["evals"][mode]["differ"])),
                f"of {count}",
            )
            for mode in modes
        ),
        (
            f"{clients} concurrent clients (serve), generated, p50 / p95 s",
            both(lambda r: spread(r["served"]["generated"])),
            "answers at once: " + both(lambda r: str(r["parallel"])),
        ),
        (
            f"all {clients} clients answered (serve), s",
            both(lambda r: f"{r['served']['wall']:.1f}"),
            "",
        ),
    ]


def spread(values: list[float], digits: int = 1) -> str:
    """'p50 / p95' of `values`, or 'n/a' when there are none."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.{digits}f} / {percentile(values, 0.95):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a built project (default: build the sample)")
    parser.add_argument("--questions", type=int, default=10, help="questions timed one by one")
    parser.add_argument("--clients", type=int, default=20, help="concurrent API clients")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny random model, 3 questions: checks the script"
    )
    parser.add_argument(
        "--backends-only", action="store_true", help="only the backend comparison (section 3)"
    )
    args = parser.parse_args()
    if args.smoke:
        single_threaded()
    machine = OtherLoad()

    with tempfile.TemporaryDirectory() as temporary:
        root = args.project
        settings = [f"generation.model={MODEL}", *DEVICES]
        if args.smoke:
            tiny = tiny_generator(Path(temporary) / "tiny-llama")
            settings = [f"generation.model={tiny}", "generation.max_new_tokens=8", *DEVICES]
        if root is None:
            root = build_sample(Path(temporary), settings, args.smoke)
        project = open_project(root, settings)
        if args.smoke:
            questions = [*gold_questions(project.docs_dir)[:2], OFF_TOPIC]
            served_questions, args.clients = questions, len(questions)
        else:
            served_questions = gold_questions()
            questions = served_questions[2 : 2 + args.questions]
        if not args.backends_only:
            print("timing time to first token …", file=sys.stderr)
            engine = open_engine(project)
            documents, min_relevance = engine.documents, engine.config.min_relevance
            streamed = bench_stream(engine, questions)
            refusing = {q for q in served_questions if refuses_without_generating(engine, q)}
            del engine
            print(f"timing {args.clients} concurrent API clients …", file=sys.stderr)
            served = bench_server(root, served_questions, args.clients, settings, refusing)
        forced_tokens = 8 if args.smoke else 64
        # Fresh prompts for eval: the next questions after the timed ones.
        after = served_questions[2 + args.questions : 2 + 2 * args.questions]
        eval_questions = questions if args.smoke else after
        # llama.cpp gets the threads torch has (OMP_NUM_THREADS; unset: each picks its own).
        threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
        backend_settings = [f"generation.model={MODEL}", f"generation.threads={threads}", *DEVICES]
        if args.smoke:
            backend_settings.append(f"generation.max_new_tokens={forced_tokens}")
        backends = {}
        for backend in BACKENDS:
            print(f"timing backend {backend} …", file=sys.stderr)
            backends[backend] = bench_backend(
                root,
                [*backend_settings, f"generation.backend={backend}"],
                questions,
                served_questions,
                args.clients,
                forced_tokens,
                eval_questions,
            ) | {"name": backend}

    if not args.backends_only:
        print_engine_table(
            args, project, documents, min_relevance, streamed, served, machine, smoke=args.smoke
        )
    rows = [*backend_rows(backends, args.clients, forced_tokens), machine.row()]
    print(
        f"\nbackends side by side, mode rag, {MODEL} (llamacpp: its Q4_1 GGUF), CPU threads: "
        f"{threads or 'each backend its default'}"
    )
    print_rows(rows)


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>15}  note")
    print("-" * (width + 40))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>15}  {note}")


def print_engine_table(args, project, documents, min_relevance, streamed, served, machine, smoke):

    ours, plain, refusals = streamed["ours"], streamed["plain"], streamed["refusals"]
    model = TINY_LABEL if smoke else project.config.generation.model
    print(
        f"\nmode rag, {documents} chunks in the prompt (answer.documents of the config that ran), "
        f"answer.min_relevance {min_relevance}, {model}"
    )
    rows = [
        ("chunks in the rag prompt (answer.documents)", str(documents), "read from the engine"),
        (
            "questions timed: generated / refused without generating",
            f"{len(ours)} / {len(refusals)}",
            f"best chunk below min_relevance {min_relevance}: no generation",
        ),
        ("prompt tokens of the generated ones (median)", f"{streamed['prompt_tokens']:.0f}", ""),
    ]
    if ours:
        ttft = statistics.median(r["ttft"] for r in ours)
        rows += [
            (
                "TTFT p50 / p95 s, generated: ragtune engine.stream",
                spread([r["ttft"] for r in ours], 3),
                "goal p50 ≤ 1 s " + ("✓" if ttft <= 1 else "✗"),
            ),
            (
                "TTFT p50 / p95 s, generated: plain generate",
                spread([r["ttft"] for r in plain], 3),
                "",
            ),
            (
                "TTFT min s: ragtune / plain",
                f"{min(r['ttft'] for r in ours):.3f} / {min(r['ttft'] for r in plain):.3f}",
                "the least disturbed run",
            ),
            (
                "  of which retrieval / prompt building, ms",
                f"{streamed['retrieval_ms']:.0f} / {streamed['prompt_ms']:.0f}",
                "p50, timed apart",
            ),
            (
                "  the model's prefill of that prompt alone, ms",
                f"{streamed['prefill_ms']:.0f}",
                "p50, one forward pass",
            ),
            (
                "decode tokens/s: ragtune / plain",
                f"{decode_rate(ours):.1f} / {decode_rate(plain):.1f}",
                f"ratio {decode_rate(ours) / decode_rate(plain):.2f}",
            ),
            (
                "what-if bf16 weights: plain TTFT p50 s / decode tok/s",
                f"{statistics.median(r['ttft'] for r in streamed['plain_bf16']):.3f} / "
                f"{decode_rate(streamed['plain_bf16']):.1f}",
                "same prompts, model cast to bfloat16",
            ),
        ]
    rows.append(
        (
            "refusal without generating, p50 / p95 s",
            spread([r["total"] for r in refusals], 3),
            "retrieval, relevance check, the fixed sentence",
        )
    )
    rows += [
        ("serve: startup (load + warm-up), s", f"{served['startup']:.1f}", ""),
        (
            f"serve: {args.clients} concurrent clients, generated, p50 / p95 s",
            spread(served["generated"]),
            f"{len(served['generated'])} requests; all done in {served['wall']:.1f} s; "
            f"{served['cited']} cited, {served['refused']} refused in all",
        ),
        (
            "serve: refused without generating, p50 / p95 s",
            spread(served["refused_fast"]),
            f"{len(served['refused_fast'])} requests, in the same queue as the generated ones",
        ),
        machine.row(),
    ]
    print_rows(rows)


if __name__ == "__main__":
    main()

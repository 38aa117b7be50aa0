"""Generation backends side by side: prints a table.

`generation.backend` transformers then llamacpp, on the same rag prompts and the embedded
SmolLM2-135M in both (the llamacpp backend runs the shipped Q4_1 GGUF; transformers its
dequantized float32 copy): TTFT and decode tokens/s of `engine.stream`, the total time of an
answer forced to 64 tokens (EOS ignored, so both decode the same count), eval throughput
(`answer_many` over other questions, the engine's batching: padded batches in transformers,
`generation.parallel` sequences in llama.cpp) in `rag` and, when the project has an adapter,
`rag+tuned`, with how many answers a second run words otherwise, and `ragtune serve` under N
concurrent clients, each backend in its own server process. What `generation.backend = "auto"`
picks per use (`builder.engine.AUTO_BACKEND`) rests on this table.

--smoke: the embedded model on 4 documents of the sample corpus, 3 questions (one off-topic,
refused without generating), 3 clients, 8-token answers. Its figures only show that the script
works.

Usage:
    python bench/backends.py [--project DIR] [--questions 10] [--clients 20] [--smoke]
Without --project it writes the sample corpus and builds it in a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from answer_timing import (
    DEVICES,
    MODEL,
    OFF_TOPIC,
    answer_arguments,
    bench_server,
    decode_rate,
    gold_questions,
    median,
    print_rows,
    refuses_without_generating,
    spread,
    time_engine,
)
from machine import OtherLoad
from smoke import build_sample, single_threaded

from builder.engine import open_engine
from builder.project import open_project
from retrieval.answer import AnswerEngine

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


def main() -> None:
    args = answer_arguments(__doc__, "4 documents, 3 questions: checks the script")
    if args.smoke:
        single_threaded()
    machine = OtherLoad()
    forced_tokens = 8 if args.smoke else 64
    # llama.cpp gets the threads torch has (OMP_NUM_THREADS; unset: each picks its own).
    threads = int(os.environ.get("OMP_NUM_THREADS", "0"))
    settings = [f"generation.model={MODEL}", f"generation.threads={threads}", *DEVICES]
    if args.smoke:
        settings.append(f"generation.max_new_tokens={forced_tokens}")

    with tempfile.TemporaryDirectory() as temporary:
        root = args.project or build_sample(Path(temporary), settings, args.smoke)
        if args.smoke:
            questions = [*gold_questions(open_project(root, settings).docs_dir)[:2], OFF_TOPIC]
            served_questions, eval_questions, args.clients = questions, questions, len(questions)
        else:
            served_questions = gold_questions()
            questions = served_questions[2 : 2 + args.questions]
            # Fresh prompts for eval: the next questions after the timed ones.
            eval_questions = served_questions[2 + args.questions : 2 + 2 * args.questions]
        results = {}
        for backend in BACKENDS:
            print(f"timing backend {backend} …", file=sys.stderr)
            results[backend] = bench_backend(
                root,
                [*settings, f"generation.backend={backend}"],
                questions,
                served_questions,
                args.clients,
                forced_tokens,
                eval_questions,
            ) | {"name": backend}

    print(
        f"\nbackends side by side, mode rag, {MODEL} (llamacpp: its Q4_1 GGUF), CPU threads: "
        f"{threads or 'each backend its default'}"
    )
    print_rows([*backend_rows(results, args.clients, forced_tokens), machine.row()])


if __name__ == "__main__":
    main()

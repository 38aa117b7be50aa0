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

The two generation backends side by side: `bench/backends.py`.

--smoke: a tiny random generator (tests/tiny_models.py) on 4 documents of the sample corpus,
3 questions (one off-topic, to be refused), 3 clients. Its figures only show that the script
works.

Usage:
    python bench/answer.py [--project DIR] [--questions 10] [--clients 20] [--smoke]
Without --project it writes the sample corpus and builds it in a temporary folder.
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from answer_timing import (
    DEVICES,
    MODEL,
    OFF_TOPIC,
    answer_arguments,
    bench_server,
    count_tokens,
    decode_rate,
    gold_questions,
    median,
    print_rows,
    refuses_without_generating,
    spread,
    time_engine,
)
from machine import OtherLoad
from smoke import TINY_LABEL, build_sample, single_threaded, tiny_generator

from builder.engine import open_engine
from builder.project import open_project
from retrieval.answer import AnswerEngine
from retrieval.prompt import NO_ANSWER


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


def main() -> None:
    args = answer_arguments(__doc__, "a tiny random model, 3 questions: checks the script")
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
        print("timing time to first token …", file=sys.stderr)
        engine = open_engine(project)
        documents, min_relevance = engine.documents, engine.config.min_relevance
        streamed = bench_stream(engine, questions)
        refusing = {q for q in served_questions if refuses_without_generating(engine, q)}
        del engine
        print(f"timing {args.clients} concurrent API clients …", file=sys.stderr)
        served = bench_server(root, served_questions, args.clients, settings, refusing)

    print_engine_table(
        args, project, documents, min_relevance, streamed, served, machine, smoke=args.smoke
    )


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

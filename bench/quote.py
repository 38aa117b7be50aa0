"""Quote selection benchmark: which sentence of the shown chunks answers the question. Prints a
table.

`answer.unsupported = "quote"` answers with one sentence of the chunks shown to the model
(`retrieval.answer.quote_candidates`), picked by `answer.quote_by`. For each gold
question this script retrieves the chunks a `rag` prompt shows and scores every candidate
sentence with each selector:

- embedding: cosine of the question and the sentence in the project's embedding model;
- embedding, tuned selector: the same with the evidence selector `ragtune tune` trained beside
  the adapter (`finetune.selector`), which the tuned modes quote with;
- likelihood: the generator's mean log-probability of the sentence as its reply to the `rag`
  prompt (`Generator.score_replies`), untuned, and tuned when the project has an adapter;
- first sentence of the top chunk: what a selector that trusts retrieval alone would quote;
- any sentence (an upper bound): some candidate holds the gold answer.

Columns: the share of questions whose picked sentence holds the gold answer (normalized
containment, `eval.metrics.contains_gold`), and whose sentence comes from a gold source.

Default: the sample corpus built with the embedded models and its 58 gold questions (a corpus
written together with this code), or `--project DIR --questions FILE` for your own (JSONL of
question, answer, source or sources).

--smoke: a tiny random generator on 4 documents of the sample corpus and their questions; its
figures only show that the script works.

Usage:
    python bench/quote.py [--project DIR] [--questions FILE] [--embedding-only] [--smoke]

--embedding-only skips the likelihood selectors, which score every candidate with the generator
and take most of a run's time.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from smoke import TINY_LABEL, bench_project, project_parser, single_threaded

from builder.engine import open_engine
from builder.sample_corpus import load_sample_questions
from eval.grounding import same_source
from eval.metrics import contains_gold
from retrieval.answer import quote_candidates

SELECTORS = (
    "embedding",
    "embedding, tuned selector",
    "likelihood, untuned",
    "likelihood, tuned",
    "first sentence of the top chunk",
    "any sentence (upper bound)",
)


def read_questions(path: Path | None, docs: Path) -> list[dict]:
    """Gold questions as {question, answer, sources}; the sample's, limited to `docs`, without
    a file."""
    if path is None:
        rows = [item for item in load_sample_questions() if (docs / item["source"]).is_file()]
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [
        {
            "question": row["question"],
            "answer": row["answer"],
            "sources": row.get("sources") or [row["source"]],
        }
        for row in rows
    ]


def pick(scores: list[float]) -> int:
    return max(range(len(scores)), key=lambda i: scores[i])


def compare(
    engine, questions: list[dict], likelihood: bool = True
) -> tuple[dict[str, list[float]], int]:
    """{selector: [holds the gold answer, from a gold source] summed}, and questions scored."""
    tuned = likelihood and "rag+tuned" in engine.modes
    skip = set() if tuned else {"likelihood, tuned"}
    if not likelihood:
        skip.add("likelihood, untuned")
    if engine.selector is None:
        skip.add("embedding, tuned selector")
    totals = {name: [0.0, 0.0] for name in SELECTORS if name not in skip}
    scored = 0
    for item, hits in zip(questions, engine.retrieve([q["question"] for q in questions])):
        shown = hits[: engine.documents]
        candidates = quote_candidates(shown)
        if not candidates:
            continue
        scored += 1
        sentences = [sentence for sentence, _ in candidates]
        vectors = engine.retriever.encoder.encode([item["question"], *sentences])
        messages = engine._messages(item["question"], "rag", shown)
        picks = {
            "embedding": pick((vectors[1:] @ vectors[0]).tolist()),
            "first sentence of the top chunk": 0,
        }
        if likelihood:
            scores = engine.generator.score_replies(messages, sentences)
            picks["likelihood, untuned"] = pick(scores)
        if engine.selector is not None:
            selected = engine.selector.encode([item["question"], *sentences])
            picks["embedding, tuned selector"] = pick((selected[1:] @ selected[0]).tolist())
        if tuned:
            picks["likelihood, tuned"] = pick(
                engine.generator.score_replies(messages, sentences, tuned=True)
            )
        holds = [contains_gold(sentence, item["answer"]) for sentence in sentences]
        right = [
            any(same_source(shown[n - 1].source, gold) for gold in item["sources"])
            for _, n in candidates
        ]
        for name, index in picks.items():
            totals[name][0] += holds[index]
            totals[name][1] += right[index]
        totals["any sentence (upper bound)"][0] += any(holds)
        totals["any sentence (upper bound)"][1] += any(right)
    return totals, scored


def main() -> None:
    parser = project_parser(__doc__)
    parser.add_argument("--embedding-only", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        single_threaded()
    with tempfile.TemporaryDirectory() as temporary:
        # The likelihood selectors score replies, which the llama.cpp backend cannot do.
        project = bench_project(args, Path(temporary), ["generation.backend=transformers"])
        questions = read_questions(args.questions, project.docs_dir)
        engine = open_engine(project)
        began = time.monotonic()
        totals, scored = compare(engine, questions, likelihood=not args.embedding_only)
        seconds = time.monotonic() - began
    model = TINY_LABEL if args.smoke else project.config.generation.model
    print(
        f"\n{scored} questions with candidate sentences, {engine.documents} chunks shown "
        f"(answer.documents); generator {model}; {seconds:.0f} s\n"
    )
    width = max(len(name) for name in totals) + 2
    print(f"{'selector':<{width}}  holds the gold answer  from a gold source")
    for name, (holds, right) in totals.items():
        print(f"{name:<{width}}  {holds / max(scored, 1):<21.3f}  {right / max(scored, 1):.3f}")


if __name__ == "__main__":
    main()

"""`ragtune tune`: the project's documents → a tuned adapter, in resumable stages.

    synthesize  question/answer pairs from the indexed chunks (rules + a teacher model), filtered
    split       leakage-aware train / evaluation split; the evaluation questions are saved for
                `ragtune eval`
    style       with a [style]: the training answers rewritten into the house voice
                (`builder.tune_style`); identity pairs join the format stage
    format      RAFT conversations: oracle chunk among hard-negative distractors, cited answers
                (`builder.tune_format`)
    train       LoRA (or DoRA / full / QLoRA) with checkpoints; `--resume` continues a run
    check       general questions before and after tuning (catastrophic-forgetting guard)
    selector    the evidence selector the tuned modes quote with (`builder.tune_selector`)
    quote gate  the bounds below which the engine refuses instead of quoting
                (`builder.tune_gate`)

Every stage records a hash of its inputs beside its outputs and is skipped when they did not
change, so running `ragtune tune` twice trains once.

Under `torchrun --nproc_per_node N` the N processes train together (DDP); the main process alone
runs the stages before training, while the others wait, and then they run them too, finding
every one up to date. Only the main process writes the status, the check and the run card.

Layout under PROJECT/:
    tune/pairs.jsonl, tune/synthesis.json         kept pairs and the synthesis report
    tune/train_pairs.jsonl, tune/eval_questions.jsonl, tune/split.json
    tune/train.jsonl, tune/format.json            the training conversations (messages JSONL)
    tune/status.json                              live progress for the app
    adapters/run-<hash>/adapter/                  the peft adapter (safetensors) + tokenizer
    adapters/run-<hash>/run_card.json             base model, data hash, config, loss curve
    adapters/run-<hash>/selector/                 the evidence selector (sentence-transformers)
    adapters/run-<hash>/quote_gate.json           the quote gate's calibrated bounds
    adapters/CURRENT                              the run the answer engine uses
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.engine import open_retriever
from builder.jobs import process_start_ticks
from builder.project import Project
from builder.stamps import digest, file_digest, read_json, up_to_date, write_json
from builder.tune_format import format_examples
from builder.tune_gate import calibrate_gate_stage
from builder.tune_layout import (
    EVAL_QUESTIONS,
    PAIRS,
    RUN_CARD,
    STATUS,
    TRAIN_PAIRS,
    Progress,
    TuneError,
    TuneReport,
)
from builder.tune_selector import train_selector_stage
from builder.tune_style import STYLED_PAIRS, rewrites_targets, styled_pairs
from finetune.distributed import join, launched, main_first

if TYPE_CHECKING:
    from retrieval.documents import Chunk
    from retrieval.search import Retriever


class StatusFile:
    """`tune/status.json`, rewritten atomically so the app can poll it at any moment."""

    def __init__(self, path: Path, forward: Progress | None) -> None:
        self.path = path
        self.forward = forward
        self._last_write = 0.0
        # Lets the app follow (and cancel) a tune started from a terminal.
        self._writer = {"pid": os.getpid(), "start_ticks": process_start_ticks(os.getpid())}

    def __call__(self, event: dict[str, Any]) -> None:
        if self.forward:
            self.forward(event)
        final = event.get("stage") in ("done", "failed", "cancelled")
        now = time.time()
        if final or event.get("done") == event.get("total") or now - self._last_write >= 1.0:
            status = {
                "stage": event.get("stage"),
                "step": event.get("done", 0),
                "max_steps": event.get("total", 0),
                "loss": event.get("loss"),
                "eta_s": event.get("eta_s"),
                "message": event.get("message", ""),
                "updated": now,
                **self._writer,
            }
            write_json(self.path, status)
            self._last_write = now


def _index_identity(project: Project) -> str:
    from retrieval.index import IndexLayout

    generation = IndexLayout(project.index_root).current()
    if generation is None:
        raise TuneError(
            f"{project.root} has no index yet: run `ragtune build {project.root} --docs DIR` first"
        )
    return file_digest(generation / "manifest.json")


def synthesis_models(project: Project, progress: Progress | None = None) -> tuple[Any, Any]:
    """The models the synthesis stage runs, as the project's config sets them: the teacher
    (None without one; nothing loaded yet) and the base model's consistency check
    (`finetune.consistency.rank_check`; None when off or without a teacher, loaded here)."""
    from finetune.teacher import make_teacher

    config = project.config.synthesis
    tell = progress or (lambda event: None)
    if not config.uses_teacher():
        return None, None
    tell({"stage": "synthesize", "message": f"loading the teacher {config.teacher}"})
    teacher = make_teacher(
        config.teacher,
        config.teacher_model_name,
        device=project.config.generation.device,
        batch_size=config.teacher_batch_size,
        # A question is one line; JSON triples take a paragraph.
        max_new_tokens=40 if config.resolved_teacher_style() == "answer_first" else 512,
        seed=config.seed,
        backend=config.teacher_backend,
        gguf=config.teacher_gguf,
    )
    if teacher is None or not config.consistency_check:
        return teacher, None
    from finetune.consistency import rank_check
    from retrieval.generation import load_generator_with_adapter

    tell({"stage": "synthesize", "message": "loading the base model for its check"})
    base, _ = load_generator_with_adapter(project.config.generation, None)
    return teacher, rank_check(base.score_replies)


def _synthesize(
    project: Project,
    retriever: Retriever,
    chunks: list[Chunk],
    index_id: str,
    report: TuneReport,
    progress: Progress,
) -> Path:
    from finetune.filters import retriever_search
    from finetune.pairs import write_pairs_jsonl
    from finetune.synthesize import SYNTHESIS_VERSION, synthesize
    from retrieval.persona import verdicts

    config = project.config.synthesis
    out = project.tune_dir / PAIRS
    stamp = project.tune_dir / "synthesis.json"
    language = project.config.style.language  # the yes/no twins' words
    inputs = digest(
        index_id, asdict(config), asdict(project.config.retrieval), language, SYNTHESIS_VERSION
    )
    if up_to_date(stamp, inputs, out):
        report.stages["synthesize"] = "skipped (inputs unchanged)"
        report.synthesis = read_json(stamp).get("report", {})
        return out
    started = time.perf_counter()
    teacher, consistent = synthesis_models(project, progress)

    def tell(stage: str, done: int, total: int) -> None:
        progress({"stage": "synthesize", "message": stage, "done": done, "total": total})

    pairs, filter_report = synthesize(
        chunks,
        config,
        retriever_search(retriever),
        teacher,
        tell,
        retriever.encoder.encode,
        consistent,
        verdicts(project.config.style),
    )
    if not pairs:
        raise TuneError(
            "no question/answer pair survived the filters: add documents, or give your own "
            "pairs with --data FILE"
        )
    write_pairs_jsonl(out, pairs)
    report.synthesis = filter_report.to_dict()
    # Models loading included: what the user waits for.
    report.synthesis["seconds"] = round(time.perf_counter() - started, 1)
    write_json(stamp, {"inputs": inputs, "report": report.synthesis})
    report.stages["synthesize"] = f"ran ({report.synthesis['seconds']:.0f} s)"
    return out


def _split(project: Project, pairs_path: Path, report: TuneReport) -> Path:
    from finetune.pairs import read_pairs_jsonl, write_pairs_jsonl
    from finetune.split import split_pairs, write_eval_questions

    config = project.config.synthesis
    train_out = project.tune_dir / TRAIN_PAIRS
    eval_out = project.tune_dir / EVAL_QUESTIONS
    stamp = project.tune_dir / "split.json"
    inputs = digest(file_digest(pairs_path), config.eval_fraction, config.max_eval, config.seed)
    if up_to_date(stamp, inputs, train_out, eval_out):
        report.stages["split"] = "skipped (inputs unchanged)"
        report.split = read_json(stamp).get("counts", {})
        return train_out
    train, held_out = split_pairs(
        read_pairs_jsonl(pairs_path), config.eval_fraction, config.max_eval, config.seed
    )
    write_pairs_jsonl(train_out, train)
    write_eval_questions(eval_out, held_out)
    report.split = {"train": len(train), "eval": len(held_out)}
    write_json(stamp, {"inputs": inputs, "counts": report.split})
    report.stages["split"] = "ran"
    return train_out


def _train(
    project: Project,
    train_set: Path,
    resume: bool,
    progress: Progress,
    report: TuneReport,
    chunks: list[Chunk] | None = None,
) -> Path:
    from finetune.data import read_examples
    from finetune.train import train
    from retrieval.models import resolve_generator_model

    config = project.config
    data_hash = file_digest(train_set)
    # The distillation teacher shapes the weights too (it is no part of the other runs' names).
    teacher = config.synthesis.teacher if config.tune.distill == "kl" else None
    identity = (data_hash, asdict(config.tune), config.generation.model)
    run_name = "run-" + digest(*identity, *([teacher] if teacher else []))[:10]
    run_dir = project.adapters_dir / run_name
    report.run_dir = run_dir
    card_path = run_dir / RUN_CARD
    if card_path.is_file() and (run_dir / "adapter").is_dir():
        report.stages["train"] = "skipped (this data and config are already trained)"
        report.card = read_json(card_path)
        return run_dir
    examples, _ = read_examples(train_set)
    if config.tune.context_distill:
        examples = _with_teacher_prompts(project, examples, chunks or [])
    model_path = resolve_generator_model(config.generation.model)
    teacher_path = resolve_generator_model(teacher) if teacher else None

    def tell(event: dict[str, Any]) -> None:
        progress(
            {
                "stage": "train",
                "done": event["step"],
                "total": event["max_steps"],
                "loss": event["loss"],
                "eta_s": event["eta_s"],
            }
        )

    result = train(
        model_path,
        examples,
        run_dir,
        config.tune,
        resume=resume,
        progress=tell,
        teacher_path=teacher_path,
    )
    report.card = {
        "run": run_name,
        "base_model": config.generation.model,
        "base_model_path": model_path,
        "data": str(train_set),
        "data_sha256": data_hash,
        "examples": len(examples),
        "tune": asdict(config.tune),
        "raft": asdict(config.raft),
        "synthesis": report.synthesis,
        "split": report.split,
        "style": report.style,
        "format": report.format,
        "steps": result.steps,
        "epochs": result.epochs,
        "distill_teacher": teacher,
        "train_loss": result.train_loss,
        "loss_curve": result.loss_curve,
        "resumed_from": result.resumed_from,
        "seconds": round(result.seconds, 1),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "notes": result.notes,
        "processes": result.processes,
        "distributed": result.distributed,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report.stages["train"] = "ran"
    return run_dir


def _with_teacher_prompts(project: Project, examples: list[Any], chunks: list[Chunk]) -> list[Any]:
    """The closed-book examples with their context-distillation teacher prompts, which the
    training JSONL does not hold: rebuilt from the training pairs and their chunks."""
    from finetune.distill import restore_teacher_prompts
    from finetune.pairs import read_pairs_jsonl

    pairs_path = project.tune_dir / TRAIN_PAIRS
    if rewrites_targets(project) and (project.tune_dir / STYLED_PAIRS).is_file():
        pairs_path = project.tune_dir / STYLED_PAIRS  # the closed-book targets are styled
    pairs = read_pairs_jsonl(pairs_path) if pairs_path.is_file() else []
    return restore_teacher_prompts(examples, pairs, chunks, project.config.style)[0]


def _check_forgetting(
    project: Project, run_dir: Path, report: TuneReport, progress: Progress
) -> None:
    from finetune.general_check import GENERAL_FILE, check_forgetting, write_general_questions
    from retrieval.generation import load_generator_with_adapter

    if "forgetting" in report.card:
        return
    progress({"stage": "check", "message": "general questions, base vs tuned"})
    write_general_questions(project.tune_dir / GENERAL_FILE)
    generator, _ = load_generator_with_adapter(project.config.generation, run_dir / "adapter")
    result = check_forgetting(lambda convs, tuned: generator.generate(convs, tuned=tuned))
    report.card["forgetting"] = {**result.to_dict(), "summary": result.sentence()}
    report.stages["check"] = "ran"


def _silent(event: dict[str, Any]) -> None:
    """The status of a process that is not the main one: it reports nothing."""


def _prepare(
    project: Project,
    data: list[Any] | None,
    data_only: bool,
    index_id: str,
    report: TuneReport,
    status: Progress,
) -> tuple[list[Chunk], Path]:
    """The stages before training: the index's chunks and the training set's path."""
    retriever = open_retriever(project)
    try:
        chunks = list(retriever.index.store.iter_chunks())
        train_pairs = None
        if not data_only:
            pairs = _synthesize(project, retriever, chunks, index_id, report, status)
            status({"stage": "split"})
            train_pairs = _split(project, pairs, report)
            train_pairs, report.style = styled_pairs(
                project, train_pairs, chunks, report.stages, status
            )
        status({"stage": "format"})
        train_set = format_examples(
            project, retriever, chunks, train_pairs, data or [], index_id, report, status
        )
    finally:
        retriever.close()
    return chunks, train_set


def tune(
    project: Project,
    *,
    data: list[Any] | None = None,
    data_only: bool = False,
    resume: bool = False,
    progress: Progress | None = None,
) -> TuneReport:
    """Run every stage that is out of date and make the new adapter the project's current one.

    Args:
        project: an opened project with a built index.
        data: user-provided training conversations (already read and checked), trained beside
            the synthesized pairs, or instead of them with `data_only`.
        data_only: skip synthesis; train on `data` alone.
        resume: continue the interrupted training run from its newest complete checkpoint.
        progress: called with {"stage", "done", "total", "loss", "eta_s", "message"}; only in
            the main process under a launcher.

    Raises:
        TuneError, TrainError, ResumeError, ChatTemplateError, LaunchError: see their messages.
        KeyboardInterrupt: the user stopped the run; complete checkpoints stay for `resume`.
    """
    if data_only and not data:
        raise TuneError("--data-only needs --data FILE")
    world = join(launched())
    status = StatusFile(project.tune_dir / STATUS, progress) if world.is_main else _silent
    report = TuneReport()
    index_id = _index_identity(project)
    project.tune_dir.mkdir(parents=True, exist_ok=True)
    try:
        # One process synthesizes and writes; the others then find every stage up to date.
        with main_first(world):
            chunks, train_set = _prepare(project, data, data_only, index_id, report, status)
        on = f" on {world.size} processes" if world.distributed else ""
        status({"stage": "train", "message": f"loading the model{on}"})
        run_dir = _train(project, train_set, resume, status, report, chunks)
        if not world.is_main:
            return report
        _check_forgetting(project, run_dir, report, status)
        train_selector_stage(project, run_dir, chunks, index_id, report, status)
        calibrate_gate_stage(project, run_dir, chunks, index_id, report, status)
        write_json(run_dir / RUN_CARD, report.card)
        project.set_current_adapter(run_dir.name)
    except BaseException as error:
        cancelled = isinstance(error, KeyboardInterrupt)
        status(
            {
                "stage": "cancelled" if cancelled else "failed",
                "message": str(error) or type(error).__name__,
            }
        )
        raise
    status({"stage": "done", "message": str(report.run_dir)})
    return report

"""Typed settings of the synthesis stage of `ragtune tune`: who writes training questions from the
corpus, which of them are kept, and how many are held out for evaluation. `builder.config`
composes this into the project file; `problems()` checks the values before any model loads."""

from __future__ import annotations

from dataclasses import dataclass

NO_TEACHER = ("none", "")


@dataclass
class SynthesisConfig:
    """How question/answer pairs are written from the indexed chunks and checked."""

    teacher: str = "embedded:SmolLM2-135M-Instruct"
    """The model that writes questions from chunks (sequence-level distillation: the tuned model
    learns from the teacher's outputs): 'embedded:SmolLM2-135M-Instruct', a model folder or hub
    id, an OpenAI-compatible endpoint such as 'http://localhost:8000/v1' (vLLM, Ollama,
    llama.cpp), or 'none' for rule-written questions only."""
    teacher_model_name: str = ""
    """The model name sent to an endpoint teacher (e.g. 'qwen2.5:7b' for Ollama); ignored for
    local models."""
    teacher_max_chunks: int = 16
    """How many chunks the teacher reads, spread across documents: the budget of the slowest
    step (16 take about a minute with the embedded teacher on 2 CPU cores, and the 135M model
    writes few pairs that pass the filters; raise it with a stronger teacher or a GPU)."""
    teacher_batch_size: int = 8
    """Prompts the teacher generates at once (local models) or requests in flight (endpoints)."""
    rules: bool = True
    """Also write questions by rules (tables, key-value lines, definitions, numbers, dates,
    error codes, FAQs): no model needed, and the reliable source on small machines."""
    max_pairs_per_chunk: int = 3
    """The most rule-written pairs kept from one chunk."""
    min_grounding: float = 0.8
    """Share of the answer's content words that must occur in its chunk; below it the answer is
    treated as invented and the pair dropped."""
    duplicate_jaccard: float = 0.8
    """Questions whose word sets overlap at least this much (Jaccard) count as duplicates; the
    first is kept."""
    roundtrip_k: int = 5
    """A question is kept only if searching for it returns its own chunk in the top this-many
    (0 turns the check off)."""
    eval_fraction: float = 0.2
    """Share of the kept pairs held out as evaluation questions (paraphrases stay together)."""
    max_eval: int = 100
    """The most evaluation questions held out."""
    seed: int = 0
    """Seeds the choice of evaluation questions, so a split can be repeated."""

    def uses_teacher(self) -> bool:
        """Whether a teacher model is configured."""
        return self.teacher.strip().lower() not in NO_TEACHER

    def problems(self) -> list[str]:
        """Every invalid value, each with what to do; empty when the config is usable."""
        problems = []
        for name in ("teacher_batch_size", "max_pairs_per_chunk"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} = {getattr(self, name)}: must be more than 0")
        for name in ("teacher_max_chunks", "roundtrip_k", "max_eval"):
            if getattr(self, name) < 0:
                problems.append(f"{name} = {getattr(self, name)}: must be 0 or more")
        for name in ("min_grounding", "duplicate_jaccard"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} = {getattr(self, name)}: must be in (0, 1]")
        if not 0 <= self.eval_fraction < 1:
            problems.append(
                f"eval_fraction = {self.eval_fraction}: must be in [0, 1) (0 holds nothing out)"
            )
        teacher_writes = self.uses_teacher() and self.teacher_max_chunks > 0
        if not self.rules and not teacher_writes:
            problems.append(
                "nothing writes questions: set rules = true, or a teacher with "
                "teacher_max_chunks > 0"
            )
        if self.teacher.startswith(("http://", "https://")) and not self.teacher_model_name:
            problems.append(
                f"teacher = {self.teacher!r} is an endpoint: set teacher_model_name to the model "
                "it serves (e.g. 'qwen2.5:7b')"
            )
        return problems

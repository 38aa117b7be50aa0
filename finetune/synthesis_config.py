"""Typed settings of the synthesis stage of `ragtune tune`: who writes training questions from the
corpus, which of them are kept, and how many are held out for evaluation. `builder.config`
composes this into the project file; `problems()` checks the values before any model loads."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

NO_TEACHER = ("none", "")
TEACHER_STYLES = ("auto", "answer_first", "triples")
TEACHER_BACKENDS = ("transformers", "llamacpp")


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
    teacher_backend: str = "transformers"
    """What runs a local teacher: 'transformers', or 'llamacpp' (its GGUF in llama.cpp, replies
    decoded side by side; the embedded teacher's GGUF ships with it, any other needs
    `teacher_gguf`). Endpoint teachers ignore it."""
    teacher_gguf: str = ""
    """The GGUF file of a local teacher other than the embedded one, for the llamacpp backend."""
    teacher_style: str = "auto"
    """How the teacher is asked: 'answer_first' (the answer is chosen in a sentence by its
    form, the teacher writes only the question: what a 135M model can do), 'triples' (the
    teacher writes question / answer / evidence of mixed types as JSON: for a capable model) or
    'auto' (answer_first for the embedded teacher, triples for any other)."""
    teacher_questions: int = 160
    """The fewest questions the teacher is asked for, spread over every document (0: the
    teacher writes none). A larger corpus gets `teacher_questions_per_chunk` a chunk, up to
    `max_teacher_questions`: the budget of the slowest step (the embedded teacher writes about
    one a second on 2 CPU cores)."""
    teacher_questions_per_chunk: float = 1.0
    """Questions asked per indexed chunk, so the data grows with the corpus."""
    max_teacher_questions: int = 2000
    """The most questions the teacher is asked for, whatever the corpus size."""
    teacher_samples: int = 2
    """Replies sampled per chunk in the 'triples' style, so that candidates differ."""
    teacher_batch_size: int = 16
    """Prompts the teacher generates at once (local models) or requests in flight (endpoints)."""
    rules: bool = True
    """Also write the questions the layout states outright (FAQ pairs, table rows, 'Key: value'
    lines, section headings): no model needed, any language."""
    english_rules: bool = False
    """Also rewrite English sentences into questions by grammar rules (numbers, dates,
    definitions, yes/no). English text only: leave off for any other language."""
    yes_no_share: float = 0.2
    """Yes/no questions made from kept pairs with a short fact, as a share of the kept pairs: a
    yes twin proposes the right answer, a no twin another fact of the same shape
    (`finetune.generators.yes_no`), in the answer language (`style.language`, English when
    unset; a language without yes/no words in `retrieval/identity/` gets none). 0 turns it off."""
    max_pairs_per_chunk: int = 3
    """The most rule-written pairs, and answer-first questions, taken from one chunk."""
    min_grounding: float = 0.8
    """Share of the answer's content words that must occur in its chunk; below it the answer is
    treated as invented and the pair dropped."""
    duplicate_jaccard: float = 0.8
    """Questions whose word sets overlap at least this much (Jaccard) count as duplicates; the
    first is kept."""
    duplicate_cosine: float = 0.95
    """Questions whose embeddings (the project's own model) are at least this similar count as
    duplicates too; 1 turns the check off."""
    consistency_check: bool = True
    """Keep a teacher's factoid pair only when the base model, shown its chunk in the answer
    prompt, finds the pair's evidence its likeliest answer among the chunk's sentences (one
    forward pass a pair)."""
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

    def resolved_teacher_style(self) -> str:
        """'answer_first' or 'triples': what 'auto' means for the configured teacher."""
        if self.teacher_style != "auto":
            return self.teacher_style
        return "answer_first" if self.teacher.strip().startswith("embedded:") else "triples"

    def teacher_budget(self, chunks: int) -> int:
        """Questions to ask the teacher for a corpus of `chunks` chunks (see
        `teacher_questions`)."""
        if self.teacher_questions == 0:
            return 0
        grown = math.ceil(self.teacher_questions_per_chunk * chunks)
        return min(self.max_teacher_questions, max(self.teacher_questions, grown))

    def asking_exactly(self, questions: int) -> SynthesisConfig:
        """A copy whose teacher budget is `questions` whatever the corpus size (benchmarks)."""
        return replace(
            self,
            teacher_questions=questions,
            teacher_questions_per_chunk=0.0,
            max_teacher_questions=max(questions, self.max_teacher_questions),
        )

    def problems(self) -> list[str]:
        """Every invalid value, each with what to do; empty when the config is usable."""
        problems = []
        for name in ("teacher_batch_size", "max_pairs_per_chunk", "teacher_samples"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} = {getattr(self, name)}: must be more than 0")
        for name in (
            "teacher_questions",
            "teacher_questions_per_chunk",
            "max_teacher_questions",
            "roundtrip_k",
            "max_eval",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} = {getattr(self, name)}: must be 0 or more")
        for name in ("min_grounding", "duplicate_jaccard", "duplicate_cosine"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} = {getattr(self, name)}: must be in (0, 1]")
        if self.teacher_questions > self.max_teacher_questions:
            problems.append(
                f"teacher_questions = {self.teacher_questions} is above max_teacher_questions = "
                f"{self.max_teacher_questions}: raise max_teacher_questions"
            )
        if not 0 <= self.eval_fraction < 1:
            problems.append(
                f"eval_fraction = {self.eval_fraction}: must be in [0, 1) (0 holds nothing out)"
            )
        if not 0 <= self.yes_no_share < 1:
            problems.append(f"yes_no_share = {self.yes_no_share}: must be in [0, 1) (0: none)")
        if self.teacher_style not in TEACHER_STYLES:
            problems.append(
                f"teacher_style = {self.teacher_style!r}: choose one of {', '.join(TEACHER_STYLES)}"
            )
        if self.teacher_backend not in TEACHER_BACKENDS:
            problems.append(
                f"teacher_backend = {self.teacher_backend!r}: choose one of "
                f"{', '.join(TEACHER_BACKENDS)}"
            )
        local = self.uses_teacher() and not self.teacher.startswith(("http://", "https://"))
        if (
            local
            and self.teacher_backend == "llamacpp"
            and not self.teacher.strip().startswith("embedded:")
            and not self.teacher_gguf
        ):
            problems.append(
                f"teacher_backend = 'llamacpp' needs the GGUF file of {self.teacher!r}: set "
                "teacher_gguf, or teacher_backend = 'transformers'"
            )
        teacher_writes = self.uses_teacher() and self.teacher_questions > 0
        if not self.rules and not self.english_rules and not teacher_writes:
            problems.append(
                "nothing writes questions: set rules = true, or a teacher with "
                "teacher_questions > 0"
            )
        if self.teacher.startswith(("http://", "https://")) and not self.teacher_model_name:
            problems.append(
                f"teacher = {self.teacher!r} is an endpoint: set teacher_model_name to the model "
                "it serves (e.g. 'qwen2.5:7b')"
            )
        return problems

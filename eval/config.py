"""Typed settings of `ragtune eval`: which modes are compared, how the confidence intervals are
drawn, and the optional judge model. `builder.config` composes this into the project file;
`problems()` checks the values before any model loads."""

from __future__ import annotations

from dataclasses import dataclass

from eval.grounding import DEFAULT_FAITHFULNESS_THRESHOLD

EVAL_MODES = ("base", "rag", "tuned", "rag+tuned")


@dataclass
class EvalConfig:
    """How answers are compared across modes."""

    modes: str = "base,rag,tuned,rag+tuned"
    """Comma-separated answer modes to compare: any of base, rag, tuned, rag+tuned."""
    bootstrap_samples: int = 2000
    """Resamples of the questions behind each confidence interval."""
    seed: int = 0
    """Seeds the bootstrap, so the same answers give the same report."""
    confidence: float = 0.95
    """Confidence level of the intervals."""
    faithfulness_threshold: float = DEFAULT_FAITHFULNESS_THRESHOLD
    """Share of a sentence's content words that one cited chunk must contain for the sentence
    to count as supported."""
    judge: str = ""
    """Optional judge of correctness: '' (none), a model ('embedded:...', a folder or a hub
    id), or an OpenAI-compatible server URL such as 'http://localhost:8000/v1#MODEL'."""
    max_questions: int = 0
    """Evaluate only the first this many questions; 0 means all."""

    def mode_list(self) -> list[str]:
        """`modes` as a list, in the given order."""
        return [mode.strip() for mode in self.modes.split(",") if mode.strip()]

    def problems(self) -> list[str]:
        """Every invalid value, each with what to do; empty when the config is usable."""
        problems = []
        modes = self.mode_list()
        unknown = [mode for mode in modes if mode not in EVAL_MODES]
        if not modes or unknown:
            problems.append(
                f"modes = {self.modes!r}: give a comma-separated list of {', '.join(EVAL_MODES)}"
            )
        elif len(set(modes)) != len(modes):
            problems.append(f"modes = {self.modes!r}: each mode may appear only once")
        if self.bootstrap_samples < 100:
            problems.append(
                f"bootstrap_samples = {self.bootstrap_samples}: use at least 100 (2000 is usual)"
            )
        if not 0 < self.confidence < 1:
            problems.append(f"confidence = {self.confidence}: must be between 0 and 1, e.g. 0.95")
        if not 0 < self.faithfulness_threshold <= 1:
            problems.append(
                f"faithfulness_threshold = {self.faithfulness_threshold}: must be in (0, 1]"
            )
        if self.max_questions < 0:
            problems.append(f"max_questions = {self.max_questions}: use 0 (all) or more")
        judge = self.judge.strip()
        if judge.startswith(("http:", "https:")) and "//" not in judge:
            problems.append(f"judge = {self.judge!r}: a URL looks like http://host:port/v1")
        return problems

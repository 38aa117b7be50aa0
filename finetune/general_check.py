"""A catastrophic-forgetting guard: a few general questions, asked before and after tuning.

Tuning a small model on one corpus can erode what it knew. These questions have nothing to do
with any corpus, and each has short accepted answers, so the check is a plain string match:
the share answered correctly by the base model and by the tuned one, side by side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.prompt import closed_book_messages

GENERAL_QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What is the capital of France?", ("paris",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("How many days are in a week?", ("7", "seven")),
    ("How many hours are in a day?", ("24", "twenty-four", "twenty four")),
    ("What is 2 + 2?", ("4", "four")),
    ("What is frozen water called?", ("ice",)),
    ("What do bees make?", ("honey",)),
    ("Which planet do humans live on?", ("earth",)),
    ("What color is the sky on a clear day?", ("blue",)),
    ("How many legs does a spider have?", ("8", "eight")),
    ("What language is mainly spoken in Spain?", ("spanish",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("What is the largest ocean on Earth?", ("pacific",)),
    ("What is the opposite of hot?", ("cold",)),
    ("What is the plural of mouse?", ("mice",)),
    ("At what temperature in Celsius does water boil at sea level?", ("100",)),
    ("What gas do plants take in from the air to make food?", ("carbon dioxide", "co2")),
    ("Which animal says moo?", ("cow",)),
    ("How many continents are there?", ("7", "seven")),
    ("What is the freezing point of water in Celsius?", ("0", "zero")),
)
GENERAL_FILE = "general_check.jsonl"


@dataclass
class ForgettingReport:
    questions: int
    base_correct: int
    tuned_correct: int

    @property
    def base_accuracy(self) -> float:
        return self.base_correct / self.questions if self.questions else 0.0

    @property
    def tuned_accuracy(self) -> float:
        return self.tuned_correct / self.questions if self.questions else 0.0

    def to_dict(self) -> dict:
        return {
            "questions": self.questions,
            "base_accuracy": round(self.base_accuracy, 3),
            "tuned_accuracy": round(self.tuned_accuracy, 3),
        }

    def sentence(self) -> str:
        change = self.tuned_correct - self.base_correct
        verdict = (
            "no forgetting seen"
            if change >= 0
            else f"{-change} general answer(s) lost: lower the learning rate or the epochs"
        )
        return (
            f"general questions: base {self.base_correct}/{self.questions}, "
            f"tuned {self.tuned_correct}/{self.questions} ({verdict})"
        )


def write_general_questions(path: Path) -> Path:
    """Write the general set as JSONL ({"question", "answers"}) so the user can read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"question": q, "answers": list(a)}) for q, a in GENERAL_QUESTIONS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def is_correct(answer: str, accepted: Sequence[str]) -> bool:
    words = " " + re.sub(r"[^\w+-]+", " ", answer.lower()) + " "
    return any(f" {a} " in words for a in accepted)


def check_forgetting(
    generate: Callable[[list[list[dict[str, str]]], bool], list[str]],
) -> ForgettingReport:
    """Ask every general question of the base and of the tuned model.

    Args:
        generate: (conversations, tuned) → answers, e.g. `Generator.generate` with
            `tuned=` passed through.
    """
    conversations = [closed_book_messages(q) for q, _ in GENERAL_QUESTIONS]
    scores = []
    for tuned in (False, True):
        answers = generate(conversations, tuned)
        scores.append(
            sum(is_correct(a, accepted) for a, (_, accepted) in zip(answers, GENERAL_QUESTIONS))
        )
    return ForgettingReport(len(GENERAL_QUESTIONS), scores[0], scores[1])

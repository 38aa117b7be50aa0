"""The project file `PROJECT/ragtune.toml`: every setting, typed, validated in full before any
model loads, with `section.key=value` overrides from the command line."""

from __future__ import annotations

import difflib
import tomllib
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from eval.config import EvalConfig
from finetune.config import RaftConfig, SelectorConfig, TuneConfig, distill_teacher_problem
from finetune.synthesis_config import SynthesisConfig
from retrieval.config import (
    ANSWER_MODES,
    DOCUMENT_SCALES,
    GENERATION_BACKENDS,
    INDEX_KINDS,
    OWN_ANSWER_RULES,
    QUOTE_SELECTORS,
    RETRIEVAL_MODES,
    UNSUPPORTED_POLICIES,
    AnswerConfig,
    EmbeddingConfig,
    GenerationConfig,
    IndexConfig,
    IngestConfig,
    RetrievalConfig,
    StyleConfig,
    is_language_code,
)
from retrieval.models import EMBEDDED_GENERATOR
from retrieval.persona import identity_languages

CONFIG_FILE = "ragtune.toml"


@dataclass
class ProjectConfig:
    """All settings of one project; each section is the dataclass of the code that uses it."""

    docs: str = "docs"
    """The documents folder, relative to the project folder or absolute."""
    ingest: IngestConfig = field(default_factory=IngestConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    raft: RaftConfig = field(default_factory=RaftConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    selector: SelectorConfig = field(default_factory=SelectorConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    style: StyleConfig = field(default_factory=StyleConfig)


_CHOICES: dict[str, tuple[str, ...]] = {
    "index.kind": INDEX_KINDS,
    "retrieval.mode": RETRIEVAL_MODES,
    "retrieval.document_scale": DOCUMENT_SCALES,
    "answer.mode": ANSWER_MODES,
    "answer.unsupported": UNSUPPORTED_POLICIES,
    "answer.quote_by": QUOTE_SELECTORS,
    "answer.own_answers": OWN_ANSWER_RULES,
    "generation.backend": GENERATION_BACKENDS,
}
_AT_LEAST_ZERO = {
    "ingest.chunk_overlap",
    "generation.temperature",
    "answer.min_relevance",
    "generation.threads",
}


class ConfigError(Exception):
    """One or more invalid settings; `problems` lists every one of them."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{where}: {count}:\n" + "\n".join(f"  - {p}" for p in problems))


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(ProjectConfig)
    return {f.name: hints[f.name] for f in fields(ProjectConfig) if f.name != "docs"}


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"(valid: {', '.join(valid)}){hint}"


def _coerce(path: str, value: Any, expected: type, problems: list[str]) -> Any:
    """Check one value against its field's type; ints are accepted where floats are expected."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        problems.append(f"{path} = {value!r}: expected an integer")
        return None
    if not isinstance(value, expected):
        problems.append(f"{path} = {value!r}: expected {expected.__name__}")
        return None
    return value


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(
            "--set", [f"{text!r}: expected section.key=value, e.g. retrieval.top_k=8"]
        )
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words are strings: index.kind=hnsw
    return key, value


def _merge_overrides(data: dict, overrides: list[str]) -> None:
    for text in overrides:
        key, value = _parse_override(text)
        parts = key.split(".")
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError("--set", [f"{key}: {part} is not a section"])
        target[parts[-1]] = value


def config_from_dict(data: dict, where: str) -> ProjectConfig:
    """Build and validate a ProjectConfig; report every problem at once.

    Raises:
        ConfigError: unknown sections or keys, wrong types, values out of range.
    """
    problems: list[str] = []
    sections = _sections()
    config = ProjectConfig()
    for name, value in data.items():
        if name == "docs":
            config.docs = _coerce("docs", value, str, problems) or config.docs
            continue
        if name not in sections:
            problems.append(f"unknown section [{name}] {_suggest(name, ['docs', *sections])}")
            continue
        if not isinstance(value, dict):
            problems.append(f"{name}: expected a [{name}] table")
            continue
        section = getattr(config, name)
        hints = typing.get_type_hints(sections[name])
        valid = [f.name for f in fields(section)]
        for key, item in value.items():
            path = f"{name}.{key}"
            if key not in hints:
                problems.append(f"unknown key {path} {_suggest(key, valid)}")
                continue
            coerced = _coerce(path, item, hints[key], problems)
            if coerced is not None:
                setattr(section, key, coerced)
    problems.extend(_check_values(config))
    if problems:
        raise ConfigError(where, problems)
    return config


def _check_values(config: ProjectConfig) -> list[str]:
    problems = []
    for section_name in _sections():
        section = getattr(config, section_name)
        if hasattr(section, "problems"):  # sections with their own rules check themselves
            problems.extend(f"{section_name}.{problem}" for problem in section.problems())
            continue
        for f in fields(section):
            path = f"{section_name}.{f.name}"
            value = getattr(section, f.name)
            if path in _CHOICES and value not in _CHOICES[path]:
                problems.append(f"{path} = {value!r}: choose one of {', '.join(_CHOICES[path])}")
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                if path in _AT_LEAST_ZERO and value < 0:
                    problems.append(f"{path} = {value}: must be 0 or more")
                elif path not in _AT_LEAST_ZERO and value <= 0:
                    problems.append(f"{path} = {value}: must be more than 0")
    if config.answer.support_threshold > 1:
        problems.append(
            f"answer.support_threshold = {config.answer.support_threshold}: must be at most 1"
        )
    if config.tune.distill == "kl":  # the teacher is a synthesis setting
        problem = distill_teacher_problem(config.synthesis.teacher)
        if problem:
            problems.append(problem)
    problems.extend(_llamacpp_problems(config))
    style = config.style
    language = style.language.strip() or "en"
    # A malformed code is reported by style.problems(); only a well-formed one needs its file.
    if style.persona and is_language_code(language) and language not in identity_languages():
        problems.append(
            f"style.language = {language!r}: no identity texts for a persona in it (have: "
            f"{', '.join(identity_languages())}); add retrieval/identity/{language}.json"
        )
    ingest = config.ingest
    if ingest.chunk_overlap >= ingest.chunk_tokens:
        problems.append(
            f"ingest.chunk_overlap = {ingest.chunk_overlap}: must be less than "
            f"ingest.chunk_tokens = {ingest.chunk_tokens}"
        )
    return problems


def _llamacpp_problems(config: ProjectConfig) -> list[str]:
    generation = config.generation
    if generation.backend != "llamacpp":
        return []
    problems = []
    if not generation.gguf and generation.model != EMBEDDED_GENERATOR:
        problems.append(
            f"generation.backend = 'llamacpp' needs the GGUF file of {generation.model!r}: set "
            "generation.gguf to it (convert the model folder with llama.cpp's "
            "convert_hf_to_gguf.py), or set generation.backend = 'transformers'"
        )
    if config.answer.quote_by == "likelihood":
        problems.append(
            "answer.quote_by = 'likelihood' scores replies with the transformers model: set "
            "answer.quote_by = 'embedding' or generation.backend = 'transformers'"
        )
    return problems


def load_config(path: Path, overrides: list[str] | None = None) -> ProjectConfig:
    """Read `path` (defaults when it does not exist) and apply `section.key=value` overrides.

    Raises:
        ConfigError: the file is not valid TOML, or any setting is invalid.
    """
    data: dict = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(str(path), [f"not valid TOML: {error}"]) from error
    _merge_overrides(data, overrides or [])
    return config_from_dict(data, str(path))


def config_to_toml(config: ProjectConfig) -> str:
    return tomli_w.dumps(asdict(config))

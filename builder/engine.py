"""Open a project's answer engine: its index, its generator and its current tuned adapter, each
loaded once. The CLI, the app and the API server all start here."""

from __future__ import annotations

from pathlib import Path

from builder.config import ProjectConfig
from builder.project import Project
from builder.tune_layout import SELECTOR
from retrieval.answer import AnswerEngine
from retrieval.config import GenerationConfig
from retrieval.generation import AdapterError
from retrieval.models import EMBEDDED_GENERATOR
from retrieval.search import Retriever

NO_ADAPTER = "none"


def open_retriever(project: Project) -> Retriever:
    """The project's live index with its configured embedding model.

    Raises:
        IndexLoadError: no build yet, or an index that fails its checks.
        ModelNotFoundError: the embedding model cannot be found.
    """
    from retrieval.embeddings import load_encoder

    config = project.config
    encoder = load_encoder(
        config.embedding.model, config.embedding.device, config.embedding.batch_size
    )
    return Retriever.open(project.index_root, encoder, config.retrieval, config.index)


USES = ("ask", "serve", "eval", "tune")
AUTO_BACKEND = {
    "ask": "llamacpp",
    "serve": "transformers",
    "eval": "transformers",
    "tune": "transformers",
}
"""What `generation.backend = 'auto'` runs per use: the faster of the two in bench/backends.py's
backend table (README, "Generation backends"): ask, a 64-token answer in 3.7 s against 6.3 s
(llama.cpp's first token comes later, 2.9 s against 2.1 s, its decode is 3.6x faster); eval,
2.4 s a `rag` answer against 2.9 s and 1.8 s a `rag+tuned` one against 4.7 s (with a LoRA
loaded llama.cpp reuses no cached prompt, and it reads prompts slower); serve, whose 20
concurrent clients got their answers sooner (p50 40 s against 82 s). Eval on transformers is
also repeatable: its batches are fixed by the prompts' lengths, while llama.cpp's continuous
batching is not batch-invariant (3 of 24 `rag+tuned` answers changed between two runs).
Tune (the base model's own answers, `builder.tune_targets`) runs on transformers for the same
reason: they become the training targets, and on llama.cpp two tunes of the same synthesis
got other verdicts on 10 of 199 own answers, 83 examples instead of 87, and a tuned model
whose correctness on the sample moved from 0.672 to 0.603."""


def backend_for(config: ProjectConfig, adapter_dir: Path | None, use: str) -> str:
    """The backend that answers for `use`: the setting, or under 'auto' the measured choice when
    llama.cpp can run this project (a GGUF it can load, a LoRA adapter or none, quotes picked
    by embedding), else transformers.

    Raises:
        ValueError: an unknown use.
    """
    if use not in USES:
        raise ValueError(f"unknown use {use!r}: choose one of {', '.join(USES)}")
    generation = config.generation
    if generation.backend != "auto":
        return generation.backend
    runnable = (
        (generation.gguf or generation.model == EMBEDDED_GENERATOR)
        and config.answer.quote_by == "embedding"
        and (adapter_dir is None or (Path(adapter_dir) / "adapter_config.json").is_file())
    )
    return AUTO_BACKEND[use] if runnable else "transformers"


def open_llamacpp_generator(config: GenerationConfig, adapter_dir: Path | None):
    """The configured GGUF in llama.cpp, with the adapter as a LoRA GGUF (exported on first use).

    Raises:
        ModelNotFoundError: no GGUF or tokenizer for the model.
        AdapterError: the adapter was tuned on another base model.
        GGUFExportError: the adapter cannot be expressed as a llama.cpp LoRA.
        LlamaCppError: llama.cpp cannot load the files.
    """
    from builder.gguf_export import lora_gguf_for
    from retrieval.generation import check_adapter_base
    from retrieval.llamacpp import load_llamacpp_generator
    from retrieval.models import resolve_generator_model

    lora = None
    if adapter_dir is not None:
        check_adapter_base(adapter_dir, resolve_generator_model(config.model))
        lora = lora_gguf_for(adapter_dir, config)
    generator, _path = load_llamacpp_generator(config, lora)
    return generator


def adapter_folder(project: Project, adapter: str | Path | None) -> Path | None:
    """The adapter folder `adapter` names: a folder, "none" (no adapter), or None for the
    project's current one (None when it has none)."""
    if adapter == NO_ADAPTER:
        return None
    return Path(adapter) if adapter is not None else project.current_adapter()


def open_engine(
    project: Project, adapter: str | Path | None = None, use: str = "ask"
) -> AnswerEngine:
    """Load everything the project's answers need.

    Args:
        project: the opened project.
        adapter: an adapter folder to use instead of the project's current one, or "none" to
            answer without any.
        use: 'ask' (the CLI, the app), 'serve' or 'eval': picks the backend under 'auto'.

    Raises:
        ModelNotFoundError: a configured model cannot be found.
        AdapterError: the adapter folder is unusable.
    """
    from retrieval.generation import load_generator_with_adapter
    from retrieval.index import IndexLayout

    config = project.config
    adapter_dir = adapter_folder(project, adapter)
    retriever = None
    if IndexLayout(project.index_root).current() is not None:
        retriever = open_retriever(project)
    selector = None
    selector_dir = adapter_dir.parent / SELECTOR if adapter_dir is not None else None
    if selector_dir is not None and selector_dir.is_dir():
        from retrieval.embeddings import load_encoder

        selector = load_encoder(
            str(selector_dir), config.embedding.device, config.embedding.batch_size
        )
    quote_bounds = {}
    if adapter_dir is not None:
        from retrieval.quote_gate import QUOTE_GATE, read_bounds

        try:
            quote_bounds = read_bounds(adapter_dir.parent / QUOTE_GATE)
        except ValueError as error:
            raise AdapterError(str(error)) from None
    if backend_for(config, adapter_dir, use) == "llamacpp":
        generator = open_llamacpp_generator(config.generation, adapter_dir)
    else:
        generator, _path = load_generator_with_adapter(config.generation, adapter_dir)
    return AnswerEngine(
        generator,
        retriever,
        config.answer,
        config.answer.documents,
        style=config.style,
        selector=selector,
        quote_bounds=quote_bounds,
    )

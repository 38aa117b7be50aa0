"""`ragtune export --gguf`: the tuned LoRA adapter as a llama.cpp GGUF adapter, loaded on top of
the base model's GGUF (`llama-server -m BASE --lora ADAPTER`), with an Ollama Modelfile beside it.

The layout is the one llama.cpp's `convert_lora_to_gguf.py` writes and `llama-adapter.cpp` reads:
`general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and for every adapted
weight `<gguf base name>.lora_a` (peft's lora_A, numpy shape (rank, in), ggml ne (in, rank)) and
`<gguf base name>.lora_b` (peft's lora_B, (out, rank), ne (rank, out)). llama.cpp scales the
product by alpha / rank, with rank read from lora_b, exactly as peft does.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.export import ExportError, _current_adapter, _fresh_target
from builder.project import Project

OUTTYPES = ("f32", "f16")
MODELFILE = "Modelfile"
README = "README.txt"
BASE_PLACEHOLDER = "BASE.gguf"

# Hugging Face model_type -> (gguf MODEL_ARCH member, whether llama.cpp's converter permutes the
# rows of q_proj/k_proj). Llama-style GGUFs store q and k with each head's rotary halves
# interleaved (convert_hf_to_gguf.py's LlamaModel.permute), so lora_B, which produces those rows,
# must be permuted the same way; Qwen's neox-style rope keeps the Hugging Face order.
ARCHITECTURES: dict[str, tuple[str, bool]] = {
    "llama": ("LLAMA", True),
    "mistral": ("LLAMA", True),
    "qwen2": ("QWEN2", False),
    "qwen3": ("QWEN3", False),
}

_MERGE_INSTEAD = (
    "export --merge OUT and convert that folder with llama.cpp's convert_hf_to_gguf.py instead"
)


class GGUFExportError(ExportError):
    """An adapter that llama.cpp's LoRA format cannot express; nothing was written."""


@dataclass(frozen=True)
class LoraPair:
    """One adapted weight: where its factors are in the safetensors file and in the GGUF."""

    gguf_name: str
    """The base tensor's GGUF name, e.g. 'blk.0.attn_q.weight'."""
    key_a: str
    key_b: str
    permute_heads: int | None
    """Heads whose rotary halves lora_B's rows are permuted by (q and k of Llama), or None."""


@dataclass(frozen=True)
class GGUFAdapterPlan:
    """Everything checked before a byte is written."""

    arch: str
    """GGUF architecture name ('llama'); llama.cpp refuses an adapter whose arch differs."""
    alpha: float
    """What llama.cpp reads as adapter.lora.alpha (rsLoRA folded in)."""
    rank: int
    pairs: tuple[LoraPair, ...]


def _base_key(key: str) -> str:
    return key.removeprefix("base_model.model.").replace(".lora_A.", ".").replace(".lora_B.", ".")


def plan_lora_gguf(
    adapter_dir: Path, base_config: Any, vocab_size: int | None = None
) -> GGUFAdapterPlan:
    """Check that a peft LoRA adapter maps onto llama.cpp's LoRA format, and how.

    Args:
        adapter_dir: a peft adapter folder (adapter_config.json + adapter_model.safetensors).
        base_config: the base model's transformers config (model_type, layers, heads).
        vocab_size: the adapter tokenizer's length, to catch added tokens; None skips the check.

    Returns:
        The GGUF architecture, alpha and the tensor pairs to write.

    Raises:
        GGUFExportError: one line naming every reason it cannot be exported and the alternative.
    """
    import gguf
    from safetensors import safe_open

    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise GGUFExportError(
            f"{adapter_dir} is a full fine-tune (method = 'full'), not a LoRA adapter: "
            f"{_MERGE_INSTEAD}"
        )
    settings = json.loads(config_file.read_text(encoding="utf-8"))
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise GGUFExportError(f"{weights} is missing: tune again, or {_MERGE_INSTEAD}")
    with safe_open(str(weights), framework="pt") as handle:
        keys = list(handle.keys())

    reasons: list[str] = []
    model_type = getattr(base_config, "model_type", None)
    if model_type not in ARCHITECTURES:
        reasons.append(
            f"architecture {model_type!r} has no GGUF tensor map here "
            f"(supported: {', '.join(ARCHITECTURES)})"
        )
    if settings.get("peft_type", "LORA") != "LORA":
        reasons.append(f"peft_type {settings.get('peft_type')!r} is not LoRA")
    if settings.get("use_dora") or any("lora_magnitude_vector" in key for key in keys):
        reasons.append("DoRA magnitude vectors have no place in llama.cpp's LoRA format")
    if settings.get("modules_to_save"):
        reasons.append(f"modules_to_save {settings['modules_to_save']} are whole trained weights")
    if settings.get("rank_pattern") or settings.get("alpha_pattern"):
        reasons.append("per-module rank_pattern/alpha_pattern: llama.cpp has one alpha per file")
    if settings.get("bias", "none") != "none" or settings.get("lora_bias"):
        reasons.append("trained biases have no place in llama.cpp's LoRA format")
    if settings.get("trainable_token_indices"):
        reasons.append("trainable_token_indices change embedding rows")
    embedding_keys = [k for k in keys if "lora_embedding_" in k]
    if embedding_keys:
        reasons.append("LoRA on the embedding layer is not exported")
    whole = [
        k for k in keys if ".lora_A." not in k and ".lora_B." not in k and k not in embedding_keys
    ]
    whole = [k for k in whole if "lora_magnitude_vector" not in k]
    if any("embed_tokens" in k or "lm_head" in k for k in whole):
        reasons.append("resized embeddings (embed_tokens/lm_head saved in the adapter)")
    elif whole and not settings.get("modules_to_save"):
        reasons.append(f"weights that are not LoRA factors ({whole[0]}, ...)")
    base_vocab = getattr(base_config, "vocab_size", None)
    if vocab_size is not None and base_vocab is not None and vocab_size > base_vocab:
        reasons.append(
            f"resized embeddings (tokenizer has {vocab_size} tokens, the base {base_vocab})"
        )
    tied = getattr(base_config, "tie_word_embeddings", False)
    if tied and any(_base_key(k).startswith("lm_head.") for k in keys):
        reasons.append("LoRA on lm_head of a model with tied embeddings (the GGUF has no output)")
    if reasons:
        raise GGUFExportError(
            f"cannot export {adapter_dir} as a GGUF LoRA: "
            + "; ".join(reasons)
            + f"; {_MERGE_INSTEAD}"
        )

    arch_member, permutes = ARCHITECTURES[model_type]
    arch = getattr(gguf.MODEL_ARCH, arch_member)
    n_blocks = base_config.num_hidden_layers
    names = gguf.get_tensor_name_map(arch, n_blocks)
    n_head = base_config.num_attention_heads
    n_kv = getattr(base_config, "num_key_value_heads", None) or n_head
    pairs: list[LoraPair] = []
    unmapped: list[str] = []
    for key_a in sorted(k for k in keys if ".lora_A." in k):
        key_b = key_a.replace(".lora_A.", ".lora_B.")
        if key_b not in keys:
            raise GGUFExportError(f"{weights} holds {key_a} without its {key_b}: tune again")
        hf_name = _base_key(key_a)
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            unmapped.append(hf_name)
            continue
        heads = None
        if permutes and hf_name.endswith("self_attn.q_proj.weight"):
            heads = n_head
        elif permutes and hf_name.endswith("self_attn.k_proj.weight"):
            heads = n_kv
        pairs.append(LoraPair(gguf_name, key_a, key_b, heads))
    if unmapped:
        raise GGUFExportError(
            f"no GGUF name for {unmapped[0]} in the {model_type} tensor map; {_MERGE_INSTEAD}"
        )
    if not pairs:
        raise GGUFExportError(f"{weights} holds no LoRA factors: tune again")
    rank = int(settings["r"])
    alpha = float(settings.get("lora_alpha", rank))
    if settings.get("use_rslora"):
        # peft scales rsLoRA by alpha / sqrt(r); llama.cpp always by alpha / r.
        alpha *= math.sqrt(rank)
    return GGUFAdapterPlan(gguf.MODEL_ARCH_NAMES[arch], alpha, rank, tuple(pairs))


def permute_rows(weight: Any, n_head: int) -> Any:
    """Reorder the output rows of a q/k projection the way llama.cpp's converter does:
    within each head, from [first halves of the pairs | second halves] to interleaved pairs.

    weight: (n_head * head_dim, ...) -> same shape.
    """
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_lora_gguf(
    adapter_dir: Path, plan: GGUFAdapterPlan, target: Path, outtype: str = "f32", name: str = ""
) -> Path:
    """Write the adapter's factors into one GGUF file, atomically (temp file + rename).

    Args:
        adapter_dir: the peft adapter folder the plan was made from.
        plan: what `plan_lora_gguf` returned.
        target: the .gguf file to write.
        outtype: 'f32' (exact) or 'f16' (half the size).
        name: general.name of the file.

    Returns:
        `target`.
    """
    import gguf
    import numpy as np
    from safetensors.torch import load_file  # torch reads bf16, which numpy cannot

    if outtype not in OUTTYPES:
        raise GGUFExportError(f"unknown GGUF type {outtype!r}: choose {', '.join(OUTTYPES)}")
    dtype = np.float32 if outtype == "f32" else np.float16
    file_type = gguf.LlamaFileType.ALL_F32 if outtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
    factors = load_file(adapter_dir / "adapter_model.safetensors")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(temp, plan.arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, plan.alpha)
        writer.add_file_type(file_type)
        if name:
            writer.add_name(name)
        for pair in plan.pairs:
            lora_a = factors[pair.key_a].float().numpy()  # (rank, in)
            lora_b = factors[pair.key_b].float().numpy()  # (out, rank)
            if pair.permute_heads:
                lora_b = permute_rows(lora_b, pair.permute_heads)
            writer.add_tensor(f"{pair.gguf_name}.lora_a", np.ascontiguousarray(lora_a, dtype))
            writer.add_tensor(f"{pair.gguf_name}.lora_b", np.ascontiguousarray(lora_b, dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def embedded_base_gguf(spec: str) -> Path | None:
    """The GGUF file the embedded generator ships as, or None for any other model."""
    from retrieval import models

    if spec != models.EMBEDDED_GENERATOR:
        return None
    try:
        return models.embedded_generator_gguf()
    except models.ModelNotFoundError:
        return None


def lora_gguf_for(adapter_dir: Path, config: Any) -> Path:
    """The adapter as a llama.cpp LoRA GGUF beside it (`<adapter>.lora.gguf`), written when it
    is missing or older than the adapter, so `generation.backend = 'llamacpp'` loads what the
    transformers backend would.

    Args:
        adapter_dir: a peft adapter folder.
        config: the project's GenerationConfig (the base model it was tuned from).

    Returns:
        The LoRA GGUF file.

    Raises:
        GGUFExportError: a full fine-tune, or an adapter llama.cpp's LoRA format cannot express.
    """
    from transformers import AutoConfig, AutoTokenizer

    from retrieval.models import resolve_generator_model

    adapter_dir = Path(adapter_dir)
    weights = adapter_dir / "adapter_model.safetensors"
    if not (adapter_dir / "adapter_config.json").is_file():
        raise GGUFExportError(
            f"{adapter_dir} is a full fine-tune, not a LoRA adapter: llama.cpp applies a tuned "
            "model as a LoRA over its base. Set generation.backend = 'transformers', or "
            "`ragtune export --merge --gguf OUT` and run that GGUF in llama.cpp directly"
        )
    target = adapter_dir.with_name(adapter_dir.name + ".lora.gguf")
    sources = [adapter_dir / "adapter_config.json", weights]
    newest = max(source.stat().st_mtime for source in sources if source.is_file())
    if target.is_file() and target.stat().st_mtime >= newest:
        return target
    base_config = AutoConfig.from_pretrained(
        resolve_generator_model(config.model), trust_remote_code=config.trust_remote_code
    )
    vocab = len(AutoTokenizer.from_pretrained(str(adapter_dir)))
    plan = plan_lora_gguf(adapter_dir, base_config, vocab_size=vocab)
    return write_lora_gguf(adapter_dir, plan, target, "f32", name=f"ragtune {adapter_dir.name}")


# Ollama's Go-template form of ChatML, as its library's ChatML models write it: the system
# prompt (SYSTEM below, or the request's) first, then each turn, then the open assistant turn.
CHATML_OLLAMA_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""


def modelfile_text(
    base: str,
    adapter: str,
    chat_template: str | None,
    system: str,
    temperature: float,
    num_predict: int,
) -> str:
    """An Ollama Modelfile: the base GGUF, the LoRA GGUF ('' for a merged model), the chat
    template and system prompt."""
    lines = [f"FROM {base}", *([f"ADAPTER ./{adapter}"] if adapter else []), ""]
    if chat_template and "<|im_start|>" in chat_template:
        lines += [f'TEMPLATE """{CHATML_OLLAMA_TEMPLATE}"""', 'PARAMETER stop "<|im_end|>"']
    else:  # Ollama falls back to the template stored in the base GGUF
        lines.append("# not a ChatML model: Ollama uses the chat template of the base GGUF")
    lines += [
        f"PARAMETER temperature {temperature:g}",
        f"PARAMETER num_predict {num_predict}",
        "",
        f'SYSTEM """{system}"""',
        "",
    ]
    return "\n".join(lines)


def readme_text(base: str, adapter: str, have_base: bool) -> str:
    lines = [
        "A ragtune LoRA adapter in llama.cpp's GGUF format.",
        "",
    ]
    if not have_base:
        lines += [
            "First convert the base model to GGUF with llama.cpp (the adapter loads only on",
            "the base it was tuned from) and put its path for BASE.gguf below and in Modelfile:",
            "  python convert_hf_to_gguf.py BASE_MODEL_FOLDER --outfile BASE.gguf",
            "",
        ]
    lines += [
        "llama.cpp (OpenAI-compatible server on http://127.0.0.1:8080):",
        f"  llama-server -m {base} --lora {adapter}",
        "",
        "Ollama:",
        "  ollama create ragtune-tuned -f Modelfile",
        "  ollama run ragtune-tuned",
        "",
        "The system prompt is ragtune's RAG prompt: put the retrieved passages in the user",
        'message as <documents><document id="1" source="...">text</document></documents>,',
        "then 'Question: ...', as `ragtune ask` does.",
        "",
    ]
    return "\n".join(lines)


def export_gguf(project: Project, out: Path, outtype: str = "f32") -> list[Path]:
    """Write the current adapter as a GGUF LoRA, an Ollama Modelfile and a README into `out`.

    Args:
        project: the project whose current adapter is exported.
        out: a new or empty folder.
        outtype: 'f32' or 'f16'.

    Returns:
        The files written: the adapter GGUF, Modelfile, README.txt.

    Raises:
        GGUFExportError: the adapter cannot be expressed in llama.cpp's format (checked before
            anything is written).
    """
    from transformers import AutoConfig, AutoTokenizer

    from retrieval.models import resolve_generator_model
    from retrieval.prompt import rag_system

    if outtype not in OUTTYPES:
        raise GGUFExportError(f"unknown GGUF type {outtype!r}: choose {', '.join(OUTTYPES)}")
    adapter = _current_adapter(project)
    config = project.config.generation
    if not (adapter / "adapter_config.json").is_file():
        raise GGUFExportError(
            f"{adapter} is a full fine-tune (method = 'full'), not a LoRA adapter: {_MERGE_INSTEAD}"
        )
    base_config = AutoConfig.from_pretrained(
        resolve_generator_model(config.model), trust_remote_code=config.trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    plan = plan_lora_gguf(adapter, base_config, vocab_size=len(tokenizer))
    _fresh_target(out)
    run = adapter.parent.name
    adapter_file = out / f"ragtune-{run}-lora-{outtype}.gguf"
    write_lora_gguf(adapter, plan, adapter_file, outtype, name=f"ragtune {run}")
    base_gguf = embedded_base_gguf(config.model)
    base = str(base_gguf) if base_gguf else BASE_PLACEHOLDER
    modelfile = out / MODELFILE
    modelfile.write_text(
        modelfile_text(
            base,
            adapter_file.name,
            tokenizer.chat_template,
            rag_system(project.config.style),  # the persona and voice too, as in every mode
            config.temperature,
            config.max_new_tokens,
        ),
        encoding="utf-8",
    )
    readme = out / README
    readme.write_text(readme_text(base, adapter_file.name, base_gguf is not None), encoding="utf-8")
    return [adapter_file, modelfile, readme]

"""`ragtune export --merge --gguf OUT`: the tuned adapter merged into the base weights, written as
one llama.cpp model GGUF (f16, q8_0 or f32) with the `gguf` package's writer, plus an Ollama
Modelfile: a single file that llama-server, Ollama and LM Studio load without an adapter.

Only Llama-family models (`model_type` llama or mistral: what llama.cpp calls `llama`) are
written. The metadata is the one llama.cpp's convert_hf_to_gguf.py writes for them; q_proj and
k_proj rows are permuted into llama.cpp's rotary order as it does. The tokenizer is copied from
the base model's GGUF (the embedded model's, or `generation.gguf`), which holds the same
vocabulary because an adapter that resized it is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.export import _current_adapter, _fresh_target
from builder.gguf_export import GGUFExportError, modelfile_text, permute_rows
from builder.project import Project

MERGED_OUTTYPES = ("f16", "q8_0", "f32")
MERGE_ARCHITECTURES = ("llama", "mistral")
_CONVERT_INSTEAD = (
    "export --merge --out DIR and convert DIR with llama.cpp's convert_hf_to_gguf.py instead"
)


@dataclass(frozen=True)
class MergedPlan:
    """What is checked before the merge: the base GGUF whose tokenizer is copied."""

    base_gguf: Path
    n_head: int
    n_kv: int


def plan_merged_gguf(adapter_dir: Path, base_config: Any, base_gguf: Path | None) -> MergedPlan:
    """Check that the merged model can be written as a llama.cpp GGUF here, and with what.

    Args:
        adapter_dir: the peft adapter folder (or a fully tuned model folder).
        base_config: the base model's transformers config.
        base_gguf: the base model's GGUF (its tokenizer is copied), or None when there is none.

    Raises:
        GGUFExportError: one line naming every reason and the alternative; nothing was written.
    """
    from safetensors import safe_open

    reasons: list[str] = []
    model_type = getattr(base_config, "model_type", None)
    if model_type not in MERGE_ARCHITECTURES:
        reasons.append(
            f"architecture {model_type!r} has no merged-GGUF tensor map here "
            f"(supported: {', '.join(MERGE_ARCHITECTURES)})"
        )
    rope_type = rope_settings(base_config).get("rope_type", "default")
    if rope_type != "default":
        reasons.append(f"rope scaling {rope_type!r} is not written here")
    settings_file = adapter_dir / "adapter_config.json"
    if settings_file.is_file():
        settings = json.loads(settings_file.read_text(encoding="utf-8"))
        weights = adapter_dir / "adapter_model.safetensors"
        keys: list[str] = []
        if weights.is_file():
            with safe_open(str(weights), framework="pt") as handle:
                keys = list(handle.keys())
        if settings.get("use_dora") or any("lora_magnitude_vector" in k for k in keys):
            reasons.append("DoRA magnitude vectors (the merge is not checked against llama.cpp)")
        if settings.get("modules_to_save"):
            reasons.append(f"modules_to_save {settings['modules_to_save']} replace whole weights")
        if any("embed_tokens" in k or "lm_head" in k for k in keys if "lora_" not in k):
            reasons.append("resized embeddings (embed_tokens/lm_head saved in the adapter)")
    if base_gguf is None:
        reasons.append(
            "no base GGUF to take the tokenizer from (set generation.gguf to the base model's GGUF)"
        )
    else:
        vocab = _gguf_vocab_size(base_gguf)
        if vocab != base_config.vocab_size:
            reasons.append(
                f"the tokenizer of {base_gguf} has {vocab} tokens, "
                f"the model {base_config.vocab_size}"
            )
    if reasons:
        raise GGUFExportError(
            f"cannot write {adapter_dir} merged as a GGUF: "
            + "; ".join(reasons)
            + f"; {_CONVERT_INSTEAD}"
        )
    n_head = base_config.num_attention_heads
    n_kv = getattr(base_config, "num_key_value_heads", None) or n_head
    return MergedPlan(base_gguf, n_head, n_kv)


def rope_settings(config: Any) -> dict:
    """The rotary settings: transformers 5 keeps rope_theta in `rope_parameters`, 4 on the
    config itself (with scaling in `rope_scaling`)."""
    settings = dict(getattr(config, "rope_parameters", None) or config.rope_scaling or {})
    settings.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    if "type" in settings:  # transformers 4's name
        settings.setdefault("rope_type", settings["type"])
    return settings


def _gguf_vocab_size(path: Path) -> int:
    from gguf import GGUFReader

    return len(GGUFReader(path).fields["tokenizer.ggml.tokens"].data)


def _copy_tokenizer(writer: Any, base_gguf: Path) -> None:
    """Every tokenizer.* key of the base GGUF (vocabulary, merges, special ids, chat template)."""
    from gguf import GGUFReader, GGUFValueType

    for key, field in GGUFReader(base_gguf).fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type)


def _tensor(array: Any, name: str, outtype: str) -> tuple[Any, Any]:
    """The array in the file's type: 1-D tensors (norms) stay f32, as llama.cpp's converter keeps
    them; q8_0 falls back to f16 for rows not a multiple of its 32-value block."""
    import numpy as np
    from gguf import GGMLQuantizationType, quants

    if array.ndim == 1 or outtype == "f32":
        return array.astype(np.float32), GGMLQuantizationType.F32
    if outtype == "q8_0" and array.shape[-1] % 32 == 0:
        return quants.quantize(array, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0
    return array.astype(np.float16), GGMLQuantizationType.F16


def write_merged_gguf(
    model: Any, plan: MergedPlan, target: Path, outtype: str = "f16", name: str = ""
) -> Path:
    """Write a merged transformers Llama model as one GGUF file, atomically.

    Args:
        model: the merged `LlamaForCausalLM` (no peft layers left).
        plan: what `plan_merged_gguf` returned.
        target: the .gguf file to write.
        outtype: 'f16', 'q8_0' or 'f32'.
        name: general.name of the file.

    Returns:
        `target`.
    """
    import gguf

    if outtype not in MERGED_OUTTYPES:
        raise GGUFExportError(f"unknown GGUF type {outtype!r}: choose {', '.join(MERGED_OUTTYPES)}")
    config = model.config
    arch = gguf.MODEL_ARCH.LLAMA
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    file_types = {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "f32": gguf.LlamaFileType.ALL_F32,
    }
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(temp, gguf.MODEL_ARCH_NAMES[arch])
        if name:
            writer.add_name(name)
        writer.add_file_type(file_types[outtype])
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(plan.n_head)
        writer.add_head_count_kv(plan.n_kv)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(rope_settings(config)["rope_theta"])
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_vocab_size(config.vocab_size)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _copy_tokenizer(writer, plan.base_gguf)
        tied = getattr(config, "tie_word_embeddings", False)
        for hf_name, weight in model.state_dict().items():
            if tied and hf_name == "lm_head.weight":
                continue  # llama.cpp reuses token_embd when output.weight is absent
            if hf_name.endswith("rotary_emb.inv_freq"):
                continue
            gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise GGUFExportError(
                    f"no GGUF name for {hf_name} in the llama tensor map; {_CONVERT_INSTEAD}"
                )
            array = weight.detach().float().numpy()
            if hf_name.endswith("self_attn.q_proj.weight"):
                array = permute_rows(array, plan.n_head)
            elif hf_name.endswith("self_attn.k_proj.weight"):
                array = permute_rows(array, plan.n_kv)
            data, qtype = _tensor(array, gguf_name, outtype)
            writer.add_tensor(gguf_name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def merged_model(project: Project, adapter: Path) -> Any:
    """The base model with the adapter merged in, in float32 on the CPU."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from retrieval.models import resolve_generator_model

    config = project.config.generation
    if not (adapter / "adapter_config.json").is_file():  # method=full: already a whole model
        return AutoModelForCausalLM.from_pretrained(
            str(adapter), dtype=torch.float32, trust_remote_code=config.trust_remote_code
        )
    base = AutoModelForCausalLM.from_pretrained(
        resolve_generator_model(config.model),
        dtype=torch.float32,
        trust_remote_code=config.trust_remote_code,
    )
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().eval()


def export_merged_gguf(project: Project, out: Path, outtype: str = "f16") -> list[Path]:
    """Write the current adapter merged into its base as one GGUF, with a Modelfile and README.

    Args:
        project: the project whose current adapter is exported.
        out: a new or empty folder.
        outtype: 'f16' (default), 'q8_0' (half of f16) or 'f32'.

    Returns:
        The files written: the model GGUF, Modelfile, README.txt.

    Raises:
        GGUFExportError: what cannot be written, checked before the merge and before any file.
    """
    from transformers import AutoConfig, AutoTokenizer

    from builder.gguf_export import MODELFILE, README
    from retrieval.models import ModelNotFoundError, resolve_generator_gguf, resolve_generator_model
    from retrieval.prompt import RAG_SYSTEM

    if outtype not in MERGED_OUTTYPES:
        raise GGUFExportError(f"unknown GGUF type {outtype!r}: choose {', '.join(MERGED_OUTTYPES)}")
    adapter = _current_adapter(project)
    config = project.config.generation
    base_config = AutoConfig.from_pretrained(
        resolve_generator_model(config.model), trust_remote_code=config.trust_remote_code
    )
    try:
        base_gguf = resolve_generator_gguf(config.model, config.gguf)
    except ModelNotFoundError:
        base_gguf = None
    plan = plan_merged_gguf(adapter, base_config, base_gguf)
    _fresh_target(out)
    run = adapter.parent.name
    model_file = out / f"ragtune-{run}-merged-{outtype}.gguf"
    write_merged_gguf(merged_model(project, adapter), plan, model_file, outtype, f"ragtune {run}")
    tokenizer = AutoTokenizer.from_pretrained(str(adapter))
    modelfile = modelfile_text(
        f"./{model_file.name}",
        "",
        tokenizer.chat_template,
        RAG_SYSTEM,
        config.temperature,
        config.max_new_tokens,
    )
    (out / MODELFILE).write_text(modelfile, encoding="utf-8")
    (out / README).write_text(
        "\n".join(
            [
                "A ragtune-tuned model, merged, in llama.cpp's GGUF format.",
                "",
                "llama.cpp (OpenAI-compatible server on http://127.0.0.1:8080):",
                f"  llama-server -m {model_file.name}",
                "",
                "Ollama:",
                "  ollama create ragtune-merged -f Modelfile",
                "  ollama run ragtune-merged",
                "",
                "The system prompt is ragtune's RAG prompt: put the retrieved passages in the user",
                'message as <documents><document id="1" source="...">text</document></documents>,',
                "then 'Question: ...', as `ragtune ask` does.",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return [model_file, out / MODELFILE, out / README]

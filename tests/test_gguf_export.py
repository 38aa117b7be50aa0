"""`ragtune export --gguf` on a tiny random Llama with a random LoRA: the file read back with
gguf's own reader holds llama.cpp's adapter metadata, its tensor names and shapes, and the very
factors peft saved; what llama.cpp's format cannot hold fails in one line before anything is
written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from tiny_models import build_tiny_llama

from builder.cli import main
from builder.gguf_export import GGUFExportError, export_gguf, plan_lora_gguf
from builder.project import open_project
from retrieval.prompt import RAG_SYSTEM

RANK, ALPHA = 4, 8
LAYERS, HEADS, KV_HEADS = 2, 2, 1  # tiny_llama_config
HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model, tmp_path_factory) -> Path:
    """A LoRA on every linear layer with random (non-zero) A and B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("adapter")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(
        r=RANK, lora_alpha=ALPHA, target_modules="all-linear", init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def make_project(root: Path, tiny_model: Path, adapter: Path):
    project = open_project(root, [f"generation.model={str(tiny_model)!r}"])
    project.save_config()
    shutil.copytree(adapter, project.adapters_dir / "run-1" / "adapter")
    project.set_current_adapter("run-1")
    return project


def unpermute(rows: np.ndarray, heads: int) -> np.ndarray:
    """transformers' own GGUF reader undoes llama.cpp's q/k row order this way."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    return LlamaTensorProcessor()._reverse_permute_weights(rows, heads, heads)


def test_the_adapter_reads_back_as_a_llama_cpp_lora(tmp_path, tiny_model, tiny_adapter):
    project = make_project(tmp_path / "project", tiny_model, tiny_adapter)
    written = export_gguf(project, tmp_path / "gguf")
    assert [p.name for p in written] == ["ragtune-run-1-lora-f32.gguf", "Modelfile", "README.txt"]

    reader = gguf.GGUFReader(written[0])
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == ALPHA

    saved = load_file(tiny_adapter / "adapter_model.safetensors")
    tensors = {t.name: t for t in reader.tensors}
    expected = {
        f"blk.{layer}.{short}.weight.lora_{half}"
        for layer in range(LAYERS)
        for short in HF_TO_GGUF.values()
        for half in "ab"
    }
    assert set(tensors) == expected
    for layer in range(LAYERS):
        for hf, short in HF_TO_GGUF.items():
            prefix = f"base_model.model.model.layers.{layer}.{hf}"
            lora_a = saved[f"{prefix}.lora_A.weight"].numpy()  # (rank, in)
            lora_b = saved[f"{prefix}.lora_B.weight"].numpy()  # (out, rank)
            got_a = tensors[f"blk.{layer}.{short}.weight.lora_a"]
            got_b = tensors[f"blk.{layer}.{short}.weight.lora_b"]
            assert got_a.tensor_type == got_b.tensor_type == gguf.GGMLQuantizationType.F32
            # ggml lists dims innermost first: lora_a ne = (in, rank), lora_b ne = (rank, out),
            # what llama-adapter.cpp checks against the base weight's ne = (in, out).
            assert list(got_a.shape) == [lora_a.shape[1], RANK]
            assert list(got_b.shape) == [RANK, lora_b.shape[0]]
            np.testing.assert_array_equal(got_a.data, lora_a)
            heads = {"attn_q": HEADS, "attn_k": KV_HEADS}.get(short)
            rows = np.asarray(got_b.data)
            if heads:  # llama.cpp's rotary row order; undone, peft's rows again
                assert not np.array_equal(rows, lora_b)
                rows = unpermute(rows, heads)
            np.testing.assert_array_equal(rows, lora_b)


def test_f16_halves_the_factors(tmp_path, tiny_model, tiny_adapter):
    project = make_project(tmp_path / "project", tiny_model, tiny_adapter)
    adapter = export_gguf(project, tmp_path / "gguf", "f16")[0]
    assert adapter.name == "ragtune-run-1-lora-f16.gguf"
    reader = gguf.GGUFReader(adapter)
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F16}
    saved = load_file(tiny_adapter / "adapter_model.safetensors")
    down = saved["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"].numpy()
    got = next(t for t in reader.tensors if t.name == "blk.1.ffn_down.weight.lora_a")
    np.testing.assert_allclose(got.data.astype(np.float32), down, rtol=1e-3, atol=1e-4)


def test_modelfile_and_readme(tmp_path, tiny_model, tiny_adapter):
    project = make_project(tmp_path / "project", tiny_model, tiny_adapter)
    adapter, modelfile, readme = export_gguf(project, tmp_path / "gguf")
    text = modelfile.read_text()
    # Not the embedded model: there is no base GGUF to point at yet; the README says how.
    assert text.startswith("FROM BASE.gguf\n")
    assert f"ADAPTER ./{adapter.name}\n" in text
    assert 'TEMPLATE """{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>' in text
    assert '{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant\n' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert f'SYSTEM """{RAG_SYSTEM}"""' in text
    commands = readme.read_text()
    assert f"llama-server -m BASE.gguf --lora {adapter.name}" in commands
    assert "ollama create ragtune-tuned -f Modelfile" in commands
    assert "convert_hf_to_gguf.py" in commands


def _edit_adapter(folder: Path, settings: dict | None = None, tensors: dict | None = None):
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, **(settings or {})}))
    weights = folder / "adapter_model.safetensors"
    save_file({**load_file(weights), **(tensors or {})}, weights)


def _cases():
    import torch

    magnitude = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"
    return {
        "dora": ({"use_dora": True}, {magnitude: torch.ones(16)}, "DoRA magnitude vectors"),
        "modules_to_save": (
            {"modules_to_save": ["score"]},
            {"base_model.model.score.weight": torch.ones(2, 16)},
            "modules_to_save ['score'] are whole trained weights",
        ),
        "resized embeddings": (
            {},
            {"base_model.model.model.embed_tokens.weight": torch.ones(512, 16)},
            "resized embeddings (embed_tokens/lm_head saved in the adapter)",
        ),
    }


@pytest.mark.parametrize("case", ["dora", "modules_to_save", "resized embeddings"])
def test_what_llama_cpp_cannot_hold_fails_in_one_line_before_writing(
    case, tmp_path, tiny_model, tiny_adapter, capsys
):
    settings, tensors, reason = _cases()[case]
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, adapter)
    _edit_adapter(adapter, settings, tensors)
    project = make_project(tmp_path / "project", tiny_model, adapter)
    out = tmp_path / "gguf"
    assert main(["export", str(project.root), "--gguf", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    assert message.startswith("error: cannot export")
    assert reason in message
    assert "export --merge OUT" in message and "convert_hf_to_gguf.py" in message
    assert not out.exists()


def test_an_architecture_without_a_tensor_map_fails(tiny_adapter):
    from transformers import GPT2Config

    with pytest.raises(GGUFExportError, match=r"architecture 'gpt2' has no GGUF tensor map"):
        plan_lora_gguf(tiny_adapter, GPT2Config())


def test_rslora_folds_its_scale_into_alpha(tmp_path, tiny_model, tiny_adapter):
    from transformers import AutoConfig

    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, adapter)
    _edit_adapter(adapter, {"use_rslora": True})
    plan = plan_lora_gguf(adapter, AutoConfig.from_pretrained(tiny_model))
    # llama.cpp scales by alpha / rank; peft's rsLoRA by alpha / sqrt(rank).
    assert plan.alpha / RANK == pytest.approx(ALPHA / RANK**0.5)


def test_a_full_fine_tune_is_refused(tmp_path, tiny_model):
    project = make_project(tmp_path / "project", tiny_model, tiny_model)
    with pytest.raises(GGUFExportError, match=r"full fine-tune .*export --merge OUT"):
        export_gguf(project, tmp_path / "gguf")
    assert not (tmp_path / "gguf").exists()

"""`ragtune export --merge --gguf`: what cannot be written fails before anything is written (fast,
on the tiny Llama); the merged embedded SmolLM2 with a seeded random LoRA loads in llama.cpp and
its greedy first sentences match transformers on the same merged weights (slow)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from tiny_models import build_tiny_llama

from builder.cli import main
from builder.gguf_export import GGUFExportError
from builder.gguf_merged import plan_merged_gguf
from builder.project import open_project
from finetune.text import split_sentences
from retrieval.models import EMBEDDED_GENERATOR, resolve_generator_model
from retrieval.prompt import PromptDocument, rag_messages

NEW_TOKENS = 24
QUESTIONS = [
    (
        "How many runs before the MX-30 rotor is retired?",
        "The MX-30 rotor is retired after 5000 runs.",
    ),
    ("How long is the centrifuge warranty?", "The centrifuge carries a two-year warranty."),
    ("When are refunds paid?", "Refunds are paid within 14 days of the invoice date."),
    ("Where do vacation requests go?", "Vacation requests go to your manager two weeks ahead."),
    ("How do I reset a forgotten password?", "Use the 'Forgot password' link on the login page."),
    ("What voltage does the pump need?", "The P-200 pump runs on 230 V AC at 50 Hz."),
]


def random_lora(base: str, folder: Path, b_scale: float = 1.0, **settings) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
        init_lora_weights=False,
        **settings,
    )
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    weights = folder / "adapter_model.safetensors"
    factors = load_file(weights)
    save_file({k: v * b_scale if ".lora_B." in k else v for k, v in factors.items()}, weights)
    return folder


def project_with(root: Path, model: str, adapter: Path, *settings: str):
    project = open_project(root, [f"generation.model={model!r}", *settings])
    project.save_config()
    shutil.copytree(adapter, project.adapters_dir / "run-1" / "adapter")
    project.set_current_adapter("run-1")
    return project


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def test_a_model_without_a_base_gguf_fails_before_writing(tmp_path, tiny_model, capsys):
    adapter = random_lora(str(tiny_model), tmp_path / "adapter")
    project = project_with(tmp_path / "project", str(tiny_model), adapter)
    out = tmp_path / "gguf"
    capsys.readouterr()  # the progress bars of building the adapter
    assert main(["export", str(project.root), "--merge", "--gguf", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: cannot write")
    assert "no base GGUF to take the tokenizer from (set generation.gguf" in message
    assert "export --merge --out DIR" in message and "convert_hf_to_gguf.py" in message
    assert not out.exists()


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"use_dora": True}, "DoRA magnitude vectors"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save ['lm_head']"),
    ],
)
def test_what_the_merged_writer_cannot_hold_is_named(tmp_path, tiny_model, settings, reason):
    from transformers import AutoConfig

    adapter = random_lora(str(tiny_model), tmp_path / "adapter")
    card = adapter / "adapter_config.json"
    card.write_text(json.dumps(json.loads(card.read_text()) | settings))
    with pytest.raises(GGUFExportError, match=re.escape(reason)):
        plan_merged_gguf(adapter, AutoConfig.from_pretrained(tiny_model), None)


def test_an_architecture_without_a_tensor_map_fails(tmp_path, tiny_model):
    from transformers import Qwen2Config

    adapter = random_lora(str(tiny_model), tmp_path / "adapter")
    with pytest.raises(GGUFExportError, match="architecture 'qwen2' has no merged-GGUF tensor map"):
        plan_merged_gguf(adapter, Qwen2Config(), None)


def first_sentence(text: str) -> str:
    sentences = split_sentences(" ".join(text.split()))
    return sentences[0] if sentences else ""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A seeded random LoRA on the embedded model; transformers' greedy answers with it merged."""
    import torch
    from transformers import AutoTokenizer

    from builder.gguf_merged import merged_model

    base = resolve_generator_model(EMBEDDED_GENERATOR)
    work = tmp_path_factory.mktemp("merged")
    adapter = random_lora(base, work / "adapter", b_scale=0.2)
    project = project_with(work / "project", EMBEDDED_GENERATOR, adapter)
    tokenizer = AutoTokenizer.from_pretrained(base)
    prompts = [
        tokenizer.apply_chat_template(
            rag_messages(q, [PromptDocument("manual.md", text)]),
            tokenize=False,
            add_generation_prompt=True,
        )
        for q, text in QUESTIONS
    ]
    merged = merged_model(project, adapter)
    expected = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            output = merged.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        expected.append(tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True))
    return project, tokenizer, prompts, expected


@pytest.mark.slow
@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_the_merged_gguf_answers_in_llama_cpp_like_transformers(reference, tmp_path, outtype):
    import xllamacpp

    project, tokenizer, prompts, expected = reference
    out = tmp_path / "gguf"
    command = ["export", str(project.root), "--merge", "--gguf", str(out), "--outtype", outtype]
    assert main(command) == 0
    model_file = out / f"ragtune-run-1-merged-{outtype}.gguf"
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM ./{model_file.name}" in modelfile and "ADAPTER" not in modelfile
    assert model_file.stat().st_size < 0.6 * 4 * 135e6  # well under float32's size

    params = xllamacpp.CommonParams()
    params.model.path = str(model_file)
    params.n_ctx = 1024
    params.n_parallel = 1
    params.verbosity = 0
    server = xllamacpp.Server(params)
    got = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        request = {"prompt": ids, "n_predict": NEW_TOKENS, "temperature": 0}
        got.append(server.handle_completions(request)["choices"][0]["text"])
    # The base GGUF's tokenizer travelled with the weights: llama.cpp tokenizes as transformers.
    counted = server.handle_completions({"prompt": prompts[0], "n_predict": 1})["usage"]
    assert counted["prompt_tokens"] == len(
        tokenizer(prompts[0], add_special_tokens=False)["input_ids"]
    )
    agree = sum(first_sentence(a) == first_sentence(b) for a, b in zip(got, expected))
    print(f"\nmerged {outtype} GGUF in llama.cpp vs transformers merged: {agree}/{len(prompts)}")
    for want, have in zip(expected, got):
        print(f"  transformers: {first_sentence(want)!r}\n  llama.cpp:    {first_sentence(have)!r}")
    # f16/q8_0 against float32: at most one greedy answer may drift apart.
    assert agree >= len(prompts) - 1

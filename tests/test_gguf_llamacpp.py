"""The exported GGUF LoRA in a real llama.cpp (xllamacpp) on the embedded SmolLM2 GGUF: greedy
first sentences agree with transformers + peft on a fixed set of RAG questions. The base GGUF is
4-bit (Q4_1) while transformers runs its dequantized fp32 copy, so a few answers may differ;
the test prints the agreement share (measured on two cores: 4/6, and 4/6 with the adapter off)
and requires at least the agreement that the 4-bit base alone reaches with the adapter off."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.gguf_export import embedded_base_gguf, plan_lora_gguf, write_lora_gguf
from finetune.text import split_sentences
from retrieval.models import EMBEDDED_GENERATOR, resolve_generator_model
from retrieval.prompt import PromptDocument, rag_messages

pytestmark = pytest.mark.slow

NEW_TOKENS = 24
B_SCALE = 0.2  # random lora_B shrunk: the answers change, yet stay sentences
QUESTIONS = [
    (
        "How many runs before the MX-30 rotor is retired?",
        "The MX-30 rotor must be retired after 5000 runs or five years, whichever comes first.",
    ),
    (
        "How long is the centrifuge warranty?",
        "The centrifuge carries a two-year warranty covering parts and labour.",
    ),
    (
        "When are refunds paid?",
        "Refunds are paid within 14 days of the invoice date, to the original card.",
    ),
    (
        "Where do vacation requests go?",
        "Vacation requests go to your manager at least two weeks ahead of the first day off.",
    ),
    (
        "How do I reset a forgotten password?",
        "Reset a forgotten password from the login page with the 'Forgot password' link.",
    ),
    (
        "What voltage does the pump need?",
        "The P-200 pump runs on 230 V AC at 50 Hz; do not connect it to 110 V outlets.",
    ),
]


def first_sentence(text: str) -> str:
    sentences = split_sentences(" ".join(text.split()))
    return sentences[0] if sentences else ""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A seeded random LoRA (q, k, v, o, down) on the embedded model, and its GGUF export."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    base_dir = resolve_generator_model(EMBEDDED_GENERATOR)
    folder = tmp_path_factory.mktemp("smollm2-lora")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    weights = folder / "adapter_model.safetensors"
    factors = load_file(weights)
    save_file({k: v * B_SCALE if ".lora_B." in k else v for k, v in factors.items()}, weights)
    plan = plan_lora_gguf(folder, AutoConfig.from_pretrained(base_dir))
    lora = write_lora_gguf(folder, plan, folder / "lora.gguf")
    return base_dir, folder, lora


def transformers_answers(
    base_dir: str, adapter: Path, prompts: list[str]
) -> dict[float, list[str]]:
    """Greedy answers with the adapter on (1.0) and switched off (0.0)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    answers: dict[float, list[str]] = {1.0: [], 0.0: []}
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            tuned = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
            with model.disable_adapter():
                plain = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
        for scale, out in ((1.0, tuned), (0.0, plain)):
            text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            answers[scale].append(text)
    return answers


def llamacpp_answers(base_gguf: Path, lora: Path, prompts: list[str]) -> dict[float, list[str]]:
    """Answers with the adapter at scale 1 and 0, from one load (the scale is per request)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(base_gguf)
    params.n_ctx = 1024
    params.n_parallel = 1
    params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(lora), 1.0)]
    server = xllamacpp.Server(params)
    answers: dict[float, list[str]] = {1.0: [], 0.0: []}
    for scale, replies in answers.items():
        for prompt in prompts:
            request = {
                "prompt": prompt,
                "n_predict": NEW_TOKENS,
                "temperature": 0,
                "cache_prompt": False,
                "lora": [{"id": 0, "scale": scale}],
            }
            replies.append(server.handle_completions(request)["choices"][0]["text"])
    return answers


def test_exported_lora_in_llama_cpp_matches_transformers(exported):
    from transformers import AutoTokenizer

    base_dir, adapter, lora = exported
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    # One rendered prompt string for both engines: the comparison is of weights, not templates.
    prompts = [
        tokenizer.apply_chat_template(
            rag_messages(question, [PromptDocument("manual.md", text)]),
            tokenize=False,
            add_generation_prompt=True,
        )
        for question, text in QUESTIONS
    ]
    reference = transformers_answers(base_dir, adapter, prompts)
    expected = [first_sentence(a) for a in reference[1.0]]
    base_gguf = embedded_base_gguf(EMBEDDED_GENERATOR)
    replies = llamacpp_answers(base_gguf, lora, prompts)
    got = [first_sentence(a) for a in replies[1.0]]
    untuned = [first_sentence(a) for a in replies[0.0]]
    agree = sum(a == b for a, b in zip(got, expected))
    # The floor set by the 4-bit base alone: the same comparison with the adapter off.
    base_agree = sum(first_sentence(a) == b for a, b in zip(reference[0.0], untuned))
    print(
        f"\nexported LoRA in llama.cpp vs transformers+peft: {agree}/{len(prompts)} first "
        f"sentences agree (adapter off, Q4_1 vs fp32 base: {base_agree}/{len(prompts)})"
    )
    for want, have, plain in zip(expected, got, untuned):
        print(f"  peft:     {want!r}\n  llama.cpp:{have!r}\n  scale 0:  {plain!r}")
    assert untuned != got, "the adapter changed nothing: the test would prove nothing"
    # A wrong layout (names, transposition, q/k row order, alpha) leaves llama.cpp's answers
    # unrelated to peft's. The 4-bit base alone sets how many can agree: with the adapter on,
    # at least as many must agree as with it off.
    assert agree >= base_agree

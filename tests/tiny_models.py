"""A tiny random Llama with a byte-level BPE tokenizer and a ChatML template, built offline in
the test process (no downloads), for training tests that take seconds on two CPU cores."""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<pad>", "<s>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The MX-30 rotor must be retired after 5000 runs.",
    "Vacation requests go to your manager two weeks ahead.",
    "Reset a forgotten password from the login page.",
    "Refunds are paid within 14 days of the invoice.",
    "What is the warranty of the centrifuge? Two years.",
    "user assistant system",
]


def build_tokenizer(corpus: list[str] = CORPUS):
    """A byte-level BPE (any text encodes, decode is exact) trained on `corpus`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        chat_template=CHATML_TEMPLATE,
    )


def tiny_llama_config(tokenizer, **overrides):
    """A 2-layer, 16-wide Llama config sized to `tokenizer`."""
    from transformers import LlamaConfig

    settings = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 4096,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return LlamaConfig(**{**settings, **overrides})


def build_tiny_llama(folder: Path) -> Path:
    """Save a 2-layer, 16-wide random Llama and its tokenizer into `folder`."""
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _word_tokenizer():
    """A word-level BERT-style tokenizer over the words of `CORPUS` ([CLS] text [SEP])."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for line in CORPUS for w in line.lower().replace(".", " ").split()})
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=128,
    )


def _tiny_bert_config(vocab_size: int, **overrides):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        **overrides,
    )


def build_tiny_cross_encoder(folder: Path) -> Path:
    """Save a 2-layer, 16-wide random BERT with one output (a cross-encoder's relevance score)
    and a word-level tokenizer into `folder`: what `sentence_transformers.CrossEncoder` loads."""
    import torch
    from transformers import BertForSequenceClassification

    tokenizer = _word_tokenizer()
    torch.manual_seed(0)
    BertForSequenceClassification(_tiny_bert_config(len(tokenizer), num_labels=1)).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_sentence_encoder(folder: Path) -> Path:
    """Save a 2-layer, 16-wide random BERT with mean pooling and unit-length output into
    `folder`: what `sentence_transformers.SentenceTransformer` loads."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertModel

    bert = folder / "bert"
    tokenizer = _word_tokenizer()
    torch.manual_seed(0)
    BertModel(_tiny_bert_config(len(tokenizer))).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    transformer = models.Transformer(str(bert), max_seq_length=128)
    modules = [transformer, models.Pooling(16, pooling_mode="mean"), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder / "model"))
    return folder / "model"

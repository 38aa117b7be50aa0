"""Typed settings of `finetune.train` (which weights change, how fast, and how often a run is
checkpointed) and of the evidence selector (`finetune.selector`). `builder.config` composes
them into the project file; `problems()` checks the values so that a bad setting fails before
any model loads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from finetune.pairs import KINDS

BALANCES = ("kind", "none")
"""`TuneConfig.balance`: how the trained pairs are drawn when there are more than the budget."""

TUNE_METHODS = ("lora", "dora", "full", "qlora")
DISTILL_MODES = ("none", "kl")


@dataclass
class TuneConfig:
    """How a model is fine-tuned on question/answer pairs."""

    method: str = "lora"
    """'lora' (low-rank adapters), 'dora' (LoRA with a learned magnitude), 'full' (every weight)
    or 'qlora' (LoRA on a 4-bit base; needs a CUDA GPU and bitsandbytes)."""
    lora_rank: int = 16
    """Rank r of the adapter matrices; more means more capacity and a bigger adapter."""
    lora_alpha: int = 32
    """Adapter scaling: the update is multiplied by lora_alpha / lora_rank."""
    lora_dropout: float = 0.0
    """Dropout on the adapter input during training. Off by default, as in torchtune's and
    Unsloth's LoRA recipes: with it, each of the 7 adapted layers of a block draws its own mask
    and keeps its own dropped-out copy of the input for the backward pass, which made a CPU step
    of SmolLM2-135M ~45% slower and took ~1 GB more (bench/train.py), for little regularization
    over the few hundred steps a project trains. Try 0.05 when a long run overfits."""
    target_modules: str = "all-linear"
    """Layers that get adapters: 'all-linear' (every linear layer but the output head) or a
    comma-separated list of module names such as 'q_proj,v_proj'."""
    adapter_layers: int = 0
    """Adapters in the last N transformer blocks only (0: every block). The backward pass stops
    below the lowest adapted block, so a step costs less: on a CPU the backward pass is about
    two thirds of it."""
    learning_rate: float = 3e-4
    """Peak AdamW learning rate; 2e-4 to 3e-4 suits adapters, use ~1e-5 for method='full'."""
    max_examples: int = 120
    """Synthesized pairs trained on (a seeded sample when there are more; 0 uses all). The
    default keeps `ragtune tune` on the sample corpus to a few minutes on a 2-core laptop;
    raise it, and `epochs`, when you have the time or a GPU."""
    balance: str = "kind"
    """How the `max_examples` pairs are chosen when there are more: 'kind' gives each kind of
    question (`finetune.pairs.KINDS`; yes and no together, half each) an equal share and lets
    the files take turns within a kind; 'none' samples at random, keeping the synthesis's
    proportions (on a corpus of short sections, mostly section-heading questions)."""
    skip_kinds: str = ""
    """Kinds of synthesized pair left out of training, comma-separated (`finetune.pairs.KINDS`,
    e.g. 'heading'); they stay in the held-out questions. '' trains on every kind."""
    epochs: float = 1.0
    """Passes over the training pairs (fractions allowed)."""
    max_steps: int = -1
    """Optimizer steps to run; when more than 0 it overrides `epochs` and `min_steps`."""
    min_steps: int = 60
    """The fewest optimizer steps a run takes when `max_steps` is not set: when the examples at
    `epochs` fill fewer steps, epochs are raised to the whole number of passes that fill them, so
    a small corpus is seen several times instead of once (one pass over a few dozen pairs moves
    an adapter too little to pay off). 0 keeps `epochs` as set."""
    batch_size: int = 4
    """Examples per forward pass."""
    gradient_accumulation: int = 1
    """Forward passes per optimizer step: the effective batch is batch_size * this."""
    max_seq_tokens: int = 1024
    """Conversations are cut to this many tokens; ones whose answer falls entirely beyond it are
    dropped."""
    save_every_steps: int = 50
    """A resumable checkpoint is written every this many optimizer steps."""
    seed: int = 0
    """Seeds adapter initialisation and data order, so a run can be repeated."""
    packing: bool = False
    """Pack several short conversations into one sequence of max_seq_tokens (faster on GPU;
    trl then trains padding-free, which wants FlashAttention)."""
    group_by_length: bool = True
    """Batch conversations of similar length together to waste less compute on padding."""
    distill: str = "none"
    """'kl' adds logit distillation from `synthesis.teacher` (a local model or folder, or the
    embedded one, with the student's tokenizer): on every answer token the student also matches
    the teacher's temperature-softened next-token distribution. 'none' trains on the answers
    alone."""
    distill_temperature: float = 2.0
    """Softmax temperature T of both distributions in the distillation term; above 1 it shows
    the student the teacher's ranking of the wrong tokens too."""
    distill_alpha: float = 0.5
    """Weight of the distillation term: loss = (1 - alpha) * SFT + alpha * T^2 * KL on the
    tokens that have a teacher (0 trains on the answers alone)."""
    context_distill: bool = False
    """Context distillation for the `tuned` (closed-book) mode: on the closed-book examples the
    teacher is the base model (the adapter switched off, no second copy in memory) reading the
    oracle chunk in the RAG prompt, and the adapter, seeing the question alone, learns its answer
    distribution. Weighted and softened by distill_alpha and distill_temperature. Needs an
    adapter (not method = 'full') and packing = false. With distill = 'kl' the `synthesis`
    teacher reads that prompt instead of the base model."""

    def skipped_kinds(self) -> set[str]:
        return {kind.strip() for kind in self.skip_kinds.split(",") if kind.strip()}

    def target_module_list(self) -> str | list[str]:
        """`target_modules` as peft takes it: 'all-linear' or a list of module names."""
        if self.target_modules == "all-linear":
            return "all-linear"
        return [name.strip() for name in self.target_modules.split(",") if name.strip()]

    def steps_per_epoch(self, examples: int, processes: int = 1) -> int:
        """Optimizer steps of one pass over `examples` conversations, as the Trainer counts them
        on `processes` data-parallel processes: each takes its share of the examples in batches,
        then steps of `gradient_accumulation` batches (a partial one counts)."""
        batches = math.ceil(math.ceil(examples / processes) / self.batch_size)
        return max(math.ceil(batches / self.gradient_accumulation), 1)

    def epochs_for(self, examples: int, processes: int = 1) -> float:
        """The epochs a run over `examples` conversations takes on `processes` processes:
        `epochs`, or, when that fills fewer than `min_steps` optimizer steps (and `max_steps`
        is not set), the whole number of passes that fills them."""
        if self.max_steps > 0 or self.min_steps <= 0 or examples <= 0:
            return self.epochs
        per_epoch = self.steps_per_epoch(examples, processes)
        if self.epochs * per_epoch >= self.min_steps:
            return self.epochs
        return float(math.ceil(self.min_steps / per_epoch))

    def problems(self) -> list[str]:
        """Every invalid value, each with what to do; empty when the config is usable."""
        problems = []
        if self.method not in TUNE_METHODS:
            problems.append(f"method = {self.method!r}: choose one of {', '.join(TUNE_METHODS)}")
        positive = ("lora_rank", "lora_alpha", "learning_rate", "batch_size")
        positive += ("gradient_accumulation", "max_seq_tokens", "save_every_steps")
        for name in positive:
            if getattr(self, name) <= 0:
                problems.append(f"{name} = {getattr(self, name)}: must be more than 0")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout = {self.lora_dropout}: must be in [0, 1)")
        if self.balance not in BALANCES:
            problems.append(f"balance = {self.balance!r}: choose one of {', '.join(BALANCES)}")
        if self.max_examples < 0:
            problems.append(f"max_examples = {self.max_examples}: must be 0 (all) or more")
        if self.max_steps <= 0 and self.epochs <= 0:
            problems.append(
                f"epochs = {self.epochs} and max_steps = {self.max_steps}: set epochs > 0, or "
                "max_steps > 0 to run a fixed number of steps"
            )
        if self.min_steps < 0:
            problems.append(f"min_steps = {self.min_steps}: must be 0 (off) or more")
        unknown = sorted(self.skipped_kinds() - set(KINDS))
        if unknown:
            problems.append(
                f"skip_kinds = {self.skip_kinds!r}: {', '.join(unknown)} is no kind of pair; "
                f"choose from {', '.join(KINDS)}"
            )
        if self.adapter_layers < 0:
            problems.append(f"adapter_layers = {self.adapter_layers}: must be 0 (all) or more")
        if self.adapter_layers and self.method == "full":
            problems.append("adapter_layers is for adapters: set it to 0 with method = 'full'")
        problems.extend(self._distill_problems())
        if not self.target_module_list():
            problems.append(
                f"target_modules = {self.target_modules!r}: give 'all-linear' or module names "
                "such as 'q_proj,v_proj'"
            )
        return problems

    def _distill_problems(self) -> list[str]:
        problems = []
        if self.distill not in DISTILL_MODES:
            problems.append(f"distill = {self.distill!r}: choose one of {', '.join(DISTILL_MODES)}")
        if self.distill_temperature <= 0:
            problems.append(
                f"distill_temperature = {self.distill_temperature}: must be more than 0"
            )
        if not 0 <= self.distill_alpha <= 1:
            problems.append(f"distill_alpha = {self.distill_alpha}: must be in [0, 1]")
        if self.context_distill and self.method == "full":
            problems.append(
                "context_distill = true with method = 'full': the teacher is the base model with "
                "the adapter switched off, and a full fine-tune has none; use method = 'lora', or "
                "set context_distill = false"
            )
        if self.context_distill and self.packing:
            problems.append(
                "context_distill = true with packing = true: packed rows cannot carry the "
                "teacher's prompt; set packing = false"
            )
        return problems


def distill_teacher_problem(teacher: str) -> str | None:
    """Why `teacher` (a `synthesis.teacher` value) cannot be a logit-distillation teacher, or
    None when it can: distillation reads the teacher's logits, which only a local model gives."""
    spec = teacher.strip()
    if spec.lower() in ("", "none"):
        return (
            "tune.distill = 'kl' needs a teacher model: set synthesis.teacher to a local model "
            "of the student's family, or tune.distill = 'none'"
        )
    if spec.startswith(("http://", "https://")):
        return (
            f"tune.distill = 'kl' reads the teacher's logits, which the endpoint {spec} does not "
            "give: set synthesis.teacher to a local model folder (or the embedded one) of the "
            "student's family, or tune.distill = 'none'"
        )
    return None


ORACLE_PLACES = ("retrieved", "random")
RAFT_TARGETS = ("own", "pair")
OWN_MISSES = ("drop", "pair")
OWN_RETRIES = ("hint", "focused", "none")


@dataclass
class RaftConfig:
    """How synthesized pairs become training conversations."""

    without_oracle: float = 0.0
    """Share of examples whose oracle chunk is left out (target: the refusal sentence). Off by
    default: on the sample the 135M model learned to refuse more often, not when the chunks lack
    the answer (`bench/refusals.py`, README "Refusals"); the engine's quote gate refuses on
    the evidence instead (`answer.quote_gate`)."""
    closed_book: float = 0.15
    """Share of extra examples with the question alone (trains the `tuned` mode)."""
    oracle_place: str = "random"
    """Where the oracle chunk is shown: 'random', at a random rank (the RAFT paper's setup), or
    'retrieved', at the rank the project's retriever gives it for the question (last when it is
    not in the top: the order the answer engine shows)."""
    targets: str = "own"
    """What a cited example's answer is: 'own', the base model's own answer to the example's
    prompt, kept when it holds the pair's key fact and every sentence is supported by a shown
    chunk, with its verified [n] markers (self-distillation: the adapter learns to cite and to
    prefer its right answers without being pulled towards another writer's wording); 'pair',
    the synthesized answer as written, citing the oracle."""
    own_retry: str = "hint"
    """'own': where the model's answer misses, ask once more and train the answer that passes
    on the prompt without the help (STaR's rationalization): 'hint' adds the pair's key fact
    and evidence after the question, 'focused' shows the oracle chunk alone, 'none' does not
    ask again."""
    own_miss: str = "drop"
    """'own': a cited example with no accepted answer is dropped ('drop') or keeps the
    synthesized answer ('pair')."""
    seed: int = 0

    def problems(self) -> list[str]:
        problems = []
        if self.oracle_place not in ORACLE_PLACES:
            places = " or ".join(repr(p) for p in ORACLE_PLACES)
            problems.append(f"oracle_place = {self.oracle_place!r}: use {places}")
        for name, choices in (
            ("targets", RAFT_TARGETS),
            ("own_miss", OWN_MISSES),
            ("own_retry", OWN_RETRIES),
        ):
            value = getattr(self, name)
            if value not in choices:
                problems.append(f"{name} = {value!r}: use " + " or ".join(map(repr, choices)))
        for name in ("without_oracle", "closed_book"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                problems.append(f"{name} = {value}: must be in [0, 1)")
        return problems


@dataclass
class SelectorConfig:
    """The evidence selector trained by `ragtune tune` beside the adapter."""

    enabled: bool = True
    """Train it (about half a minute for 150 pairs on a 2-core CPU); the tuned modes then quote
    with it. Off: they quote with the project's embedding model, as the untuned modes do."""
    epochs: float = 2.0
    """Passes over the triplets."""
    learning_rate: float = 2e-5
    """Peak AdamW learning rate, after a warm-up of a tenth of the steps (a common value in
    sentence-transformers' training examples)."""
    batch_size: int = 16
    """Triplets per step; the other triplets' sentences in a batch are negatives too."""
    max_pairs: int = 500
    """Training pairs it learns from, a seeded sample when there are more (0: all). Mining and
    training grow with the pairs: 2,699 pairs of PubMedQA's 1000 abstracts kept it busy for
    over 20 minutes on a shared 2-core CPU, while the adapter trains on `tune.max_examples`."""
    seed: int = 0

    def problems(self) -> list[str]:
        """Every invalid value; empty when the config is usable."""
        problems = [
            f"{name} = {getattr(self, name)}: must be more than 0"
            for name in ("epochs", "learning_rate", "batch_size")
            if getattr(self, name) <= 0
        ]
        if self.max_pairs < 0:
            problems.append(f"max_pairs = {self.max_pairs}: must be 0 (all) or more")
        return problems

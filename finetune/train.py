"""Fine-tune a causal language model on chat examples with trl's SFTTrainer: LoRA, DoRA, QLoRA
or every weight, with checkpoints that survive a crash and a resume that skips half-written ones.

Layout of `out_dir`:
    checkpoints/checkpoint-N/   resumable state; holds COMPLETE once fully written
    checkpoints/run.json        the settings that shape the weights (checked on resume)
    adapter/                    the result: a peft adapter (or the full model) and the tokenizer

Under a launcher (`torchrun --nproc_per_node N`) every process trains its share of each batch
(DDP: gloo on CPU, NCCL on CUDA); only the main process removes unfinished checkpoints, marks
finished ones and writes the adapter, and every process reads the same checkpoint on resume.

Heavy libraries are imported inside the functions, so that the checks that need no model (the
settings, qlora without a GPU, leftover checkpoints) fail in a second, not after loading one.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from finetune.checkpoints import record_run_settings, resume_point, step_of
from finetune.config import TuneConfig, distill_teacher_problem
from finetune.data import ChatExample
from finetune.distributed import World, backend, join, launched, main_first, wait_for_everyone
from finetune.formatting import build_dataset, fitting_examples, require_chat_template

CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
# Two, not one: a crash after the Trainer rotated old checkpoints away but before the newest got
# its COMPLETE marker must still leave a complete one to resume from.
_KEEP_CHECKPOINTS = 2
QLORA_NEEDS = (
    "qlora needs a CUDA GPU and bitsandbytes: pip install bitsandbytes; use method=lora on CPU"
)


class TrainError(Exception):
    """Training cannot start as asked; the message says what to change."""


@dataclass
class TrainResult:
    """What a finished run produced; plain data, no model attached."""

    adapter_dir: Path
    """The peft adapter (or, for method='full', the whole model) with the tokenizer."""
    steps: int
    """Optimizer steps reached, counting those before a resume."""
    epochs: float
    """Passes over the training examples actually run (the Trainer's epoch count, rounded to
    2 decimals); `tune.min_steps` may have raised them above `tune.epochs`."""
    train_loss: float
    """Mean training loss of the steps run by this call."""
    loss_curve: list[tuple[int, float]]
    """(step, loss) for every logged step, including those restored from the checkpoint."""
    resumed_from: int | None
    """Step of the checkpoint this run resumed from; None when it started from scratch."""
    seconds: float
    tokens_per_second: float
    """Tokens (prompt and answer, no padding) processed per second by this call."""
    notes: list[str] = field(default_factory=list)
    """What happened besides training, e.g. 'no complete checkpoint: started from scratch'."""
    processes: int = 1
    """Data-parallel processes the Trainer ran on (its accelerator's count, not the request)."""
    distributed: str = "NO"
    """The Trainer's distributed type and backend, e.g. 'MULTI_CPU (gloo)'; 'NO' alone."""


def train(
    model_path: str,
    examples: list[ChatExample],
    out_dir: Path,
    config: TuneConfig,
    *,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
    callbacks: Sequence[Any] = (),
    teacher_path: str | None = None,
) -> TrainResult:
    """Fine-tune `model_path` on `examples` and save the adapter into `out_dir/adapter`.

    The loss covers only the final assistant answer of each example (see finetune.formatting).

    Args:
        model_path: a local model folder or hub id, with a chat template in its tokenizer.
        examples: the training conversations.
        out_dir: the run folder (see the module docstring for its layout).
        config: method, adapter shape, schedule and checkpointing.
        resume: continue from the newest complete checkpoint in `out_dir`; without one, start
            from scratch and say so in `TrainResult.notes`.
        progress: called after every step with {"step", "max_steps", "loss", "epoch", "eta_s",
            "learning_rate"}.
        callbacks: extra `transformers.TrainerCallback`s (e.g. one that stops the run).
        teacher_path: the local model (folder or hub id) `config.distill = 'kl'` distills from;
            it must share the student's tokenizer.

    Returns:
        Where the adapter is, the steps and epochs run, the loss curve and the throughput.

    Raises:
        TrainError: invalid settings, no examples, qlora without CUDA and bitsandbytes, or a
            distillation teacher that is missing, an endpoint, or of another vocabulary.
        ChatTemplateError: the model's tokenizer has no chat template.
        ResumeError: checkpoints of an earlier run in `out_dir` without `resume`, or resuming
            with settings that differ from the checkpoints'.
        LaunchError: the launcher's RANK / WORLD_SIZE / LOCAL_RANK are inconsistent.
    """
    _check_request(examples, config, teacher_path)
    world = join(launched())
    out_dir = Path(out_dir)
    root = out_dir / CHECKPOINTS
    settings = _run_settings(model_path, config)
    # The main process removes unfinished checkpoints; the others then find the same start.
    with main_first(world):
        start, notes = resume_point(root, resume, settings)

    from transformers import AutoTokenizer

    from finetune.callbacks import MarkCompleteCallback, ReportCallback

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    require_chat_template(tokenizer, model_path)
    examples, too_long = fitting_examples(tokenizer, examples, config.max_seq_tokens)
    if not examples:
        raise TrainError(
            f"every example is longer than tune.max_seq_tokens = {config.max_seq_tokens} "
            "tokens: raise it, or lower answer.documents (chunks per prompt)"
        )
    if too_long:
        notes.append(
            f"{too_long} example(s) longer than tune.max_seq_tokens = "
            f"{config.max_seq_tokens} tokens left out (their answers would be cut off)"
        )
    config = _with_min_steps(config, len(examples), notes, world.size)
    if config.context_distill:
        notes.append(_context_note(examples))
    tracker = ReportCallback(progress)
    trainer = build_trainer(
        model_path,
        examples,
        root,
        config,
        callbacks=[MarkCompleteCallback(), tracker, *callbacks],
        quiet=progress is not None,
        tokenizer=tokenizer,
        teacher_path=teacher_path,
    )
    if world.is_main:
        record_run_settings(root, settings)
    began = time.monotonic()
    output = trainer.train(resume_from_checkpoint=str(start) if start else None)
    seconds = time.monotonic() - began
    adapter_dir = _save_final(trainer, out_dir / ADAPTER, world)
    history = trainer.state.log_history
    accelerator = trainer.accelerator
    return TrainResult(
        adapter_dir=adapter_dir,
        steps=trainer.state.global_step,
        epochs=round(float(trainer.state.epoch or 0.0), 2),
        train_loss=float(output.training_loss),
        loss_curve=[(int(log["step"]), float(log["loss"])) for log in history if "loss" in log],
        resumed_from=step_of(start) if start else None,
        seconds=seconds,
        tokens_per_second=tracker.tokens / seconds if seconds > 0 else 0.0,
        notes=notes,
        processes=accelerator.num_processes,
        distributed=_distributed_name(accelerator.distributed_type.name),
    )


def _distributed_name(kind: str) -> str:
    return kind if kind == "NO" else f"{kind} ({backend()})"


def _check_request(
    examples: list[ChatExample], config: TuneConfig, teacher_path: str | None
) -> None:
    problems = config.problems()
    if not examples:
        problems.append("no training examples: give at least one question/answer pair")
    if config.distill == "kl":
        problem = distill_teacher_problem(teacher_path or "none")
        if problem:
            problems.append(problem)
    if config.method == "qlora":
        import torch

        if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
            problems.append(QLORA_NEEDS)
    if problems:
        raise TrainError("cannot train:\n" + "\n".join(f"  - {p}" for p in problems))


def _with_min_steps(
    config: TuneConfig, examples: int, notes: list[str], processes: int = 1
) -> TuneConfig:
    """`config` with the epochs that give at least `min_steps` optimizer steps on `processes`
    processes; says so in `notes` when they were raised."""
    epochs = config.epochs_for(examples, processes)
    if epochs == config.epochs:
        return config
    on = f" on {processes} processes" if processes > 1 else ""
    notes.append(
        f"epochs raised from {config.epochs:g} to {epochs:g}: {examples} examples fill "
        f"{config.steps_per_epoch(examples, processes)} optimizer step(s) a pass{on}, fewer than "
        f"tune.min_steps = {config.min_steps} (set tune.min_steps = 0 to keep tune.epochs)"
    )
    return replace(config, epochs=epochs)


def _context_note(examples: list[ChatExample]) -> str:
    with_teacher = sum(example.teacher_messages is not None for example in examples)
    if with_teacher:
        return f"context distillation on {with_teacher} closed-book example(s)"
    return (
        "context_distill: no example carries a teacher prompt (raise raft.closed_book above "
        "0 for closed-book examples), so none was distilled"
    )


def _run_settings(model_path: str, config: TuneConfig) -> dict[str, object]:
    """The settings a checkpoint's weights depend on; resuming with other values cannot work."""
    local = Path(model_path)
    return {
        "model": str(local.resolve()) if local.exists() else model_path,
        "method": config.method,
        "lora_rank": config.lora_rank,
        "lora_alpha": config.lora_alpha,
        "target_modules": config.target_modules,
        "adapter_layers": config.adapter_layers,
    }


def build_trainer(
    model_path: str,
    examples: list[ChatExample],
    checkpoints_dir: Path,
    config: TuneConfig,
    *,
    callbacks: Sequence[Any] = (),
    quiet: bool = False,
    tokenizer: Any = None,
    teacher_path: str | None = None,
) -> Any:
    """Load the model and tokenizer and set up a trl `SFTTrainer` (nothing trained yet).

    `config.epochs` is used as given (`train` applies `min_steps`). With `config.distill = 'kl'`
    the teacher at `teacher_path` is loaded too, after its tokenizer was compared with the
    student's.

    Raises:
        ChatTemplateError: the tokenizer has no chat template.
        TrainError: a distillation teacher of another vocabulary.
    """
    import torch
    from transformers import AutoTokenizer, PrinterCallback
    from trl import SFTConfig

    from finetune.answer_loss import AnswerLossTrainer

    cuda = torch.cuda.is_available()
    bf16 = native_bf16(cuda)
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        require_chat_template(tokenizer, model_path)
    if config.distill == "kl":
        _require_same_vocabulary(tokenizer, teacher_path)
    args = SFTConfig(
        output_dir=str(checkpoints_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        learning_rate=config.learning_rate,
        seed=config.seed,
        max_length=config.max_seq_tokens,
        packing=config.packing,
        # Prompt/completion rows + completion_only_loss: labels of prompt tokens are -100.
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        save_strategy="steps",
        save_steps=config.save_every_steps,
        save_total_limit=_KEEP_CHECKPOINTS,
        logging_steps=1,
        report_to="none",
        push_to_hub=False,
        disable_tqdm=quiet,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        use_cpu=not cuda,
        bf16=bf16,
        fp16=cuda and not bf16,
        # Trades ~20% speed for activation memory, which only the GPU is short of.
        activation_checkpointing=cuda,
    )
    model = _load_model(model_path, config, bf16_base=bf16 and cuda)
    trainer = AnswerLossTrainer(
        model=model,
        args=args,
        train_dataset=build_dataset(examples, tokenizer, teacher_prompts=config.context_distill),
        processing_class=tokenizer,
        peft_config=_peft_config(config, model),
        callbacks=list(callbacks),
        distiller=_distiller(config, teacher_path, _base_dtype(config, bf16 and cuda)),
    )
    if quiet:  # the caller reports progress; without tqdm the Trainer would print every log
        trainer.remove_callback(PrinterCallback)
    return trainer


def native_bf16(cuda: bool) -> bool:
    """Whether this machine computes bf16 matrix products in hardware: a CUDA GPU that supports
    bf16, or a CPU with AVX512-BF16 or AMX (EPYC since Zen 4, Xeon since Cooper/Sapphire Rapids).

    There, bf16 autocast runs training's matrix products about twice as fast as fp32, and the
    activations kept for the backward pass take half the memory. Elsewhere bf16 is emulated and
    slower than fp32, so training stays in fp32.
    """
    import torch

    if cuda:
        return torch.cuda.is_bf16_supported()
    # Private torch helpers; older torch releases may lack them, and then fp32 is the safe choice.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _require_same_vocabulary(tokenizer: Any, teacher_path: str | None) -> None:
    from transformers import AutoTokenizer

    from finetune.distill import vocabulary_problem

    problem = distill_teacher_problem(teacher_path or "none")
    if problem is None:
        teacher_tokenizer = AutoTokenizer.from_pretrained(teacher_path)
        problem = vocabulary_problem(tokenizer, teacher_tokenizer, str(teacher_path))
    if problem:
        raise TrainError(f"cannot train: {problem}")


def _distiller(config: TuneConfig, teacher_path: str | None, dtype: Any) -> Any:
    """The distillation term `config` asks for, or None (its teacher loaded in `dtype`)."""
    if config.distill == "none" and not config.context_distill:
        return None
    from finetune.distill import Distiller, load_teacher

    # With context_distill alone the teacher is the student with its adapter switched off.
    teacher = load_teacher(str(teacher_path), dtype) if config.distill == "kl" else None
    return Distiller(config.distill_temperature, config.distill_alpha, teacher)


def _base_dtype(config: TuneConfig, bf16_base: bool) -> Any:
    import torch

    # Adapters train in fp32 on a frozen bf16 base; a fully tuned model keeps fp32 master weights.
    # On CPU the base stays fp32 and autocast computes in bf16: as fast here as a bf16 base, and
    # the frozen weights stay exactly the checkpoint's.
    return torch.bfloat16 if bf16_base and config.method != "full" else torch.float32


def _load_model(model_path: str, config: TuneConfig, bf16_base: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": _base_dtype(config, bf16_base)}
    if config.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16_base else torch.float16,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    return AutoModelForCausalLM.from_pretrained(model_path, **kwargs)


def _peft_config(config: TuneConfig, model: Any) -> Any:
    if config.method == "full":
        return None
    from peft import LoraConfig

    targets = config.target_module_list()
    blocks = model.config.num_hidden_layers
    layers = None
    if 0 < config.adapter_layers < blocks:
        layers = list(range(blocks - config.adapter_layers, blocks))
        if isinstance(targets, str):  # peft takes a block range with module names only
            targets = _block_linear_names(model)
    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        layers_to_transform=layers,
        use_dora=config.method == "dora",
        bias="none",
        task_type="CAUSAL_LM",
    )


def _block_linear_names(model: Any) -> list[str]:
    """The names of the linear layers but the output head ('q_proj', 'up_proj'...): what
    'all-linear' adapts, named."""
    import torch

    head = model.get_output_embeddings()
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }
    return sorted(names)


def _save_final(trainer: Any, adapter_dir: Path, world: World) -> Path:
    """Write the adapter (or full model) and tokenizer as safetensors, replacing the folder only
    once the new one is complete; under a launcher the main process writes it, once."""
    from peft import PeftModel

    # Every process takes part: FSDP and ZeRO-3 gather the sharded weights here. Under DDP
    # each holds them whole, and alone the model's own weights are saved as before.
    weights = None
    if world.distributed:
        weights = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not world.is_main:
        wait_for_everyone(world)
        return adapter_dir
    partial = adapter_dir.with_name(f".{adapter_dir.name}-partial")
    old = adapter_dir.with_name(f".{adapter_dir.name}-old")
    for leftover in (partial, old):
        shutil.rmtree(leftover, ignore_errors=True)
    if isinstance(trainer.model, PeftModel):
        trainer.model.save_pretrained(partial, state_dict=weights, safe_serialization=True)
    else:
        # transformers 5 always writes safetensors
        trainer.model.save_pretrained(partial, state_dict=weights)
    trainer.processing_class.save_pretrained(partial)
    if adapter_dir.exists():
        adapter_dir.rename(old)
    partial.rename(adapter_dir)
    shutil.rmtree(old, ignore_errors=True)
    wait_for_everyone(world)  # the others return once the adapter exists
    return adapter_dir

"""An SFTTrainer whose loss runs the LM head over the answer positions alone, on every device.

With answer-only loss, the loss needs next-token log-probabilities only where a label is set: in
RAFT conversations (five retrieved documents, then a one-sentence cited answer) ~7% of the tokens.
trl's fused LM head picks those positions on CUDA and XPU (its Triton path); elsewhere, CPU
included, it projects every position, prompt and padding too, through the vocabulary-wide head
(49k x 576 for SmolLM2). On a 2-core CPU that was ~45% of each training step and, through its
4096 x 32768 fp32 tiles, most of the run's peak memory. Here the model computes the logits of the
answer positions only (`logits_to_keep`), and the loss is the same token-mean cross-entropy.

With a `Distiller` (finetune/distill.py) this path runs on every device, since the distillation
term needs the student's answer logits, which trl's fused head never materializes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from finetune.distill import TEACHER_BATCH, Distiller, TeacherPromptCollator
from finetune.formatting import TEACHER_PROMPT_IDS

_TRITON_DEVICES = ("cuda", "xpu")  # where trl's fused head already scores answer positions only


class AnswerLossTrainer(SFTTrainer):
    """`SFTTrainer` with an answer-positions-only training loss where trl has no compact path,
    and an optional distillation term.

    Args:
        distiller: adds the distillation term to the training loss; None trains on the answers
            alone. The other arguments are `SFTTrainer`'s.
    """

    def __init__(self, *args, distiller: Distiller | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.distiller = distiller
        if TEACHER_PROMPT_IDS in self.train_dataset.column_names:
            pad = self.processing_class.pad_token_id
            self.data_collator = TeacherPromptCollator(self.data_collator, pad)
        if distiller is not None and distiller.teacher is not None:
            distiller.teacher.to(self.args.device)

    def _set_signature_columns_if_needed(self):
        # The Trainer drops the dataset columns the model does not take; keep the teacher's.
        super()._set_signature_columns_if_needed()
        if TEACHER_PROMPT_IDS not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, TEACHER_PROMPT_IDS]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher_batch = {key: inputs[key] for key in TEACHER_BATCH if key in inputs}
        inputs = {key: value for key, value in inputs.items() if key not in TEACHER_BATCH}
        labels = inputs.get("labels")
        if (
            return_outputs
            or not model.training
            or labels is None
            or (self.distiller is None and labels.device.type in _TRITON_DEVICES)
            or "shift_labels" in inputs  # context/sequence parallel: labels already shifted
        ):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        targets = labels[:, 1:]  # (batch, seq - 1): the token each position predicts
        # Positions that predict an answer token in at least one row of the batch.
        keep = (targets != -100).any(dim=0).nonzero().squeeze(1)
        model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
        logits = model(**model_inputs, use_cache=False, logits_to_keep=keep).logits
        picked = targets[:, keep]  # (batch, kept); -100 where a row has no answer token there
        if self.distiller is None:
            loss = F.cross_entropy(
                logits.float().flatten(0, 1), picked.flatten(), ignore_index=-100, reduction="sum"
            )
        else:
            loss, kl = self.distiller.loss_sum(
                model,
                self.accelerator.unwrap_model(model),
                inputs,
                teacher_batch,
                logits,
                picked,
                self.accelerator.autocast,
            )
            if kl is not None:  # logged beside the loss as the mean KL per distilled token
                self._metrics["train"]["distill_kl"].append(kl.item())
        count = (picked != -100).sum() if num_items_in_batch is None else num_items_in_batch
        loss = loss / torch.as_tensor(count, device=loss.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as trl: DDP averages the gradients
        self._count_tokens(inputs)
        return loss

    def _count_tokens(self, inputs) -> None:
        # trl's `num_tokens` log (prompt and answer tokens, no padding), which the progress
        # reports and `TrainResult.tokens_per_second` read.
        if "attention_mask" in inputs:
            tokens = inputs["attention_mask"].sum()
        else:  # padding-free batches hold every token in one row
            tokens = torch.tensor(inputs["position_ids"].size(1), device=inputs["input_ids"].device)
        self._total_train_tokens += self.accelerator.gather_for_metrics(tokens).sum().item()
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]

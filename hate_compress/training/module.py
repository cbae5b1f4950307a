"""One LightningModule for every training stage: teacher fine-tuning, KD, and compression fine-tunes.

Teacher training is just distillation with no teacher and a loss of only `ce`, so a single module
covers both; what differs is the `CompositeLoss` (built from the `kd` config group) and whether a
frozen teacher is attached. The teacher is deliberately *not* a registered submodule: it never
reaches the optimizer, never appears in `state_dict()` and so is never saved inside the student's
checkpoint. Its outputs come from a `TeacherSource` — live forward passes, or a disk cache of
logits when no token-level term needs the live model.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import lightning.pytorch as pl
import torch
from torch import Tensor
from transformers import get_linear_schedule_with_warmup

from hate_compress.errors import ConfigError, TrainingDiverged
from hate_compress.kd.context import LossContext
from hate_compress.kd.terms import HIDDEN_NEEDS
from hate_compress.measure.quality import classification_metrics
from hate_compress.models.classifier import HateClassifier
from hate_compress.models.outputs import ModelOutputs

log = logging.getLogger(__name__)


def build_optimizer(train_cfg, lr: float | None = None, *, key: str = "train.optimizer"):
    """`train_cfg.optimizer` instantiated as a partial (`_partial_: true`), `lr` overriding its
    learning rate (the prune stage's `prune.lr`).

    Tried once on a dummy parameter, so an unknown class, a misspelt argument or a negative lr
    is one `key: ...` line before any training rather than a traceback after the teacher."""
    from hydra.utils import instantiate

    node = train_cfg.get("optimizer")
    if node is None:  # a hand-written config without the group default
        return functools.partial(torch.optim.AdamW, lr=float(lr if lr is not None else train_cfg.lr),
                                 weight_decay=float(train_cfg.weight_decay))
    try:
        factory = instantiate(node)
        if lr is not None:
            factory = functools.partial(factory, lr=float(lr))
        factory([torch.nn.Parameter(torch.zeros(1))])
    except Exception as exc:  # Hydra wraps import/argument errors; torch raises ValueError
        cause = exc.__cause__ or exc
        raise ConfigError(f"{key}: {str(cause).splitlines()[0]}") from None
    return factory


class ClassifierModule(pl.LightningModule):
    def __init__(
        self,
        model: HateClassifier,
        loss: torch.nn.Module,
        *,
        task: str,
        label_names: list[str],
        positive_index: int | None = None,
        input_key: str = "student",
        teacher_source=None,
        shared_tokenizer: bool = True,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        stage: str = "train",
    ):
        super().__init__()
        self.model = model
        self.loss = loss
        self.task = task
        self.label_names = list(label_names)
        self.positive_index = positive_index
        self.input_key = input_key
        object.__setattr__(self, "teacher_source", teacher_source)  # not a submodule on purpose
        self.shared_tokenizer = shared_tokenizer
        # `optimizer`: the role's `train.optimizer` config instantiated as a partial (lr and
        # weight decay bound); `lr`/`weight_decay` only build the default AdamW one
        self.optimizer_factory = optimizer or functools.partial(
            torch.optim.AdamW, lr=lr, weight_decay=weight_decay)
        self.lr = self.optimizer_factory.keywords.get("lr", lr) if isinstance(
            self.optimizer_factory, functools.partial) else lr
        self.warmup_ratio = warmup_ratio
        self.stage = stage
        needs = getattr(loss, "needs", frozenset())
        self.need_hidden = bool(needs & HIDDEN_NEEDS)
        self.need_attentions = "attentions" in needs
        self._val_logits: list[Tensor] = []
        self._val_labels: list[Tensor] = []
        self._val_teacher: list[Tensor] = []
        self.last_val_metrics: dict[str, float] = {}

    # -- forward -------------------------------------------------------------------------------
    def student_outputs(self, batch) -> ModelOutputs:
        inputs = batch["inputs"][self.input_key]
        return self.model(
            inputs["input_ids"], inputs["attention_mask"],
            output_hidden_states=self.need_hidden, output_attentions=self.need_attentions,
        )

    def _loss(self, batch, split: str) -> tuple[Tensor, ModelOutputs, ModelOutputs | None, dict]:
        # teacher first: measured ~7% faster per KD step than after the student's forward
        # (bench/README.md); the teacher is eval-mode and draws no random numbers, so the
        # student's dropout masks are unchanged
        teacher = self.teacher_source.outputs(batch, split) if self.teacher_source else None
        student = self.student_outputs(batch)
        ctx = LossContext(student=student, teacher=teacher, labels=batch["labels"],
                          task=self.task, shared_tokenizer=self.shared_tokenizer)
        total, parts = self.loss(ctx)
        return total, student, teacher, parts

    # -- steps ---------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        total, _, _, parts = self._loss(batch, "train")
        if not torch.isfinite(total):
            raise TrainingDiverged(
                f"{self.stage}: loss became {total.item()} at step {self.global_step} "
                f"(epoch {self.current_epoch}); stopped, the last good checkpoint is kept — "
                f"lower the learning rate (now {self.lr}) or the temperature"
            )
        bs = batch["labels"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bs)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=bs)
        return total

    def on_validation_epoch_start(self) -> None:
        self._val_logits.clear()
        self._val_labels.clear()
        self._val_teacher.clear()

    def validation_step(self, batch, batch_idx):
        total, student, teacher, _ = self._loss(batch, "dev")
        self.log("val/loss", total, prog_bar=True, batch_size=batch["labels"].shape[0])
        self._val_logits.append(student.logits.detach().float().cpu())
        self._val_labels.append(batch["labels"].cpu())
        if teacher is not None:
            self._val_teacher.append(teacher.logits.detach().float().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits = torch.cat(self._val_logits)
        labels = torch.cat(self._val_labels)
        if self.trainer.world_size > 1:  # each rank saw a shard of dev
            logits = self.all_gather(logits).flatten(0, 1)
            labels = self.all_gather(labels).flatten(0, 1)
        teacher = torch.cat(self._val_teacher) if self._val_teacher else None
        if teacher is not None and self.trainer.world_size > 1:
            teacher = self.all_gather(teacher).flatten(0, 1)
        metrics = classification_metrics(
            logits, labels, task=self.task, label_names=self.label_names,
            positive_index=self.positive_index, teacher_logits=teacher,
        )
        self.last_val_metrics = metrics
        self.log("val/macro_f1", metrics["macro_f1"], prog_bar=True, sync_dist=False)
        self.log("val/accuracy", metrics["accuracy"], sync_dist=False)
        if "agreement" in metrics:
            self.log("val/agreement", metrics["agreement"], sync_dist=False)

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self):
        """The configured optimizer (AdamW by default) without decay on biases/LayerNorm, linear
        warm-up then linear decay.

        Warm-up matters here: tiny encoders trained from scratch collapse to the majority class
        at a modest LR without it."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
        # the decay group takes the optimizer's own weight_decay; the other overrides it
        optimizer = self.optimizer_factory(
            [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if not math.isfinite(total):
            total = 1000
        warmup = int(self.warmup_ratio * total)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

"""Deep Mutual Learning (Zhang et al., 2018): N peers trained together from scratch, each one
learning from the labels and from the other peers' soft predictions.

For peer i, with the `kd` group's composite loss `L(student, teacher)` (= (1 - alpha) * CE +
alpha * T^2 * KL(teacher_T || student_T) with `kd.terms={logit: {}}`)::

    L_i = mean_{j != i} L(student = peer i, teacher = peer j, detached)
        = (1 - alpha) * CE_i + alpha * T^2 * mean_{j != i} KL(p_j^T || p_i^T)

and the step minimises sum_i L_i. Detaching the peers' predictions makes each L_i move only
peer i, so one optimizer over all peers equals the paper's per-peer updates on the same batch
(simultaneous rather than alternating). The same loss terms serve as in teacher KD: a peer
simply takes the teacher's place in the `LossContext`.

The dev-best checkpoint is the epoch where the *best* peer peaks (`val/macro_f1` is the max
over peers; each peer's own F1 is logged as `val/peer<i>_macro_f1`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hate_compress.kd.context import LossContext
from hate_compress.measure.quality import classification_metrics
from hate_compress.models.classifier import HateClassifier
from hate_compress.models.outputs import ModelOutputs
from hate_compress.training.module import ClassifierModule


class Peers(nn.Module):
    """The N peer classifiers as one module: one state dict, one checkpoint, one optimizer."""

    def __init__(self, models: list[HateClassifier]):
        super().__init__()
        self.peers = nn.ModuleList(models)

    def freeze_encoder(self) -> None:
        for model in self.peers:
            model.freeze_encoder()

    def forward(self, input_ids: Tensor, attention_mask: Tensor, **kwargs) -> list[ModelOutputs]:
        return [model(input_ids, attention_mask, **kwargs) for model in self.peers]


def peer_loss(loss: nn.Module, outputs: list[ModelOutputs], i: int, labels: Tensor,
              task: str) -> tuple[Tensor, dict[str, Tensor]]:
    """L_i (module docstring) and its parts averaged over the other peers."""
    totals, parts = [], {}
    others = [j for j in range(len(outputs)) if j != i]
    for j in others:
        teacher = ModelOutputs(logits=outputs[j].logits.detach(),
                               attention_mask=outputs[j].attention_mask)
        ctx = LossContext(student=outputs[i], teacher=teacher, labels=labels, task=task,
                          shared_tokenizer=True)
        total, values = loss(ctx)
        totals.append(total)
        for name, value in values.items():
            parts[name] = parts.get(name, 0.0) + value / len(others)
    return torch.stack(totals).mean(), parts


class MutualModule(ClassifierModule):
    """`ClassifierModule` whose model is `Peers`: the steps train and validate every peer."""

    def _loss(self, batch, split: str):
        inputs = batch["inputs"][self.input_key]
        outputs = self.model(inputs["input_ids"], inputs["attention_mask"])
        totals, parts = [], {}
        for i in range(len(outputs)):
            total, values = peer_loss(self.loss, outputs, i, batch["labels"], self.task)
            totals.append(total)
            parts[f"peer{i}"] = total.detach()
            parts.update({f"peer{i}_{name}": value for name, value in values.items()})
        return torch.stack(totals).sum(), outputs, None, parts

    def on_validation_epoch_start(self) -> None:
        self._val_labels.clear()
        self._peer_logits: list[list[Tensor]] = [[] for _ in self.model.peers]

    def validation_step(self, batch, batch_idx):
        total, outputs, _, _ = self._loss(batch, "dev")
        self.log("val/loss", total, prog_bar=True, batch_size=batch["labels"].shape[0])
        for store, out in zip(self._peer_logits, outputs, strict=True):
            store.append(out.logits.detach().float().cpu())
        self._val_labels.append(batch["labels"].cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_labels:
            return
        labels = torch.cat(self._val_labels)
        if self.trainer.world_size > 1:
            labels = self.all_gather(labels).flatten(0, 1)
        best = None
        for i, store in enumerate(self._peer_logits):
            logits = torch.cat(store)
            if self.trainer.world_size > 1:
                logits = self.all_gather(logits).flatten(0, 1)
            metrics = classification_metrics(logits, labels, task=self.task,
                                             label_names=self.label_names,
                                             positive_index=self.positive_index)
            self.log(f"val/peer{i}_macro_f1", metrics["macro_f1"], sync_dist=False)
            if best is None or metrics["macro_f1"] > best["macro_f1"]:
                best = metrics
        self.last_val_metrics = best
        self.log("val/macro_f1", best["macro_f1"], prog_bar=True, sync_dist=False)
        self.log("val/accuracy", best["accuracy"], sync_dist=False)

"""Classification metrics shared by every stage, the report and prediction.

One function turns logits into the numbers users decide with (macro F1, per-class F1, the F1 of
the hate class, accuracy, and agreement with the teacher), so a teacher, a distilled student and
a quantized model are always scored the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multilabel_accuracy,
    multilabel_f1_score,
)


def predictions(logits: Tensor, task: str, threshold: float = 0.5) -> Tensor:
    """Class ids (single-label) or 0/1 matrix (multilabel)."""
    if task == "multilabel":
        return (torch.sigmoid(logits.float()) > threshold).long()
    return logits.argmax(-1)


def probabilities(logits: Tensor, task: str) -> Tensor:
    logits = logits.float()
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, -1)


def classification_metrics(
    logits: Tensor,
    labels: Tensor,
    *,
    task: str,
    label_names: list[str],
    positive_index: int | None = None,
    teacher_logits: Tensor | None = None,
) -> dict[str, float | bool]:
    """macro_f1, accuracy, f1_<label> for every label, hate_f1 (binary), agreement (with teacher),
    top_prediction_share and degenerate (see `collapse`)."""
    num = len(label_names)
    preds = predictions(logits, task)
    if task == "multilabel":
        target = labels.long()
        per_class = multilabel_f1_score(preds, target, num_labels=num, average="none")
        macro = multilabel_f1_score(preds, target, num_labels=num, average="macro")
        acc = multilabel_accuracy(preds, target, num_labels=num, average="micro")
    else:
        target = labels.long()
        per_class = multiclass_f1_score(preds, target, num_classes=num, average="none")
        macro = multiclass_f1_score(preds, target, num_classes=num, average="macro")
        acc = multiclass_accuracy(preds, target, num_classes=num, average="micro")
    out = {"macro_f1": float(macro), "accuracy": float(acc), "n": int(labels.shape[0])}
    for name, value in zip(label_names, per_class.tolist()):
        out[f"f1_{name}"] = float(value)
    if task == "binary" and positive_index is not None:
        out["hate_f1"] = float(per_class[positive_index])
    if teacher_logits is not None:
        out["agreement"] = agreement(preds, predictions(teacher_logits, task))
    out.update(collapse(preds, labels))
    return out


# A model is *degenerate* when at least this share of its predictions is one and the same
# output (one class; for multilabel, one label set) while less than this share of the gold
# labels is that output. Such a model has learnt the label prior, not the task: its macro F1
# can still look respectable on skewed data (and its agreement with an equally collapsed
# teacher is 1.0), so it is flagged and never recommended. 0.95 leaves room for a sound model
# on a dev set whose rarest class is a few percent, and catches "hate F1 0" collapses.
DEGENERATE_SHARE = 0.95


def collapse(preds: Tensor, labels: Tensor) -> dict[str, float | bool]:
    """`top_prediction_share` (share of the most frequent predicted output) and `degenerate`
    (see `DEGENERATE_SHARE`). Works on class ids and on multilabel 0/1 rows alike."""
    if preds.shape[0] == 0:
        return {"top_prediction_share": 0.0, "degenerate": False}
    values, counts = torch.unique(preds, dim=0, return_counts=True)
    top = int(counts.argmax())
    share = float(counts[top]) / preds.shape[0]
    same = labels.long() == values[top]
    gold_share = float((same.all(-1) if same.dim() > 1 else same).float().mean())
    return {"top_prediction_share": share,
            "degenerate": share >= DEGENERATE_SHARE and gold_share < DEGENERATE_SHARE}


def agreement(student_preds: Tensor, teacher_preds: Tensor) -> float:
    """Share of examples where student and teacher predict exactly the same label(s)."""
    same = student_preds == teacher_preds
    if same.dim() > 1:
        same = same.all(-1)
    return float(same.float().mean())

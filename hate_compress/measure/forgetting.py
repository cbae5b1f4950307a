"""What a compressed model forgets compared with its teacher.

Compression hurts rare classes and hard examples first (Hooker et al., "What do compressed deep
neural networks forget?"), so an unchanged macro F1 can hide a class, a kind of post or a group
of targeted people that the small model stopped catching. Per stage, against the teacher on
the same split:

* per-class F1 change (model minus teacher);
* flip rates: of the examples the teacher got right, the share this model gets wrong
  (`flip_rate_lost`), and of those the teacher got wrong, the share it gets right
  (`flip_rate_gained`) — "right" is an exact match of the label set for multilabel;
* `disagreements.csv`: every example where the two predict differently, most confident teacher
  decisions first (the ones a moderator would least expect to change);
* per-group F1 retention for each `data.meta_columns` column (BanglaMultiHate's `to_whom`):
  which targets lose protection.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from hate_compress.measure.quality import predictions, probabilities

DISAGREEMENT_COLUMNS = ("row", "text", "gold", "teacher_pred", "teacher_prob", "model_pred",
                        "model_prob", "teacher_correct", "model_correct", "teacher_probs",
                        "model_probs")
NO_LABEL = "(none)"


def per_class_f1_change(model: Mapping, teacher: Mapping, label_names: Sequence[str]) -> dict:
    """f1_<label> of the model minus the teacher's, per label (both on the same split)."""
    return {name: float(model[f"f1_{name}"]) - float(teacher[f"f1_{name}"])
            for name in label_names if f"f1_{name}" in model and f"f1_{name}" in teacher}


def correct(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per example: prediction equals the gold label (multilabel: the whole label set)."""
    same = preds == labels
    return same.all(-1) if same.ndim > 1 else same


def flip_rates(teacher_preds: np.ndarray, model_preds: np.ndarray, labels: np.ndarray) -> dict:
    t_right, m_right = correct(teacher_preds, labels), correct(model_preds, labels)
    n_right, n_wrong = int(t_right.sum()), int((~t_right).sum())
    lost = int((t_right & ~m_right).sum())
    gained = int((~t_right & m_right).sum())
    return {"flip_rate_lost": lost / n_right if n_right else None,
            "flip_rate_gained": gained / n_wrong if n_wrong else None,
            "n_lost": lost, "n_gained": gained, "n_teacher_right": n_right,
            "n_teacher_wrong": n_wrong}


def _label_text(pred: np.ndarray | int, names: Sequence[str]) -> str:
    if np.ndim(pred) == 0:
        return names[int(pred)]
    active = [names[j] for j, on in enumerate(pred) if on]
    return "|".join(active) if active else NO_LABEL


def confidence(probs: np.ndarray, task: str) -> np.ndarray:
    """How sure a model is of its decision: probability of the predicted class, or for
    multilabel that of its least certain yes/no decision (min over labels of max(p, 1 - p))."""
    if task == "multilabel":
        return np.maximum(probs, 1.0 - probs).min(-1)
    return probs.max(-1)


def _probs_text(probs: np.ndarray, names: Sequence[str]) -> str:
    return " ".join(f"{n}={p:.4f}" for n, p in zip(names, probs))


def disagreement_rows(texts: Sequence[str], rows: Sequence[int], labels: np.ndarray,
                      teacher_logits: torch.Tensor, model_logits: torch.Tensor, *, task: str,
                      label_names: Sequence[str]) -> list[dict]:
    """One dict per example the two models predict differently, most confident teacher first."""
    t_pred = predictions(teacher_logits, task).numpy()
    m_pred = predictions(model_logits, task).numpy()
    t_prob = probabilities(teacher_logits, task).numpy()
    m_prob = probabilities(model_logits, task).numpy()
    differ = ~correct(t_pred, m_pred)
    t_conf, m_conf = confidence(t_prob, task), confidence(m_prob, task)
    gold = labels.astype(np.int64)
    out = []
    for i in np.flatnonzero(differ):
        out.append({
            "row": rows[i], "text": texts[i], "gold": _label_text(gold[i], label_names),
            "teacher_pred": _label_text(t_pred[i], label_names),
            "teacher_prob": round(float(t_conf[i]), 6),
            "model_pred": _label_text(m_pred[i], label_names),
            "model_prob": round(float(m_conf[i]), 6),
            "teacher_correct": bool(correct(t_pred[i], gold[i])),
            "model_correct": bool(correct(m_pred[i], gold[i])),
            "teacher_probs": _probs_text(t_prob[i], label_names),
            "model_probs": _probs_text(m_prob[i], label_names),
        })
    out.sort(key=lambda r: -r["teacher_prob"])  # stable: ties keep file order
    return out


def write_disagreements(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=DISAGREEMENT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def macro_f1_present(preds: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """Macro F1 over the classes present in `labels` (a small group rarely holds every class;
    absent classes would add meaningless zeros)."""
    if labels.ndim > 1:
        present = [j for j in range(num_labels) if labels[:, j].any()]
        if not present:
            return float("nan")
        return float(f1_score(labels[:, present], preds[:, present], average="macro",
                              zero_division=0))
    present = sorted(set(labels.tolist()))
    return float(f1_score(labels, preds, labels=present, average="macro", zero_division=0))


def group_retention(groups: Sequence[str], labels: np.ndarray, teacher_preds: np.ndarray,
                    model_preds: np.ndarray, num_labels: int) -> dict:
    """Per group value (largest group first): n, teacher and model macro F1, retention."""
    values = np.asarray(groups)
    out = {}
    for group, n in sorted(Counter(groups).items(), key=lambda kv: (-kv[1], kv[0])):
        idx = values == group
        t = macro_f1_present(teacher_preds[idx], labels[idx], num_labels)
        m = macro_f1_present(model_preds[idx], labels[idx], num_labels)
        out[group] = {"n": int(n), "teacher_macro_f1": t, "model_macro_f1": m,
                      "retention": m / t if t > 0 else None}
    return out


def forgetting(*, split: str, model_metrics: Mapping, teacher_metrics: Mapping,
               model_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: np.ndarray,
               texts: Sequence[str], rows: Sequence[int], task: str,
               label_names: Sequence[str], meta: Mapping[str, Sequence[str]],
               out_dir: Path) -> dict:
    """Everything above for one stage; writes `out_dir/disagreements.csv`."""
    t_pred = predictions(teacher_logits, task).numpy()
    m_pred = predictions(model_logits, task).numpy()
    gold = np.asarray(labels).astype(np.int64)
    rows_out = disagreement_rows(texts, rows, gold, teacher_logits, model_logits, task=task,
                                 label_names=label_names)
    path = Path(out_dir) / "disagreements.csv"
    write_disagreements(path, rows_out)
    result = {"split": split,
              "f1_change": per_class_f1_change(model_metrics, teacher_metrics, label_names),
              **flip_rates(t_pred, m_pred, gold), "n_disagreements": len(rows_out),
              "disagreements_csv": str(path)}
    if meta:
        result["groups"] = {col: group_retention(values, gold, t_pred, m_pred, len(label_names))
                            for col, values in meta.items()}
    return result

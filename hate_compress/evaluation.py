"""The measurements taken after every stage: quality, size on disk, parameters and CPU latency.

Quality is scored on dev and test with the same metric function; size is the real file size of
the saved artifact; latency is measured on real texts with a fixed thread count, so the numbers
of the teacher, the student, the pruned and the quantized model are comparable row by row.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from hate_compress.analysis.per_stage import analyse_stage
from hate_compress.compress.measure import artifact_size_mb, count_parameters, measure_latency
from hate_compress.metrics import classification_metrics
from hate_compress.models.artifact import update_card
from hate_compress.models.classifier import predict_logits
from hate_compress.run import Run, Trained

log = logging.getLogger(__name__)


def eval_splits(run: Run) -> list[str]:
    return ["dev", "test"] if run.data.has_test else ["dev"]


def split_logits(run: Run, trained: Trained, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return predict_logits(trained.model, run.data.dataloader(split), trained.key)


def score(run: Run, trained: Trained, teacher_logits: dict[str, torch.Tensor] | None = None):
    """Metrics per split; also returns the logits so later stages can measure agreement."""
    out, logits_by_split = {}, {}
    for split in eval_splits(run):
        logits, labels = split_logits(run, trained, split)
        logits_by_split[split] = logits
        out[split] = classification_metrics(
            logits, labels, task=run.data.task, label_names=run.data.label_names,
            positive_index=run.data.positive_index,
            teacher_logits=None if teacher_logits is None else teacher_logits[split],
        )
    return out, logits_by_split


def example_batch(run: Run, trained: Trained, size: int = 32) -> dict[str, torch.Tensor]:
    """Real texts from dev, padded as the model would see them in production."""
    texts = run.data.texts("dev")[:size]
    while len(texts) < size:
        texts = texts + texts[: size - len(texts)]
    enc = trained.tokenizer(texts, truncation=True, max_length=run.data.max_length,
                            padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def footprint(run: Run, trained: Trained) -> dict[str, Any]:
    """Parameters, size of the saved artifact and CPU latency."""
    m = run.cfg.measure
    values: dict[str, Any] = dict(count_parameters(trained.model))
    if trained.path is not None:
        values["size_mb"] = artifact_size_mb(trained.path)
    if m.latency:
        values.update(measure_latency(
            trained.model, example_batch(run, trained, max(m.batch_sizes)),
            batch_sizes=tuple(m.batch_sizes), runs=m.runs, warmup=m.warmup, threads=m.threads,
        ))
    return values


def relative_to_teacher(run: Run, values: dict[str, Any]) -> dict[str, Any]:
    """Speedup, size reduction and F1 retention vs the teacher row."""
    teacher = run.metrics.get("teacher")
    if not teacher or teacher is values:
        return {}
    rel: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith("latency_ms_b") and teacher.get(key) and value:
            rel["speedup_b" + key.rsplit("_b", 1)[1]] = teacher[key] / value
    if teacher.get("size_mb") and values.get("size_mb"):
        rel["size_reduction"] = teacher["size_mb"] / values["size_mb"]
    split = eval_splits(run)[-1]
    t_f1 = teacher.get(split, {}).get("macro_f1")
    s_f1 = values.get(split, {}).get("macro_f1")
    if t_f1 and s_f1 is not None:
        rel["f1_retention"] = s_f1 / t_f1
    return rel


def measure_stage(run: Run, stage: str, trained: Trained, extra: dict | None = None) -> dict:
    """Score and measure `trained`, store it under `stage` in metrics.json, return the values."""
    values, logits = score(run, trained, None if stage == "teacher" else run.teacher_logits)
    if stage == "teacher":
        run.teacher_logits = logits
    values.update(footprint(run, trained))
    values.update(relative_to_teacher(run, values))
    values.update(analyse_stage(run, stage, trained, values, logits, eval_splits(run)[-1]))
    values.update(extra or {})
    values["artifact"] = str(trained.path) if trained.path else None
    run.record(stage, values)
    if trained.path is not None:
        update_card(trained.path, {k: v for k, v in values.items() if k != "artifact"})
    split = eval_splits(run)[-1]
    log.info("%s: %s macro F1 %.4f", stage, split, values[split]["macro_f1"])
    return values

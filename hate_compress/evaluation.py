"""The measurements taken after every stage: quality, size on disk, parameters and CPU latency.

Quality is scored on dev and test with the same metric function; size is the real file size of
the saved artifact; latency is measured on real texts with a fixed thread count, so the numbers
of the teacher, the student, the pruned and the quantized model are comparable row by row.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import ListConfig

from hate_compress import distributed
from hate_compress.analysis.per_stage import analyse_stage
from hate_compress.artifacts import update_card
from hate_compress.compress.measure import (
    artifact_size_mb,
    count_parameters,
    measure_latency_threads,
    text_latency_threads,
)
from hate_compress.kd.text_teacher import is_text_level
from hate_compress.metrics import classification_metrics
from hate_compress.models.classifier import home_device, predict_logits
from hate_compress.run import Run, Trained
from hate_compress.storage import READ_ONLY_ERRNOS, writing

log = logging.getLogger(__name__)


def eval_splits(run: Run) -> list[str]:
    return ["dev", "test"] if run.data.has_test else ["dev"]


def scoring_device(run: Run, trained: Trained) -> torch.device | None:
    """Where a stage's model is scored: the training device (its GPU, when training ran on one),
    except quantized models, which are CPU deployment artifacts (int8 kernels are CPU ones);
    None = where the model is (the CPU)."""
    if trained.name == "quantized" or getattr(trained.model, "runtime", "torch") != "torch":
        return None
    device = distributed.training_device(run.cfg.trainer)
    return None if device.type == "cpu" else device


def split_logits(run: Run, trained: Trained, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if is_text_level(trained.model):  # char_ngram / ensemble teachers read the raw texts
        return (trained.model.predict_texts(run.data.texts(split)),
                torch.as_tensor(run.data.labels(split)))
    return predict_logits(trained.model, run.data.dataloader(split), trained.key,
                          device=scoring_device(run, trained))


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


def dev_texts(run: Run, size: int) -> list[str]:
    """`size` real dev texts (repeated when dev is smaller)."""
    texts = run.data.texts("dev")[:size]
    while len(texts) < size:
        texts = texts + texts[: size - len(texts)]
    return texts


def example_batch(run: Run, trained: Trained, size: int = 32) -> dict[str, torch.Tensor]:
    """Real texts from dev, padded as the model would see them in production."""
    texts = dev_texts(run, size)
    enc = trained.tokenizer(texts, truncation=True, max_length=run.data.max_length,
                            padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def footprint(run: Run, trained: Trained) -> dict[str, Any]:
    """Parameters, size of the saved artifact and CPU latency (in the runtime the model ships
    in: an ONNX artifact is timed through its ONNX Runtime session)."""
    values: dict[str, Any] = dict(getattr(trained.model, "parameter_counts", None)
                                  or count_parameters(trained.model))
    if trained.path is not None:
        values["size_mb"] = artifact_size_mb(trained.path)
    values.update(latencies(run, trained))
    return values


def latencies(run: Run, trained: Trained) -> dict[str, float | str]:
    """CPU latency, whatever device training used: CPU is the deployment target these
    numbers compare on (`latency_device` says so in metrics.json)."""
    m = run.cfg.measure
    if not m.latency:
        return {}
    threads = list(m.threads) if isinstance(m.threads, (list, ListConfig)) else int(m.threads)
    if is_text_level(trained.model):
        return {**text_latency_threads(trained.model, dev_texts(run, max(m.batch_sizes)), threads,
                                       batch_sizes=tuple(m.batch_sizes), runs=m.runs,
                                       warmup=m.warmup), "latency_device": "cpu"}
    if home_device(trained.model).type != "cpu":
        trained.model.cpu()
    return {**measure_latency_threads(
        trained.model, example_batch(run, trained, max(m.batch_sizes)), threads,
        batch_sizes=tuple(m.batch_sizes), runs=m.runs, warmup=m.warmup,
    ), "latency_device": "cpu"}


def speedups(reference: dict[str, Any], values: dict[str, Any], name: str = "speedup") -> dict:
    """`<name>_b1` (and `_b1_t2` ...) = reference latency / this latency, per measured key."""
    return {f"{name}_b{key.split('_b', 1)[1]}": reference[key] / value
            for key, value in values.items()
            if key.startswith("latency_ms_b") and reference.get(key) and value}


def relative_to_teacher(run: Run, values: dict[str, Any]) -> dict[str, Any]:
    """Speedup, size reduction and F1 retention vs the teacher row."""
    teacher = run.metrics.get("teacher")
    if not teacher or teacher is values:
        return {}
    rel: dict[str, Any] = speedups(teacher, values)
    if teacher.get("size_mb") and values.get("size_mb"):
        rel["size_reduction"] = teacher["size_mb"] / values["size_mb"]
    split = eval_splits(run)[-1]
    t_f1 = teacher.get(split, {}).get("macro_f1")
    s_f1 = values.get(split, {}).get("macro_f1")
    if t_f1 and s_f1 is not None:
        rel["f1_retention"] = s_f1 / t_f1
    return rel


def complete_card(directory: Path, metrics: dict) -> None:
    """Add the measured metrics to the artifact's card. A read-only artifact (a teacher reused
    from a read-only store, or a given `teacher.checkpoint`) keeps its card: the metrics are in
    metrics.json anyway, and a run must not fail for not annotating someone else's model."""
    try:
        update_card(directory, metrics)
    except OSError as exc:
        if exc.errno in READ_ONLY_ERRNOS:
            log.warning("%s: model card not updated (%s)", directory, exc.strerror)
            return
        with writing(directory):  # a full disk: one line naming the artifact
            raise


def measure_stage(run: Run, stage: str, trained: Trained, extra: dict | None = None,
                  teacher_ort: dict | None = None) -> dict:
    """Score and measure `trained`, store it under `stage` in metrics.json, return the values.

    `teacher_ort` (latencies of the teacher exported to ONNX Runtime fp32) adds
    `speedup_vs_teacher_ort_b*`: how much of the speedup is compression, not the runtime.
    In a distributed run rank 0 measures and the other ranks receive its values."""
    return distributed.on_rank_zero(lambda: _measure_stage(run, stage, trained, extra, teacher_ort))


def _measure_stage(run: Run, stage: str, trained: Trained, extra: dict | None,
                   teacher_ort: dict | None) -> dict:
    values, logits = score(run, trained, None if stage == "teacher" else run.teacher_logits)
    if stage == "teacher":
        run.teacher_logits = logits
    values["runtime"] = getattr(trained.model, "runtime", "torch")
    # judged on dev, the split models are selected on (test is only reported)
    values["degenerate"] = bool(values["dev"]["degenerate"])
    if values["degenerate"]:
        log.warning("%s: degenerate model: %.1f%% of dev predictions are one class (see "
                    "metrics.DEGENERATE_SHARE); it will not be recommended", stage,
                    100 * values["dev"]["top_prediction_share"])
    values.update(footprint(run, trained))
    values.update(relative_to_teacher(run, values))
    if teacher_ort:
        values["teacher_ort"] = teacher_ort
        values.update(speedups(teacher_ort, values, "speedup_vs_teacher_ort"))
    values.update(analyse_stage(run, stage, trained, values, logits, eval_splits(run)[-1]))
    values.update(extra or {})
    values["artifact"] = str(trained.path) if trained.path else None
    run.record(stage, values)
    if trained.path is not None:
        complete_card(Path(trained.path), {k: v for k, v in values.items() if k != "artifact"})
    split = eval_splits(run)[-1]
    log.info("%s: %s macro F1 %.4f", stage, split, values[split]["macro_f1"])
    return values

"""The measurements taken after every stage: quality, size on disk, parameters and CPU latency.

Quality is scored on dev and test with the same metric function; size is the real file size of
the saved artifact; latency is measured on real texts with a fixed thread count, so the numbers
of the teacher, the student, the pruned and the quantized model are comparable row by row.

`run` and `trained` are the pipeline's `Run` and `Trained` (`hate_compress.stages.state`), read
through their attributes only: measuring sits below the stages that hand them around.
`hate_compress.stages.measure.measure_stage` puts these numbers together for one stage and
records them.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import ListConfig

from hate_compress import distributed
from hate_compress.measure.footprint import (
    artifact_size_mb,
    count_parameters,
    measure_latency_threads,
    text_latency_threads,
)
from hate_compress.measure.quality import classification_metrics
from hate_compress.models.classifier import home_device, is_text_level, predict_logits


def eval_splits(run) -> list[str]:
    return ["dev", "test"] if run.data.has_test else ["dev"]


def scoring_device(run, trained) -> torch.device | None:
    """Where a stage's model is scored: the training device (its GPU, when training ran on one),
    except quantized models, which are CPU deployment artifacts (int8 kernels are CPU ones);
    None = where the model is (the CPU)."""
    if trained.name == "quantized" or getattr(trained.model, "runtime", "torch") != "torch":
        return None
    device = distributed.training_device(run.cfg.trainer)
    return None if device.type == "cpu" else device


def split_logits(run, trained, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if is_text_level(trained.model):  # char_ngram / ensemble teachers read the raw texts
        return (trained.model.predict_texts(run.data.texts(split)),
                torch.as_tensor(run.data.labels(split)))
    return predict_logits(trained.model, run.data.dataloader(split), trained.key,
                          device=scoring_device(run, trained))


def score(run, trained, teacher_logits: dict[str, torch.Tensor] | None = None):
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


def dev_texts(run, size: int) -> list[str]:
    """`size` real dev texts (repeated when dev is smaller)."""
    texts = run.data.texts("dev")[:size]
    while len(texts) < size:
        texts = texts + texts[: size - len(texts)]
    return texts


def example_batch(run, trained, size: int = 32) -> dict[str, torch.Tensor]:
    """Real texts from dev, padded as the model would see them in production."""
    texts = dev_texts(run, size)
    enc = trained.tokenizer(texts, truncation=True, max_length=run.data.max_length,
                            padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def footprint(run, trained) -> dict[str, Any]:
    """Parameters, size of the saved artifact and CPU latency (in the runtime the model ships
    in: an ONNX artifact is timed through its ONNX Runtime session)."""
    values: dict[str, Any] = dict(getattr(trained.model, "parameter_counts", None)
                                  or count_parameters(trained.model))
    if trained.path is not None:
        values["size_mb"] = artifact_size_mb(trained.path)
    values.update(latencies(run, trained))
    return values


def latencies(run, trained) -> dict[str, float | str]:
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


def relative_to_teacher(run, values: dict[str, Any]) -> dict[str, Any]:
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

"""What a compressed model costs: parameters, bytes on disk, CPU latency.

These numbers go into the report next to F1, so they have to be comparable across methods:

* parameters are *logical* counts — a 4-bit weight packed two-per-byte or an int8 tensor
  subclass counts as many parameters as the float matrix it replaces, so quantization never
  looks like pruning;
* sizes are real bytes on disk in MB with 1 MB = 1e6 bytes (the SI unit, as `ls -l --si` and
  most papers report), never an estimate from dtypes;
* latency is the median of at least 20 timed forwards after warm-up, with a fixed thread count
  (the default would use every core, which is neither reproducible nor what a deployment gets).
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from hate_compress.errors import ConfigError

MB = 1e6
WEIGHTS_FILE = "model.safetensors"
MIN_RUNS = 20


# ---------------------------------------------------------------------------------------------
# parameters


def _is_4bit(param: torch.Tensor) -> bool:
    return getattr(param, "quant_state", None) is not None and hasattr(param, "blocksize")


def _dense_4bit(param: torch.Tensor) -> torch.Tensor:
    """Dequantized bitsandbytes weight; undoes bnb's CPU repacking on a copy if it happened."""
    from bitsandbytes import functional as bnbf

    data, state = param.data, param.quant_state
    if getattr(state, "packing_format_for_cpu", False):
        data, state = bnbf._convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(state))
    return bnbf.dequantize_4bit(data, state)


def _logical_numel(param: torch.Tensor) -> int:
    if _is_4bit(param):
        return int(torch.Size(param.quant_state.shape).numel())
    return param.numel()  # torchao subclasses report the logical shape already


def _nonzero(param: torch.Tensor) -> int:
    with torch.no_grad():
        if _is_4bit(param):
            return int(torch.count_nonzero(_dense_4bit(param)))
        if type(param) not in (torch.Tensor, nn.Parameter) and hasattr(param, "dequantize"):
            return int(torch.count_nonzero(param.dequantize()))
        return int(torch.count_nonzero(param.detach()))


def _prunable_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight matrices pruning touches by default (`compress.pruning.prunable_linears`):
    Linear layers outside the embeddings and the model's `head`, with any pruning mask applied.
    Matched on module type and name, so quantized Linears (torchao, bitsandbytes) still count."""
    head = getattr(model, "head", None)
    head_ids = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
    weights, seen = [], set()
    for name, module in model.named_modules():
        if (not isinstance(module, nn.Linear) or id(module) in head_ids
                or any(part.endswith("embeddings") for part in name.split(".")[:-1])):
            continue
        if hasattr(module, "weight_orig") and hasattr(module, "weight_mask"):
            weight = module.weight_orig * module.weight_mask  # a mask still installed
        else:
            weight = module.weight
        if id(weight) not in seen:
            seen.add(id(weight))
            weights.append(weight)
    return weights


def count_parameters(model: nn.Module) -> dict[str, float | None]:
    """`params_total`, `params_nonzero` and two zero fractions, named for what they divide by:

    * `sparsity_prunable_weights`: zeros among the weights pruning may touch (what
      `prune.sparsity=0.5` sets to 0.5; None for a model without such layers);
    * `sparsity_all_params`: zeros among all parameters (embeddings, biases, LayerNorms and the
      head are never pruned, so 50% of the prunable weights can be ~14% of a small student);
      `sparsity` is the same number under its old name, for readers of older metrics.

    Zeros are counted on the dequantized values, so pruned weights stay zero after quantization.
    Tied weights are counted once (`parameters()` deduplicates them).
    """
    total = nonzero = 0
    for param in model.parameters():
        total += _logical_numel(param)
        nonzero += _nonzero(param)
    prunable = _prunable_weights(model)
    p_total = sum(_logical_numel(w) for w in prunable)
    p_nonzero = sum(_nonzero(w) for w in prunable)
    every = 1.0 - nonzero / total if total else 0.0
    return {
        "params_total": total,
        "params_nonzero": nonzero,
        "sparsity_prunable_weights": 1.0 - p_nonzero / p_total if p_total else None,
        "sparsity_all_params": every,
        "sparsity": every,
    }


# ---------------------------------------------------------------------------------------------
# size on disk


def artifact_size_mb(directory: str | os.PathLike, *, weights_only: bool = False) -> float:
    """Bytes of every regular file under `directory` (recursively), or of its weights file, in MB.

    The whole directory is what a user downloads (tokenizer and config included); the weights
    file alone is what compression changes, so the report shows both.
    """
    directory = Path(directory)
    if weights_only:
        path = directory / WEIGHTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no weights file")
        return path.stat().st_size / MB
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory")
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / MB


def weights_size_mb(directory: str | os.PathLike) -> float:
    return artifact_size_mb(directory, weights_only=True)


# ---------------------------------------------------------------------------------------------
# latency


def batch_of(example_inputs: Mapping[str, torch.Tensor], batch_size: int) -> dict[str, torch.Tensor]:
    """Repeat (or cut) real example rows to `batch_size`, so every size sees the same texts."""
    first = next(iter(example_inputs.values()))
    index = torch.arange(batch_size) % first.shape[0]
    return {k: v[index].contiguous() for k, v in example_inputs.items()}


def measure_latency(
    model: nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    batch_sizes: Iterable[int] = (1, 32),
    runs: int = 20,
    warmup: int = 5,
    threads: int = 1,
) -> dict[str, float]:
    """Median forward time in ms per batch size: ``{"latency_ms_b1": ..., "latency_ms_b32": ...}``.

    `example_inputs` is a tokenized batch of real texts (`input_ids`, `attention_mask`), because
    sequence length — not the vocabulary — drives the cost. Runs under `inference_mode` in eval
    mode; thread count and training flag are restored afterwards even on error. A model that
    runs outside torch (an ONNX Runtime session) gets its thread count through `use_threads`.
    """
    if runs < MIN_RUNS:
        raise ConfigError(f"measure.runs={runs}: need at least {MIN_RUNS} timed runs for a median")
    if warmup < 0 or threads < 1:
        raise ConfigError(f"measure.warmup={warmup}/measure.threads={threads}: must be >= 0 / >= 1")
    if not example_inputs or any(v.shape[0] == 0 for v in example_inputs.values()):
        raise ConfigError("measure: example_inputs must be a non-empty tokenized batch")
    previous_threads = torch.get_num_threads()
    use_threads = getattr(model, "use_threads", None)
    previous_runtime_threads = use_threads(int(threads)) if use_threads else None
    was_training = model.training
    results: dict[str, float] = {}
    try:
        torch.set_num_threads(int(threads))
        model.eval()
        with torch.inference_mode():
            for batch_size in batch_sizes:
                inputs = batch_of(example_inputs, int(batch_size))
                for _ in range(warmup):
                    model(**inputs)
                times = []
                for _ in range(runs):
                    start = time.perf_counter()
                    model(**inputs)
                    times.append((time.perf_counter() - start) * 1000.0)
                results[f"latency_ms_b{int(batch_size)}"] = statistics.median(times)
    finally:
        torch.set_num_threads(previous_threads)
        if use_threads:
            use_threads(previous_runtime_threads)
        model.train(was_training)
    return results


def thread_counts(threads) -> list[int]:
    """`measure.threads` is one count or a list; the first is the headline (`latency_ms_b1`),
    the others are reported as `latency_ms_b1_t<threads>`."""
    counts = [threads] if isinstance(threads, int) else list(threads)
    if not counts or any(not isinstance(t, int) or t < 1 for t in counts):
        raise ConfigError(f"measure.threads={threads}: must be a thread count >= 1 or a list of them")
    return counts


def measure_latency_threads(model: nn.Module, example_inputs: Mapping[str, torch.Tensor], threads,
                            **kwargs) -> dict[str, float]:
    """`measure_latency` at every count in `threads` (see `thread_counts`)."""
    return _over_threads(lambda count: measure_latency(model, example_inputs, threads=count,
                                                       **kwargs), threads)


def _over_threads(measure_at, threads) -> dict[str, float]:
    results: dict[str, float] = {}
    for i, count in enumerate(thread_counts(threads)):
        suffix = "" if i == 0 else f"_t{count}"
        for key, value in measure_at(count).items():
            results[key + suffix] = value
    return results


def measure_text_latency(model, texts: list[str], batch_sizes: Iterable[int] = (1, 32),
                         runs: int = 20, warmup: int = 5, threads: int = 1) -> dict[str, float]:
    """Median `model.predict_texts` time in ms per batch size, for models that read raw text
    (char_ngram, ensembles): featurising the text is part of their cost, so it is timed too."""
    if runs < MIN_RUNS:
        raise ConfigError(f"measure.runs={runs}: need at least {MIN_RUNS} timed runs for a median")
    previous_threads = torch.get_num_threads()
    results: dict[str, float] = {}
    try:
        torch.set_num_threads(int(threads))
        for batch_size in batch_sizes:
            batch = [texts[i % len(texts)] for i in range(int(batch_size))]
            for _ in range(warmup):
                model.predict_texts(batch)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                model.predict_texts(batch)
                times.append((time.perf_counter() - start) * 1000.0)
            results[f"latency_ms_b{int(batch_size)}"] = statistics.median(times)
    finally:
        torch.set_num_threads(previous_threads)
    return results


def text_latency_threads(model, texts: list[str], threads, **kwargs) -> dict[str, float]:
    return _over_threads(lambda count: measure_text_latency(model, texts, threads=count,
                                                            **kwargs), threads)


def speedup(teacher_ms: float, student_ms: float) -> float:
    """How many times faster the student is (> 1 = faster)."""
    if not student_ms > 0 or not teacher_ms > 0:
        raise ValueError(f"latencies must be positive (teacher {teacher_ms}, student {student_ms})")
    return teacher_ms / student_ms

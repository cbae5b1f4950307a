"""Compression stages: pruning (a Lightning callback during a short fine-tune) and quantization.

Both work on a copy of `run.current` (the KD student, or the teacher when KD is not in the
pipeline), so every earlier artifact and its metrics stay intact for the per-stage table.
"""

from __future__ import annotations

import copy
import itertools
import logging

from hate_compress import distributed
from hate_compress.compress.pruning import PruningCallback, prune_model, sparsity_report
from hate_compress.compress.quantization import (
    QuantizationUnavailable,
    checked_options,
    get_quantizer,
    quantize_model,
)
from hate_compress.errors import ConfigError
from hate_compress.stages.common import fit, loss_for, plain, save
from hate_compress.stages.kd import teacher_source
from hate_compress.stages.measure import measure_stage
from hate_compress.stages.state import Run, Trained, register_stage

log = logging.getLogger(__name__)


def working_copy(run: Run, name: str) -> Trained:
    if run.current is None:
        raise ConfigError(f"stages: {name} needs a model from an earlier stage (teacher or kd)")
    src = run.current
    return Trained(name, copy.deepcopy(src.model), src.tokenizer, src.key)


def skip(run: Run, stage: str, reason: str) -> None:
    log.warning("[%s] skipped: %s", stage, reason)
    run.record(stage, {"skipped": reason})


def finish(run: Run, stage: str, trained: Trained, extra: dict) -> None:
    """Save the compressed copy, make it the model later stages work on, and measure it."""
    save(run, trained, run.stage_dir(stage) / "model")
    run.current = trained
    measure_stage(run, stage, trained, extra=extra)


def finetune_loss(run: Run, trained: Trained):
    """Recover from pruning under the same teacher (KD loss) when there is one, else labels."""
    use_kd = run.cfg.prune.get("kd", True) and run.teacher is not None and trained.key != "teacher"
    kd_cfg = run.cfg.kd if use_kd else {"terms": {}}
    shared = trained.key == "teacher" or trained.tokenizer is run.teacher.tokenizer
    loss = loss_for(run, kd_cfg, trained.model, run.teacher.model if use_kd else None, shared,
                    bool(run.cfg.student.train.class_weights))
    source = teacher_source(run, loss, shared) if loss.needs else None
    return loss, source, shared


@register_stage("prune", rank=20)
def prune_stage(run: Run) -> None:
    cfg = run.cfg.prune
    if cfg.method == "none":
        return skip(run, "prune", "prune=none")
    trained = working_copy(run, "pruned")
    options = plain(cfg.get("options") or {})
    epochs = int(cfg.finetune_epochs)
    if epochs > 0:
        callback = PruningCallback(cfg.method, cfg.sparsity, **options)
        callback.shrink(trained.model)  # structural: here, not only in spawned fit workers
        loss, source, shared = finetune_loss(run, trained)
        train_cfg = run.cfg.student.train if trained.key == "student" else run.cfg.teacher.train
        fit(run, "prune", trained, loss, train_cfg=train_cfg, teacher_source=source,
            shared_tokenizer=shared, callbacks=[callback], epochs=epochs, lr=cfg.get("lr"))
        details = callback.report or {}
    else:  # one-shot, no recovery fine-tune
        calib = itertools.islice(iter(run.data.dataloader("train")),
                                 int(options.get("calibration_batches", 8)))
        details = prune_model(trained.model, cfg.method, cfg.sparsity, calibration_batches=calib,
                              input_key=trained.key,
                              **{k: v for k, v in options.items() if k != "calibration_batches"})
        details.update(details.pop("structured", {}))  # same keys as the fine-tune path reports
    finish(run, "prune", trained, {
        "method": cfg.method, "target_sparsity": float(cfg.sparsity), "finetune_epochs": epochs,
        "pruning": {**sparsity_report(trained.model), **_jsonable(details)},
    })


@register_stage("quant", rank=30)
def quant_stage(run: Run) -> None:
    cfg = run.cfg.quant
    if cfg.method == "none":
        return skip(run, "quant", "quant=none")
    quantizer = get_quantizer(cfg.method)
    if quantizer.runtime == "onnxruntime":
        try:
            checked_options(quantizer, cfg.method, plain(cfg.get("options") or {}))
        except QuantizationUnavailable as exc:
            return skip(run, "quant", str(exc))
        from hate_compress.stages.onnx import onnx_quant_stage

        # export, checks and measurement on rank 0 (the last stage: nothing reads it after)
        return distributed.on_rank_zero(lambda: onnx_quant_stage(run), share=False)
    trained = working_copy(run, "quantized")
    trained.source = run.current  # int8 kernels have no gradients: explain through this one
    batches = itertools.islice(iter(run.data.dataloader("train")), int(cfg.calibration_batches))
    try:
        quantize_model(trained.model, cfg.method, calibration_batches=batches,
                       input_key=trained.key, **plain(cfg.get("options") or {}))
    except QuantizationUnavailable as exc:
        return skip(run, "quant", str(exc))
    finish(run, "quant", trained, {"method": cfg.method})


def _jsonable(details) -> dict:
    if not isinstance(details, dict):
        return {}
    return {k: v for k, v in details.items() if isinstance(v, (int, float, str, bool, list))}

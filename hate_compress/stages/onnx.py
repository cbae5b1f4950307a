"""The quant stage for ONNX methods (`quant=onnx|onnx_int8|onnx_static_int8`).

Same contract as every other compression stage — works on `run.current`, saves an artifact under
`quant/model`, measures it with `measure_stage` — but the artifact is an ONNX Runtime model dir
and the measurement runs through its session. Two checks are recorded beside the metrics so a
broken export can never pass silently: the fp32 export's max |logit diff| against the torch
model on dev, and (for INT8) the agreement of the INT8 graph with that fp32 export on dev.
The teacher exported to ONNX Runtime fp32 (cached by its weights) is timed too, so the table can
say how much of the speedup comes from the runtime and how much from compression.
"""

from __future__ import annotations

import itertools
import logging

from hate_compress.artifacts import export_classifier
from hate_compress.compress.quantization.onnx import OnnxClassifier, teacher_reference
from hate_compress.measure.evaluate import example_batch, latencies
from hate_compress.models.classifier import is_text_level, predict_logits
from hate_compress.stages.common import model_card, plain
from hate_compress.stages.measure import measure_stage
from hate_compress.stages.state import Run, Trained

log = logging.getLogger(__name__)


def provenance(run: Run) -> dict:
    """Which stages (and which artifact) the shipped model came from."""
    done = [s for s in run.cfg.stages if s in run.metrics and not run.metrics[s].get("skipped")]
    return {"stages": [*done, "quant"], "source_artifact": str(run.current.path),
            "quant": run.cfg.quant.name, "run_dir": str(run.run_dir)}


def export_checks(run: Run, source: Trained, fp32_path: str, shipped: OnnxClassifier) -> dict:
    """fp32 export vs torch (max |logit diff|) and shipped graph vs fp32 export (agreement), on dev."""
    loader = run.data.dataloader("dev")
    torch_logits, _ = predict_logits(source.model, loader, source.key)
    fp32_logits, _ = predict_logits(OnnxClassifier(fp32_path), loader, source.key)
    shipped_logits, _ = predict_logits(shipped, loader, source.key)
    multilabel = run.data.task == "multilabel"

    def decisions(logits):
        return logits > 0 if multilabel else logits.argmax(-1)

    return {
        "fp32_max_abs_logit_diff_dev": float((fp32_logits - torch_logits).abs().max()),
        "agreement_with_fp32_export_dev": float(
            (decisions(shipped_logits) == decisions(fp32_logits)).float().mean()),
    }


def teacher_ort_latencies(run: Run) -> dict | None:
    if not run.cfg.measure.latency or run.teacher is None or is_text_level(run.teacher.model):
        return None
    teacher = run.teacher
    example = example_batch(run, teacher, max(run.cfg.measure.batch_sizes))
    reference = teacher_reference(teacher.model, teacher.path, run.cfg.paths.cache_dir, example)
    return latencies(run, Trained("teacher_ort", reference, teacher.tokenizer, teacher.key))


def onnx_quant_stage(run: Run) -> None:
    cfg = run.cfg.quant
    source = run.current
    directory = run.stage_dir("quant") / "model"
    calibration = itertools.islice(iter(run.data.dataloader("train")), int(cfg.calibration_batches))
    card = model_card(run, artifact="quantized (ONNX)", provenance=provenance(run))
    meta = {"task": card.task, "label_names": card.label_names,
            "positive_label": card.positive_label, "max_length": card.max_length,
            "metrics": {}, **card.extra}
    shipped, details = export_classifier(
        source.model, source.tokenizer, directory, cfg.method, plain(cfg.get("options") or {}),
        example_batch(run, source), meta=meta, calibration=calibration, input_key=source.key,
        scratch=run.stage_dir("quant") / "onnx_fp32",
    )
    checks = export_checks(run, source, details.pop("fp32_path"), shipped)
    log.info("[quant] ONNX export checks: %s", checks)
    trained = Trained("quantized", shipped, source.tokenizer, source.key, path=directory)
    run.current = trained
    measure_stage(run, "quant", trained, extra={"method": cfg.method, "export": {**details, **checks}},
                  teacher_ort=teacher_ort_latencies(run))

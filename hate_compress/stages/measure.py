"""The measurement every stage ends with: score, footprint and analysis of its model, recorded in
the run's metrics.json and in the model's card.

How each number is measured lives in `hate_compress.measure`; this module is the stage-level
step that puts them together, because it writes into the `Run` and the saved artifact (both
above the measuring layer).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hate_compress import distributed
from hate_compress.artifacts import update_card
from hate_compress.measure.analysis import analyse_stage
from hate_compress.measure.evaluate import eval_splits, footprint, relative_to_teacher, score, speedups
from hate_compress.stages.state import Run, Trained
from hate_compress.storage import READ_ONLY_ERRNOS, writing

log = logging.getLogger(__name__)


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
                    "measure.quality.DEGENERATE_SHARE); it will not be recommended", stage,
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

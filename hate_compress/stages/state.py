"""The state one pipeline run carries from stage to stage, and the stage registry.

Stages are plain functions `stage(run) -> None` registered by name with their rank in the
pipeline; each reads what earlier stages left on the `Run` (the data, the teacher, the model
currently being compressed) and records its metrics under its own name, so
`stages=[teacher,kd,prune,quant]` is just a loop (`hate_compress.pipeline.runner`), in the order
the ranks give.

Lives in the stages layer because only stages (and the pipeline above them) hand a `Run`
around; the measuring code below reads the same attributes without importing this module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hate_compress.distributed import is_rank_zero
from hate_compress.models.classifier import HateClassifier
from hate_compress.registry import Registry
from hate_compress.storage import OUTPUT_KEY, write_text_atomically, writing

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """A model together with what is needed to feed and describe it."""

    name: str  # "teacher", "student", "pruned", "quantized"
    model: HateClassifier
    tokenizer: Any
    key: str  # which tokenization in batch["inputs"] this model reads
    path: Path | None = None  # saved artifact directory
    # the fp32 model this one was quantized from: explanations go through it when this one
    # cannot be differentiated
    source: Trained | None = None


@dataclass
class Run:
    cfg: DictConfig
    run_dir: Path
    data: Any  # HateDataModule
    metrics: dict[str, Any] = field(default_factory=dict)
    teacher: Trained | None = None
    current: Trained | None = None  # what the next compression stage works on
    teacher_logits: dict[str, Any] | None = None  # per split, for teacher-student agreement
    # extra Lightning callbacks per training stage (e.g. {"kd": [optuna pruning callback]})
    callbacks: dict[str, list] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=dict)  # state shared by hate_compress.measure.analysis

    def stage_dir(self, name: str) -> Path:
        path = self.run_dir / name
        with writing(path, OUTPUT_KEY):
            path.mkdir(parents=True, exist_ok=True)
        return path

    def record(self, stage: str, values: dict[str, Any]) -> None:
        self.metrics[stage] = values
        self.write_metrics()

    def write_metrics(self) -> None:
        """Rewritten after every stage so a crash never loses what finished (by rank 0:
        the other ranks of a distributed run hold no measurements)."""
        if not is_rank_zero():
            return
        path = self.run_dir / "metrics.json"
        with writing(path, OUTPUT_KEY):
            write_text_atomically(path, json.dumps(self.metrics, indent=2, default=str))


Stage = Callable[[Run], None]
STAGES: Registry[Stage] = Registry("stage", "stages")
# checks a stage runs before *any* stage does, so a config error it can detect from the config
# and the data alone never costs the earlier stages' training first
PREFLIGHT: Registry[Stage] = Registry("preflight check", "stages")


def register_preflight(name: str) -> Callable[[Stage], Stage]:
    return PREFLIGHT.register(name)


def register_stage(name: str, *, rank: int) -> Callable[[Stage], Stage]:
    """Make `fn` the stage `name`; stages always run in increasing `rank` (each one consumes
    what lower ranks produced: the teacher before KD, pruning before quantization)."""
    return STAGES.register(name, rank=rank)


def stage_order() -> list[str]:
    """Every registered stage, in the order a pipeline runs them."""
    return sorted(STAGES, key=lambda name: STAGES.meta[name]["rank"])

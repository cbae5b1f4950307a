"""A CSV logger whose per-step log survives a resume.

Lightning's `CSVLogger` deletes `metrics.csv` when it finds one, so a stage resumed after Ctrl-C
or a crash kept only the epochs trained after the resume. Here the file is kept; when training
starts, rows logged after the checkpoint being resumed (a partial epoch that the resume will
train again) are dropped, and new rows are appended under the same header. A stage that starts
from scratch (no checkpoint: logging step 0) starts a fresh file, as before.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from hate_compress.storage import replacing


class _KeepingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Lightning deletes an existing metrics.csv here; `keep_steps_before` trims it instead."""


class ResumableCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> _KeepingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment

    @rank_zero_only
    def keep_steps_before(self, step: int) -> None:
        """Keep the rows logged before logging step `step` (where training resumes), drop the rest."""
        writer = self.experiment
        path = Path(writer.metrics_file_path)
        if not path.exists():
            return
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
        kept = [row for row in rows if _step(row) < step]
        if not kept:
            path.unlink()
            writer.metrics_keys = []
            return
        with replacing(path) as tmp, open(tmp, "w", newline="") as fh:
            out = csv.DictWriter(fh, fieldnames=header)
            out.writeheader()
            out.writerows(kept)
        writer.metrics_keys = header  # new rows are appended under the existing header


def _step(row: dict) -> float:
    try:
        return float(row.get("step") or 0)
    except ValueError:
        return 0.0


class KeepLogHistory(Callback):
    """Tells resumable loggers where training (re)starts, once the checkpoint is restored."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the step Lightning logs rows under (optimizer steps, as restored from the checkpoint)
        step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.keep_steps_before(int(step))

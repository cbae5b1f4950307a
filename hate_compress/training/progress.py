"""Training progress a user can read: on a terminal a bar, in a log file one line per epoch.

Lightning's bar is drawn with carriage returns on stdout; piped to a file (CI, nohup) it leaves
no line a user can `tail`, and a 19-minute teacher looked hung. When the bar is not drawn (stdout
is not a terminal, or `trainer.enable_progress_bar=false`) `EpochLogLine` logs one line per epoch
instead: stage, epoch i/n, mean train loss, dev macro F1, elapsed, ETA. When it is drawn,
`StageProgressBar` labels it `<stage> epoch i/n` counting from 1 (Lightning's own says `Epoch 2`
for the last of 3 epochs, its rich bar `Epoch 2/2`).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

log = logging.getLogger(__name__)


def draws_progress_bar(enabled: bool, stream=None) -> bool:
    """True when a bar would really be seen: enabled and stdout (tqdm's stream) is a terminal."""
    stream = sys.stdout if stream is None else stream
    return bool(enabled) and bool(getattr(stream, "isatty", lambda: False)())


def epoch_label(trainer: pl.Trainer) -> str:
    """`epoch 3/3` for the last of three epochs (1-based, with the total)."""
    total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
    return f"epoch {trainer.current_epoch + 1}/{total}"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class StageProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, described as `<stage> epoch i/n`."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(f"{self.stage} {epoch_label(trainer)}")


class EpochLogLine(Callback):
    """One INFO line per finished epoch, for logs without a progress bar."""

    def __init__(self, stage: str):
        self.stage = stage
        self.started: float | None = None
        self.first_epoch = 0
        self.loss_sum = 0.0
        self.loss_count = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.monotonic()
        self.first_epoch = trainer.current_epoch  # > 0 when resumed: the ETA counts this process

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.loss_sum, self.loss_count = 0.0, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.loss_sum += float(loss.detach() if hasattr(loss, "detach") else loss)
            self.loss_count += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        elapsed = time.monotonic() - (self.started or time.monotonic())
        done = trainer.current_epoch + 1 - self.first_epoch
        remaining = max((trainer.max_epochs or 0) - trainer.current_epoch - 1, 0)
        loss = f"{self.loss_sum / self.loss_count:.4f}" if self.loss_count else "n/a"
        f1 = trainer.callback_metrics.get("val/macro_f1")
        f1_text = f"{float(f1):.4f}" if f1 is not None else "n/a"
        eta = duration(elapsed / done * remaining) if done > 0 else "?"
        log.info("[%s] %s: train loss %s, dev macro F1 %s, elapsed %s, ETA %s", self.stage,
                 epoch_label(trainer), loss, f1_text, duration(elapsed), eta)


def progress_callbacks(stage: str, bar_enabled: bool) -> tuple[list[Callback], bool]:
    """The callbacks showing progress for `stage`, and whether Lightning's bar stays enabled."""
    if draws_progress_bar(bar_enabled):
        return [StageProgressBar(stage)], True
    return [EpochLogLine(stage)], False

"""Training progress when output goes to a file, and the bar's epoch numbering (issue 12).

Piped to a file, Lightning's bar (carriage returns on stdout) left no readable line for a
19-minute teacher; the bar said `Epoch 2` on the last of three epochs.
"""

from __future__ import annotations

import io
import logging
import re

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from hate_compress.pipeline.runner import run_pipeline
from hate_compress.training.progress import StageProgressBar, draws_progress_bar
from tests.conftest import compose_cfg

LINE = re.compile(r"\[teacher\] epoch (\d)/3: train loss \d+\.\d{4}, dev macro F1 \d\.\d{4}, "
                  r"elapsed \d+m\d\ds, ETA \d+m\d\ds")


def test_non_tty_run_logs_one_line_per_epoch(tmp_path, caplog):
    cfg = compose_cfg(tmp_path, ["pipeline=teacher", "teacher.train.epochs=3",
                                     "trainer.enable_progress_bar=true"])
    assert cfg.trainer.enable_progress_bar  # on, but stdout is not a terminal under pytest
    with caplog.at_level(logging.INFO, logger="hate_compress.training.progress"):
        run_pipeline(cfg, tmp_path / "run")
    epochs = [int(m.group(1)) for r in caplog.records if (m := LINE.search(r.getMessage()))]
    assert epochs == [1, 2, 3], [r.getMessage() for r in caplog.records]


def test_bar_is_drawn_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert draws_progress_bar(True, Tty())
    assert not draws_progress_bar(True, io.StringIO())
    assert not draws_progress_bar(False, Tty())


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_bar_reads_3_of_3_in_the_last_of_three_epochs(tmp_path):
    bar = StageProgressBar("teacher")
    trainer = pl.Trainer(max_epochs=3, callbacks=[bar], logger=False, enable_checkpointing=False,
                         default_root_dir=str(tmp_path), enable_model_summary=False)
    trainer.fit(Tiny(), DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2))
    assert bar.train_progress_bar.desc.startswith("teacher epoch 3/3")

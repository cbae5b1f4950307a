"""Ctrl-C (issue 10, item 8): one line and exit 130, metrics.json says `interrupted`, and the
rerun resumes with the per-step log of the epochs before the interruption intact."""

from __future__ import annotations

import csv
import json
import signal
from functools import partial

import pytest
from lightning.pytorch.callbacks import Callback

from hate_compress.pipeline.guard import guarded_call
from hate_compress.pipeline.runner import guarded_run, run_pipeline


class CtrlC(Callback):
    """Raises KeyboardInterrupt after batch `batch` of epoch `epoch`: mid-epoch, so rows of a
    partial epoch are in the log and the resume must not log those steps twice."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise KeyboardInterrupt


@pytest.fixture
def restore_sigint():
    """Lightning ignores SIGINT after a KeyboardInterrupt; give pytest its Ctrl-C back."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def logged_epochs(path) -> list[int]:
    with open(path, newline="") as fh:
        return sorted({int(float(row["epoch"])) for row in csv.DictReader(fh)})


def test_ctrl_c_exits_130_and_the_rerun_keeps_the_earlier_epochs(tiny_cfg, tmp_path, capsys,
                                                                 restore_sigint):
    run_dir = tmp_path / "outputs" / "runs" / "r"
    cfg = tiny_cfg("pipeline=teacher", "run_name=r", "teacher.train.epochs=2")
    interrupted_run = partial(run_pipeline, callbacks={"teacher": [CtrlC(epoch=1, batch=1)]})
    with pytest.raises(SystemExit) as exit_info:
        guarded_call(interrupted_run, cfg, run_dir)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "interrupted; rerun the same command (run_name=r) to resume"
    assert not any("Traceback" in line for line in err)
    assert json.loads((run_dir / "metrics.json").read_text())["run"]["status"] == "interrupted"
    log = run_dir / "teacher" / "logs" / "metrics.csv"
    assert 0 in logged_epochs(log)

    metrics = guarded_run(cfg, run_dir)  # the same command again
    assert metrics["run"]["status"] == "ok"
    assert logged_epochs(log) == [0, 1]
    with open(log, newline="") as fh:
        steps = [float(row["step"]) for row in csv.DictReader(fh) if row.get("train/loss")]
    assert steps == list(range(8))  # 2 epochs x 4 batches (trainer=fast), none logged twice

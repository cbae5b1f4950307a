"""`hardware=ddp_cpu`: the tiny teacher trains in two gloo processes on this 2-core machine."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, TINY, cli_env


def test_teacher_trains_with_two_cpu_processes(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "hate_compress", "pipeline=teacher", "hardware=ddp_cpu",
         "data=synthetic", f"paths.output_root={tmp_path}", "run_name=ddp", *TINY,
         "teacher.train.epochs=2"],
        cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Starting with 2 processes" in out.stdout + out.stderr
    run = tmp_path / "runs" / "ddp"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run"]["status"] == "ok"
    log = (run / "teacher" / "logs" / "metrics.csv").read_text().splitlines()
    header = log[0].split(",")
    epochs = {row.split(",")[0] for row in log[1:]
              if row.split(",")[header.index("val/macro_f1")]}
    assert epochs == {"0", "1"}
    # the launching process got the trained weights back: the saved teacher equals best.ckpt
    best = torch.load(run / "teacher" / "checkpoints" / "best.ckpt", weights_only=True)
    saved = load_file(str(metrics["teacher"]["artifact"] + "/model.safetensors"))
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, best["state_dict"]["model." + name])

"""`hardware=ddp_cpu`: the tiny teacher trains, and a structured prune fine-tunes, in two gloo
processes on this 2-core machine (Lightning's spawn launcher: only `fit` runs in the workers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from hate_compress.artifacts import load_classifier
from hate_compress.pipeline.runner import run_pipeline
from tests.conftest import ROOT, TINY, cli_env, compose_cfg


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


def test_structured_pruning_with_two_cpu_processes(tmp_path):
    """The prune fine-tune runs in two spawned gloo workers; the launching process shrinks its
    own copy first, so the workers' smaller weights fit it when Lightning copies them back (this
    used to be a size-mismatch crash)."""
    teacher = run_pipeline(compose_cfg(tmp_path, ["pipeline=teacher"]), tmp_path / "t")
    out = subprocess.run(
        [sys.executable, "-m", "hate_compress", "stages=[teacher,prune]", "hardware=ddp_cpu",
         "prune=structured", "prune.sparsity=0.5", "prune.finetune_epochs=1", "data=synthetic",
         f"teacher.checkpoint={teacher['teacher']['artifact']}", f"paths.output_root={tmp_path}",
         "run_name=ddp_structured", *TINY],
        cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Starting with 2 processes" in out.stdout + out.stderr
    run = tmp_path / "runs" / "ddp_structured"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run"]["status"] == "ok"
    pruning = metrics["prune"]["pruning"]
    assert pruning["params_after"] < pruning["params_before"]
    assert metrics["prune"]["params_total"] < metrics["teacher"]["params_total"]
    model, _, _ = load_classifier(metrics["prune"]["artifact"])
    layer = model.encoder.encoder.layer[0]
    assert layer.attention.self.query.out_features == 32  # 2 heads of 32 -> 1
    # the weights saved by the launching process are the workers' fine-tuned ones
    last = torch.load(run / "prune" / "checkpoints" / "last.ckpt", weights_only=True)
    saved = load_file(str(Path(metrics["prune"]["artifact"]) / "model.safetensors"))
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, last["state_dict"]["model." + name])

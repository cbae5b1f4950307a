"""Device-correct measurement without a GPU: which device is chosen, and that the work goes there.

On a GPU the teacher-output cache and the per-stage scoring run on the training device (a
base-size teacher over the train set on the CPU was the slow part of a GPU KD run); CPU latency
stays on the CPU, the deployment target, and metrics.json says so. The device decision is tested
with CUDA faked as present; the moving is tested with PyTorch's `meta` device standing in for a
GPU (tensors without storage: every input that reaches the model must have been moved there).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from hate_compress import distributed
from hate_compress.kd.teacher import CachedTeacher
from hate_compress.measure.evaluate import latencies, scoring_device
from hate_compress.models.classifier import predict_logits
from hate_compress.pipeline.runner import make_data
from hate_compress.stages.common import build_classifier
from hate_compress.stages.state import Run, Trained

META = torch.device("meta")


@pytest.mark.parametrize("accelerator, cuda, local_rank, expected", [
    ("cpu", True, "0", "cpu"),       # a CPU run stays on the CPU even on a GPU machine
    ("gpu", False, "0", "cpu"),      # no CUDA: nothing to move to
    ("gpu", True, "0", "cuda:0"),
    ("gpu", True, "1", "cuda:1"),    # each rank scores on its own GPU
    ("auto", True, "0", "cuda:0"),
])
def test_training_device(monkeypatch, accelerator, cuda, local_rank, expected):
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    device = distributed.training_device({"accelerator": accelerator}, cuda_available=lambda: cuda)
    assert str(device) == expected


def test_scoring_follows_training_except_quantized_models(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, pretend
    model = nn.Linear(2, 2)
    gpu_run = SimpleNamespace(cfg=tiny_cfg("trainer.accelerator=gpu"))
    assert scoring_device(gpu_run, Trained("student", model, None, "student")) == torch.device("cuda", 0)
    assert scoring_device(gpu_run, Trained("quantized", model, None, "student")) is None
    cpu_run = SimpleNamespace(cfg=tiny_cfg())
    assert scoring_device(cpu_run, Trained("student", model, None, "student")) is None


class Spy(nn.Module):
    """Stands in for a classifier: records where its inputs and weights are, answers on CPU."""

    def __init__(self, hidden: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden))
        self.seen: list[tuple[str, str]] = []
        self.moves: list[str] = []

    def to(self, device, *args, **kwargs):  # record instead of moving (meta has no storage)
        self.moves.append(str(device))
        return self

    def forward(self, input_ids, attention_mask, output_hidden_states=False, **_):
        self.seen.append((str(input_ids.device), str(attention_mask.device)))
        n = input_ids.shape[0]
        hidden = tuple(torch.ones(n, input_ids.shape[1], 4) for _ in range(2))
        return SimpleNamespace(logits=torch.zeros(n, 2), pooled=torch.zeros(n, 4),
                               hidden_states=hidden if output_hidden_states else None)


def batches(n_batches: int = 2, size: int = 3):
    out = []
    for b in range(n_batches):
        ids = torch.ones(size, 5, dtype=torch.long)
        out.append({"idx": torch.arange(b * size, (b + 1) * size), "labels": torch.zeros(size),
                    "inputs": {"student": {"input_ids": ids, "attention_mask": torch.ones_like(ids)}}})
    return out


def test_predict_logits_runs_on_the_given_device_and_answers_on_cpu():
    spy = Spy()
    logits, labels = predict_logits(spy, batches(), "student", device=META)
    assert spy.seen == [("meta", "meta")] * 2
    assert spy.moves == ["meta", "cpu"]  # there for the pass, home afterwards
    assert logits.device.type == "cpu" and logits.shape == (6, 2)
    spy = Spy()
    predict_logits(spy, batches(), "student")  # no device: where it is, no moves
    assert spy.seen == [("cpu", "cpu")] * 2 and spy.moves == []


def test_teacher_output_cache_is_computed_on_the_given_device(tmp_path):
    spy = Spy()
    path = tmp_path / "cache.safetensors"
    cache = CachedTeacher.build(spy, {"train": batches(), "dev": batches(1)}, "student", path,
                                pooling=None, device=META)
    assert set(spy.seen) == {("meta", "meta")} and len(spy.seen) == 3
    assert spy.moves == ["meta", "cpu"]
    stored = load_file(str(path))  # written from CPU tensors
    assert stored["train.logits"].shape == (6, 2) and stored["train.head"].shape == (6, 4)
    assert cache.has("dev")


def test_latency_is_measured_on_cpu_and_says_so(tiny_cfg, tmp_path):
    cfg = tiny_cfg("measure.latency=true", "measure.batch_sizes=[1]", "measure.warmup=1")
    run = Run(cfg, tmp_path / "run", make_data(cfg))
    model, tokenizer = build_classifier(run, "teacher")
    run.data.set_tokenizers({"teacher": tokenizer})
    values = latencies(run, Trained("teacher", model, tokenizer, "teacher", Path(tmp_path)))
    assert values["latency_device"] == "cpu" and values["latency_ms_b1"] > 0

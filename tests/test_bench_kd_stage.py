"""The benchmarks time the package's KD stage itself, not a copy of it: `bench/common.py`'s
`framework_kd` must go through `hate_compress.stages.kd.prepare_kd` and `fit_kd` (the two halves
`kd_stage` runs), and the plain loop's student must be the one `prepare_kd` builds. Runs the
real bench code on the synthetic sample with the `debug=tiny` sizes (seconds, no real data)."""

from __future__ import annotations

import pytest
import torch

from bench import common
from hate_compress.stages import kd


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return common.make_setup(data="synthetic", batch_size=8, max_length=32,
                             workdir=tmp_path_factory.mktemp("kd_bench"), overrides=["debug=tiny"],
                             quiet_console=False)


def spy(monkeypatch, name):
    calls = []
    real = getattr(kd, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(kd, name, wrapper)
    return calls


@pytest.mark.parametrize("cache", [False, True])
def test_framework_kd_runs_the_package_stage(setup, monkeypatch, cache):
    prepared, fitted = spy(monkeypatch, "prepare_kd"), spy(monkeypatch, "fit_kd")
    result = common.framework_kd(setup, cache=cache, epochs=1, limit_train_batches=3)
    assert len(prepared) == 1 and len(fitted) == 1
    assert fitted[0][1] is result.prepared  # fit_kd trained what prepare_kd built
    assert len(result.timer.batch_starts) == 3  # the stage's Trainer ran our timer callback
    assert (result.prepared.source.cache is not None) is cache
    assert result.cache_build_s == (result.prepare_s if cache else 0.0)


def test_plain_loop_student_is_the_stage_student(setup, monkeypatch):
    prepared = spy(monkeypatch, "prepare_kd")
    student, tokenizer, shared = common.build_student(setup)
    again, _, _ = common.build_student(setup)
    assert len(prepared) == 2
    assert shared and tokenizer is setup.teacher.tokenizer
    for a, b in zip(student.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)  # seeded like the pipeline runner: same weights every time

import os

import pytest
import torch
from transformers import BertConfig, BertModel

from hate_compress.artifacts import ModelCard, save_classifier
from hate_compress.compress.quantization import quantize_model
from hate_compress.errors import ConfigError
from hate_compress.measure import footprint as measure
from hate_compress.measure.footprint import (
    artifact_size_mb,
    count_parameters,
    measure_latency,
    speedup,
    weights_size_mb,
)
from hate_compress.models.classifier import HateClassifier


def tiny_model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128)
    return HateClassifier(BertModel(config, add_pooling_layer=False), num_labels=2).eval()


def example_inputs(n=3, seq=12):
    ids = torch.randint(0, 200, (n, seq), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


# ------------------------------------------------------------------------------- parameters


def test_count_parameters_plain_and_pruned():
    model = tiny_model()
    total = sum(p.numel() for p in model.parameters())
    counts = count_parameters(model)
    assert counts["params_total"] == total
    zeroed = model.encoder.encoder.layer[0].intermediate.dense.weight
    with torch.no_grad():
        zeroed.view(-1)[:1000] = 0
    counts = count_parameters(model)
    assert counts["params_total"] == total
    expected_nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    assert counts["params_nonzero"] == expected_nonzero <= total - 1000
    assert counts["sparsity"] == pytest.approx(1 - expected_nonzero / total)


@pytest.mark.parametrize("method", ["dynamic_int8", "nf4"])
def test_pruned_zeros_survive_quantization_in_counts(method):
    model = tiny_model()
    layer = model.encoder.encoder.layer[1].output.dense
    with torch.no_grad():
        layer.weight[:, :64] = 0  # whole blocks of 64 -> exact zeros in int8 and nf4
    before = count_parameters(model)
    after = count_parameters(quantize_model(model, method))
    assert after["params_total"] == before["params_total"]
    assert before["params_total"] - after["params_nonzero"] >= 64 * 64
    assert after["params_nonzero"] <= before["params_nonzero"]


# ------------------------------------------------------------------------------------- size


def test_artifact_size_matches_os_stat(tmp_path):
    save_classifier(tiny_model(), tmp_path, None, ModelCard(task="binary", label_names=["a", "b"]))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "extra.bin").write_bytes(b"x" * 1234)
    expected = sum(os.stat(os.path.join(root, f)).st_size
                   for root, _, files in os.walk(tmp_path) for f in files)
    assert artifact_size_mb(tmp_path) == pytest.approx(expected / 1e6, abs=1e-12)
    weights = os.stat(tmp_path / "model.safetensors").st_size
    assert weights_size_mb(tmp_path) == artifact_size_mb(tmp_path, weights_only=True)
    assert weights_size_mb(tmp_path) == pytest.approx(weights / 1e6, abs=1e-12)
    assert weights_size_mb(tmp_path) < artifact_size_mb(tmp_path)


def test_artifact_size_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        artifact_size_mb(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        weights_size_mb(tmp_path)


# ---------------------------------------------------------------------------------- latency


class FakeClock:
    """perf_counter that only advances when the model runs, by scripted durations."""

    def __init__(self, durations_ms):
        self.now = 0.0
        self.durations = list(durations_ms)

    def perf_counter(self):
        return self.now

    def hook(self, module, args, kwargs):
        self.now += self.durations.pop(0) / 1000.0 if self.durations else 0.0


def test_latency_reports_median_of_timed_runs_after_warmup(monkeypatch):
    model = tiny_model()
    warmup, runs = 3, 21
    # warm-up runs are absurdly slow: they must not enter the median
    script = [1000.0] * warmup + [float(i) for i in range(1, runs + 1)]  # median 11
    script += [500.0] * warmup + [float(2 * i) for i in range(1, runs + 1)]  # median 22
    clock = FakeClock(script)
    monkeypatch.setattr(measure.time, "perf_counter", clock.perf_counter)
    shapes = []
    model.register_forward_pre_hook(clock.hook, with_kwargs=True)
    model.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                    with_kwargs=True)
    result = measure_latency(model, example_inputs(), batch_sizes=(1, 5), runs=runs, warmup=warmup)
    assert result == {"latency_ms_b1": pytest.approx(11.0), "latency_ms_b5": pytest.approx(22.0)}
    assert shapes == [(1, 12)] * (warmup + runs) + [(5, 12)] * (warmup + runs)


def test_latency_real_timing_threads_fixed_and_restored():
    model = tiny_model().train()
    seen = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(
        (torch.get_num_threads(), torch.is_inference_mode_enabled(), m.training)), with_kwargs=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = measure_latency(model, example_inputs(), batch_sizes=(1, 4), threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert set(result) == {"latency_ms_b1", "latency_ms_b4"}
    assert all(v > 0 for v in result.values())
    assert len(seen) == 2 * (5 + 20) and set(seen) == {(1, True, False)}
    assert model.training  # training flag restored


def test_latency_restores_threads_on_error():
    model = tiny_model()

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    model.register_forward_pre_hook(boom, with_kwargs=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError):
            measure_latency(model, example_inputs(), threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_latency_rejects_too_few_runs():
    with pytest.raises(ConfigError, match="measure.runs"):
        measure_latency(tiny_model(), example_inputs(), runs=5)


def test_batch_of_repeats_real_rows():
    inputs = example_inputs(n=3)
    batch = measure.batch_of(inputs, 7)
    assert batch["input_ids"].shape == (7, 12)
    assert torch.equal(batch["input_ids"][3], inputs["input_ids"][0])
    assert torch.equal(batch["attention_mask"][6], inputs["attention_mask"][0])
    assert torch.equal(measure.batch_of(inputs, 2)["input_ids"], inputs["input_ids"][:2])


def test_speedup():
    assert speedup(100.0, 25.0) == pytest.approx(4.0)
    assert speedup(10.0, 20.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        speedup(10.0, 0.0)

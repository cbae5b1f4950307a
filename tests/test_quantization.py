import sys

import pytest
import torch
from safetensors import safe_open
from transformers import BertConfig, BertModel

from hate_compress.artifacts import ModelCard, load_classifier, save_classifier
from hate_compress.compress import quantization as q
from hate_compress.compress.quantization import QuantizationUnavailable, nf4, quantize_model
from hate_compress.errors import ConfigError, HateCompressError, ModelLoadError
from hate_compress.measure.footprint import count_parameters
from hate_compress.models.classifier import HateClassifier

METHODS = ["dynamic_int8", "static_int8", "nf4", "fp16", "bf16"]
CARD = ModelCard(task="binary", label_names=["neutral", "hate"])


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128)
    return HateClassifier(BertModel(config, add_pooling_layer=False), num_labels=2).eval()


def linear_heavy_model(seed=0):
    """Small vocab and position table so the encoder Linears dominate the file, as in real BERTs."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=128, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=32)
    return HateClassifier(BertModel(config, add_pooling_layer=False), num_labels=2).eval()


def random_inputs(n=64, seq=16, vocab=100, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, seq), generator=g)
    mask = torch.ones_like(ids)
    lengths = torch.randint(4, seq + 1, (n,), generator=g)
    mask[torch.arange(seq)[None, :] >= lengths[:, None]] = 0
    return ids, mask


def batches(ids, mask, size=8):
    return [
        {"inputs": {"student": {"input_ids": ids[i:i + size], "attention_mask": mask[i:i + size]}},
         "labels": torch.zeros(len(ids[i:i + size]), dtype=torch.long), "idx": torch.arange(i, i + size)}
        for i in range(0, len(ids), size)
    ]


def logits(model, ids, mask):
    with torch.inference_mode():
        return model(ids, mask).logits


def quantized(method, model_fn=tiny_model, **options):
    model = model_fn()
    calibration = batches(*random_inputs(16, seed=7)) if method == "static_int8" else None
    return quantize_model(model, method, calibration, **options)


def weights_bytes(directory, prefix=""):
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return sum(f.get_tensor(k).nbytes for k in f.keys() if k.startswith(prefix))


def encoder_linear_bytes(directory, targets):
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return sum(f.get_tensor(k).nbytes for k in f.keys()
                   if any(k.startswith(t + ".weight") for t in targets))


# ------------------------------------------------------------------------------------ errors


def test_unknown_method_names_key_and_choices():
    with pytest.raises(ConfigError) as err:
        quantize_model(tiny_model(), "int3")
    msg = str(err.value)
    assert "quant.method" in msg and "dynamic_int8" in msg and "nf4" in msg and "\n" not in msg


def test_unknown_option_is_config_error():
    with pytest.raises(ConfigError, match="quant.num_batches"):
        quantize_model(tiny_model(), "dynamic_int8", num_batches=3)


def test_static_without_calibration_is_config_error():
    with pytest.raises(ConfigError, match="calibration"):
        quantize_model(tiny_model(), "static_int8", None)


def test_quantizing_twice_is_refused():
    model = quantized("dynamic_int8")
    with pytest.raises(ConfigError, match="already quantized"):
        quantize_model(model, "fp16")


def test_none_leaves_model_untouched():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert quantize_model(model, "none") is model
    assert getattr(model, "compression_log", []) == []
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------ dynamic int8


def test_dynamic_int8_shrinks_linears_4x_and_keeps_predictions(tmp_path):
    ids, mask = random_inputs(128)
    fp32 = linear_heavy_model()
    reference = logits(fp32, ids, mask)
    save_classifier(fp32, tmp_path / "fp32", None, CARD)

    model = quantize_model(linear_heavy_model(), "dynamic_int8")
    out = logits(model, ids, mask)
    assert out.dtype == torch.float32
    assert (out.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9
    assert torch.allclose(out, reference, atol=0.05)

    save_classifier(model, tmp_path / "int8", None, CARD)
    targets = model.compression_log[-1]["targets"]
    assert len(targets) == 3 * 6 and not any(t.startswith("head") for t in targets)
    linear_ratio = (encoder_linear_bytes(tmp_path / "fp32", targets)
                    / encoder_linear_bytes(tmp_path / "int8", targets))
    assert linear_ratio >= 3.5
    file_ratio = weights_bytes(tmp_path / "fp32") / weights_bytes(tmp_path / "int8")
    assert file_ratio >= 3.0
    # embeddings and head stay float unless asked
    assert model.encoder.embeddings.word_embeddings.weight.dtype == torch.float32
    assert type(model.head[0].weight) is torch.nn.Parameter
    assert type(model.encoder.encoder.layer[0].attention.self.query.weight).__name__ == "Int8Tensor"


def test_dynamic_int8_include_head_quantizes_head():
    model = quantized("dynamic_int8", include_head=True)
    assert type(model.head[0].weight).__name__ == "Int8Tensor"
    assert type(model.head[3].weight).__name__ == "Int8Tensor"
    ids, mask = random_inputs(8)
    assert torch.isfinite(logits(model, ids, mask)).all()


# ------------------------------------------------------------------------------- static int8


def test_static_int8_scales_come_from_calibration_data():
    ids, mask = random_inputs(64)
    reference = logits(tiny_model(), ids, mask)
    calib_a = batches(*random_inputs(16, seed=3))
    loud_ids, loud_mask = random_inputs(16, seed=4)
    calib_b = batches(loud_ids * 0 + 5, loud_mask)  # one repeated token: very different activations
    model_a = quantize_model(tiny_model(), "static_int8", calib_a)
    model_b = quantize_model(tiny_model(), "static_int8", calib_b)
    scales_a, scales_b = q.activation_scales(model_a), q.activation_scales(model_b)
    assert set(scales_a) == set(model_a.compression_log[-1]["targets"]) and len(scales_a) == 12
    assert any(abs(scales_a[k] - scales_b[k]) > 1e-6 for k in scales_a)
    assert model_a.compression_log[-1]["calibration_batches"] == 2

    out = logits(model_a, ids, mask)
    assert out.dtype == torch.float32
    assert (out.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9


def test_static_int8_num_batches_limits_calibration():
    calib = batches(*random_inputs(32, seed=3))
    model = quantize_model(tiny_model(), "static_int8", calib, num_batches=1)
    assert model.compression_log[-1]["calibration_batches"] == 1
    step = model.compression_log[-1]
    # reduce_range (7-bit activations) depends on the CPU: calibrate the same way the quantizer did
    only_first = q.calibrate_activation_scales(tiny_model(), step["targets"], calib[:1],
                                               reduce_range=step["reduce_range"])
    for name, scale in q.activation_scales(model).items():
        assert scale == pytest.approx(float(only_first[name].flatten()[0]))


# ----------------------------------------------------------------------------------- nf4


def test_nf4_runs_on_cpu_and_shrinks(tmp_path):
    ids, mask = random_inputs(64)
    fp32 = linear_heavy_model()
    reference = logits(fp32, ids, mask)
    save_classifier(fp32, tmp_path / "fp32", None, CARD)
    model = quantize_model(linear_heavy_model(), "nf4")
    out = logits(model, ids, mask)
    assert out.dtype == torch.float32
    assert (out.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9
    assert type(model.encoder.encoder.layer[0].intermediate.dense).__name__ == "NF4Linear"
    save_classifier(model, tmp_path / "nf4", None, CARD)
    targets = model.compression_log[-1]["targets"]
    assert (encoder_linear_bytes(tmp_path / "fp32", targets)
            / encoder_linear_bytes(tmp_path / "nf4", targets)) >= 6
    assert weights_bytes(tmp_path / "fp32") / weights_bytes(tmp_path / "nf4") >= 3.0


def test_nf4_unavailable_raises_one_line_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import now fails like a missing package
    nf4._bnb_probe.cache_clear()
    try:
        model = tiny_model()
        with pytest.raises(QuantizationUnavailable) as err:
            quantize_model(model, "nf4")
        assert isinstance(err.value, HateCompressError)
        assert "bitsandbytes" in err.value.reason and "\n" not in str(err.value)
        assert getattr(model, "compression_log", []) == []
        assert type(model.encoder.encoder.layer[0].attention.self.query) is torch.nn.Linear
    finally:
        nf4._bnb_probe.cache_clear()


# ------------------------------------------------------------------------------ fp16 / bf16


@pytest.mark.parametrize("method,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_forward_and_half_bytes(tmp_path, method, dtype):
    ids, mask = random_inputs(32)
    fp32 = tiny_model()
    reference = logits(fp32, ids, mask)
    model = quantize_model(tiny_model(), method)
    assert all(p.dtype == dtype for p in model.parameters())
    out = logits(model, ids, mask)
    assert out.dtype == torch.float32
    assert (out.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9
    save_classifier(fp32, tmp_path / "fp32", None, CARD)
    save_classifier(model, tmp_path / method, None, CARD)
    assert weights_bytes(tmp_path / "fp32") / weights_bytes(tmp_path / method) == pytest.approx(2, rel=0.02)


# ------------------------------------------------------------------------ save / load round trip


@pytest.mark.parametrize("method", ["none", *METHODS])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, method):
    ids, mask = random_inputs(48)
    model = quantized(method)
    before = logits(model, ids, mask)  # a forward first: bnb repacks 4-bit weights on CPU here
    save_classifier(model, tmp_path, None, CARD)
    assert torch.equal(logits(model, ids, mask), before)  # saving must not disturb the live model
    loaded, tokenizer, meta = load_classifier(tmp_path, with_tokenizer=False)
    after = logits(loaded, ids, mask)
    assert tokenizer is None
    assert [s["kind"] for s in meta["compression"]] == ([] if method == "none" else [f"quant_{method}"])
    assert after.dtype == torch.float32
    assert torch.equal(after.argmax(-1), before.argmax(-1))
    assert torch.allclose(after, before, atol=1e-6, rtol=0)
    # saving the reloaded model again writes the same tensors
    save_classifier(loaded, tmp_path / "again", None, CARD)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as a, \
            safe_open(str(tmp_path / "again" / "model.safetensors"), "pt") as b:
        assert set(a.keys()) == set(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


def test_int8_artifact_stores_int8_tensors(tmp_path):
    save_classifier(quantized("dynamic_int8"), tmp_path, None, CARD)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        key = "encoder.encoder.layer.0.attention.self.query.weight.qdata"
        assert f.get_tensor(key).dtype == torch.int8
        assert "encoder.encoder.layer.0.attention.self.query.weight" not in f.keys()


def test_unpack_reports_missing_quantized_tensor(tmp_path):
    model = quantized("dynamic_int8")
    state = q.pack_state(model)
    del state["encoder.encoder.layer.1.output.dense.weight.scale"]
    fresh = tiny_model()
    q.QUANTIZERS["dynamic_int8"].rebuild(fresh, model.compression_log[-1])
    with pytest.raises(ModelLoadError, match="output.dense.weight.scale"):
        q.unpack_state(fresh, state)


# ---------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("method", METHODS)
def test_count_parameters_of_quantized_model_equals_fp32(method):
    fp32 = count_parameters(tiny_model())
    counts = count_parameters(quantized(method))
    assert counts["params_total"] == fp32["params_total"]
    assert counts["params_nonzero"] <= counts["params_total"]
    # rounding zeroes the tiniest weights: int8 a few (twice as many on CPUs without VNNI, where
    # torchao reduces the range to 7 bits), nf4 (which has an exact 0 level and only 16 levels)
    # those below ~4% of their block's absmax — never a large share
    assert counts["sparsity"] < (0.12 if method == "nf4" else 0.04)


@pytest.mark.parametrize("method", ["dynamic_int8", "static_int8"])
def test_int8_embeddings_shrink_an_embedding_heavy_model_and_round_trip(tmp_path, method):
    """tiny_model's vocabulary table is a large share of its file, as in small students."""
    ids, mask = random_inputs(48)
    save_classifier(tiny_model(), tmp_path / "fp32", None, CARD)
    plain = quantized(method)
    save_classifier(plain, tmp_path / "linears", None, CARD)
    model = quantized(method, include_embeddings=True)
    before = logits(model, ids, mask)
    save_classifier(model, tmp_path / "all", None, CARD)
    with safe_open(str(tmp_path / "all" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("encoder.embeddings.word_embeddings.weight.qdata").dtype == torch.int8
    assert weights_bytes(tmp_path / "all") < 0.8 * weights_bytes(tmp_path / "linears")
    assert weights_bytes(tmp_path / "fp32") / weights_bytes(tmp_path / "all") > 3.0
    reference = logits(tiny_model(), ids, mask)
    assert (before.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9
    loaded, _, _ = load_classifier(tmp_path / "all", with_tokenizer=False)
    assert torch.allclose(logits(loaded, ids, mask), before, atol=1e-6, rtol=0)

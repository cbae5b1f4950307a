"""ONNX export and ONNX Runtime quantization: parity with torch, the artifact, predict without
Lightning/Hydra, and one-line refusals for models that cannot be exported."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from hate_compress.artifacts import export_classifier, load_classifier
from hate_compress.compress import pruning
from hate_compress.compress.quantization import quantize_model
from hate_compress.compress.quantization.onnx import (
    OnnxClassifier,
    OnnxExportError,
    export_onnx,
)
from hate_compress.errors import ConfigError, ModelLoadError
from hate_compress.measure.footprint import measure_latency
from hate_compress.models.classifier import HateClassifier, predict_logits
from hate_compress.onnx_runtime import OnnxPredictor
from hate_compress.pipeline.runner import make_data, run_pipeline
from hate_compress.predict import TorchPredictor, load_predictor
from hate_compress.report.summary import summary_table
from tests.conftest import ROOT, cli_env, compose_cfg
from tests.test_quantization import random_inputs

FAMILIES = {
    "bert": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128),
    "distilbert": dict(n_layers=2, dim=64, n_heads=4, hidden_dim=128),
    "xlm-roberta": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                        intermediate_size=128),
}


def family_model(family: str, pooling: str = "cls", seed: int = 0) -> HateClassifier:
    torch.manual_seed(seed)
    config = AutoConfig.for_model(family, vocab_size=100, **FAMILIES[family])
    encoder = AutoModel.from_config(config)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return HateClassifier(encoder, 3, pooling=pooling).eval()


def example(ids, mask):
    return {"input_ids": ids, "attention_mask": mask}


def max_logit_diff(model, onnx_path, ids, mask) -> float:
    with torch.inference_mode():
        ref = model(ids, mask).logits
    got = OnnxClassifier(onnx_path)(ids, mask).logits
    return float((got - ref).abs().max())


# ------------------------------------------------------------------------------ export parity


@pytest.mark.parametrize("family,pooling", [("bert", "mean"), ("distilbert", "cls"),
                                            ("xlm-roberta", "cls")])
def test_fp32_export_matches_torch_for_every_backbone_family(tmp_path, family, pooling):
    model = family_model(family, pooling)
    ids, mask = random_inputs(n=16, seq=12, vocab=100)
    path = export_onnx(model, tmp_path / "model.onnx", example(ids, mask))
    # other batch size and sequence length than the export example: the axes are dynamic
    ids2, mask2 = random_inputs(n=5, seq=23, vocab=100, seed=3)
    assert max_logit_diff(model, path, ids, mask) <= 1e-4
    assert max_logit_diff(model, path, ids2, mask2) <= 1e-4


def test_structured_pruned_model_exports_with_parity(tmp_path):
    model = family_model("bert")
    pruning.prune_model(model, "structured", 0.5)
    ids, mask = random_inputs(n=8, seq=10, vocab=100)
    path = export_onnx(model, tmp_path / "model.onnx", example(ids, mask))
    assert max_logit_diff(model, path, ids, mask) <= 1e-4


@pytest.mark.parametrize("method,library", [("dynamic_int8", "torchao"), ("fp16", "half")])
def test_torch_quantized_models_are_refused_with_one_line_reason(tmp_path, method, library):
    model = quantize_model(family_model("bert"), method)
    with pytest.raises(OnnxExportError) as err:
        export_onnx(model, tmp_path / "m.onnx", example(*random_inputs(4, 8)))
    message = str(err.value)
    assert library in message and method in message and "\n" not in message
    assert not (tmp_path / "m.onnx").exists()


def test_nf4_step_is_refused_without_bitsandbytes(tmp_path):
    model = family_model("bert")
    model.compression_log = [{"kind": "quant_nf4"}]
    with pytest.raises(OnnxExportError, match="bitsandbytes 4-bit"):
        export_onnx(model, tmp_path / "m.onnx", example(*random_inputs(4, 8)))


def test_unknown_onnx_option_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="quant.bits is not an option of quant.method='onnx_int8'"):
        export_classifier(family_model("bert"), None, tmp_path / "m", "onnx_int8", {"bits": 4},
                          example(*random_inputs(4, 8)), meta={})


def test_onnx_latency_uses_the_requested_threads_and_restores_them(tmp_path):
    model = family_model("bert")
    ids, mask = random_inputs(4, 8)
    onnx_model = OnnxClassifier(export_onnx(model, tmp_path / "m.onnx", example(ids, mask)))
    out = measure_latency(onnx_model, example(ids, mask), batch_sizes=(1, 2), threads=2)
    assert set(out) == {"latency_ms_b1", "latency_ms_b2"} and all(v > 0 for v in out.values())
    assert 2 in onnx_model._sessions and onnx_model.threads == 1


# ------------------------------------------------------------------------- the pipeline stage


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    cfg = compose_cfg(tmp, ["pipeline=full", "quant=onnx_int8", "measure.latency=true",
                            "measure.runs=20", "measure.warmup=1", "measure.batch_sizes=[1,4]",
                            "measure.threads=[1,2]"])
    return run_pipeline(cfg, tmp / "run"), tmp


def test_onnx_int8_stage_parity_and_metrics(onnx_run):
    metrics, tmp = onnx_run
    quant = metrics["quant"]
    assert quant["runtime"] == "onnxruntime" and metrics["kd"]["runtime"] == "torch"
    assert quant["export"]["fp32_max_abs_logit_diff_dev"] <= 1e-4
    assert quant["export"]["agreement_with_fp32_export_dev"] >= 0.99
    for key in ("latency_ms_b1", "latency_ms_b4", "latency_ms_b1_t2", "speedup_b1",
                "speedup_vs_teacher_ort_b1", "speedup_vs_teacher_ort_b4_t2"):
        assert quant[key] > 0, key
    assert set(quant["teacher_ort"]) == {"latency_ms_b1", "latency_ms_b4", "latency_ms_b1_t2",
                                         "latency_ms_b4_t2", "latency_device"}
    assert quant["latency_device"] == quant["teacher_ort"]["latency_device"] == "cpu"
    # the teacher's ONNX reference is cached by its weights
    assert len(list((tmp / "cache" / "onnx_teacher").glob("*/model.onnx"))) == 1
    table = summary_table(metrics)
    assert "| runtime |" in table and re.search(r"\| quant( \(DEGENERATE\))? \| onnxruntime \|", table)
    # measure.threads=[1,2]: the 2-thread latency of the batch sizes the table shows (b1; b4 is
    # not a summary column) follows the 1-thread ones, with the measured value
    header = next(line for line in table.splitlines() if line.startswith("| stage |"))
    assert "| latency b1 ms | latency b32 ms | latency b1 ms (2 threads) | speedup b1 |" in header
    assert "b4 ms (2 threads)" not in header
    quant_line = next(line for line in table.splitlines() if line.startswith("| quant"))
    at = header.split(" | ").index("latency b1 ms (2 threads)")
    assert float(quant_line.split(" | ")[at]) == pytest.approx(quant["latency_ms_b1_t2"], rel=1e-3)


def test_onnx_artifact_layout_and_provenance(onnx_run):
    metrics, tmp = onnx_run
    final = (tmp / "run" / "final_model").resolve()
    assert final == (tmp / "run" / "quant" / "model").resolve()
    assert {"model.onnx", "tokenizer.json", "hate_compress.json"} <= {p.name for p in final.iterdir()}
    assert not list(final.glob("*.safetensors"))
    meta = json.loads((final / "hate_compress.json").read_text())
    assert meta["format"] == "onnx" and meta["label_names"] == ["OTHER", "OFFENSE"]
    assert meta["task"] == "binary" and meta["max_length"] > 0
    assert meta["provenance"]["stages"] == ["teacher", "kd", "quant"]
    assert meta["compression"][-1]["kind"] == "onnx_export"
    assert meta["metrics"]["test"]["macro_f1"] == metrics["quant"]["test"]["macro_f1"]
    with pytest.raises(ModelLoadError, match="ONNX Runtime model"):
        load_classifier(final)


def test_onnx_predictor_reproduces_recorded_metrics_and_torch_source(onnx_run):
    """The serving path (tokenizers + ORT, no torch) scores test exactly as measured in the run,
    and labels like the torch KD model it came from."""
    metrics, tmp = onnx_run
    data = make_data(compose_cfg(tmp, []))
    texts = data.texts("test")
    onnx_pred = OnnxPredictor(tmp / "run" / "final_model")
    kd = load_classifier(metrics["kd"]["artifact"])[0]
    data.set_tokenizers({"m": TorchPredictor(metrics["kd"]["artifact"]).tokenizer})
    torch_logits, labels = predict_logits(kd, data.dataloader("test"), "m")
    onnx_logits = np.concatenate([onnx_pred.logits(texts[i:i + 16]) for i in range(0, len(texts), 16)])
    assert (onnx_logits.argmax(-1) == torch_logits.argmax(-1).numpy()).mean() >= 0.99
    accuracy = float((onnx_logits.argmax(-1) == labels.numpy()).mean())
    assert accuracy == pytest.approx(metrics["quant"]["test"]["accuracy"], abs=1e-6)  # float32 metric


def test_static_int8_agrees_with_its_fp32_source_on_dev(onnx_run, tmp_path):
    metrics, tmp = onnx_run
    model, tokenizer, meta = load_classifier(metrics["kd"]["artifact"])
    data = make_data(compose_cfg(tmp, []))
    data.set_tokenizers({"student": tokenizer})
    batch = next(iter(data.dataloader("dev")))["inputs"]["student"]
    shipped, details = export_classifier(
        model, tokenizer, tmp_path / "model", "onnx_static_int8", {}, batch,
        meta={"task": "binary", "label_names": meta["label_names"]},
        calibration=list(data.dataloader("train"))[:4], input_key="student")
    assert details["calibration_batches"] == 4
    fp32_logits, _ = predict_logits(OnnxClassifier(details["fp32_path"]), data.dataloader("dev"), "student")
    int8_logits, _ = predict_logits(shipped, data.dataloader("dev"), "student")
    assert (fp32_logits.argmax(-1) == int8_logits.argmax(-1)).float().mean() >= 0.99


def test_predict_onnx_dir_imports_neither_lightning_hydra_nor_torch(onnx_run):
    _, tmp = onnx_run
    code = (
        "import sys\n"
        "from hate_compress.predict import main\n"
        f"code = main(['model={tmp / 'run' / 'final_model'}', 'input=-', 'format=jsonl'])\n"
        "heavy = sorted(m for m in ('lightning', 'hydra', 'torch', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "sys.exit(code or (3 if heavy else 0))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input="Du Dummkopf\nSchönes Wetter\n",
                         capture_output=True, text=True, cwd=ROOT, env=cli_env(tmp), timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["Du Dummkopf", "Schönes Wetter"]
    assert all(r["label"] in ("OTHER", "OFFENSE") for r in rows)
    assert abs(rows[0]["prob_OTHER"] + rows[0]["prob_OFFENSE"] - 1) < 1e-5


def test_load_predictor_dispatches_on_model_onnx(onnx_run):
    metrics, tmp = onnx_run
    assert load_predictor(str(tmp / "run" / "final_model")).runtime == "onnxruntime"
    assert load_predictor(metrics["kd"]["artifact"]).runtime == "torch"

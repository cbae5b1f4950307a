"""`python -m hate_compress.predict`: label texts from a file or stdin with any saved model."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from hate_compress.app import make_data, run_pipeline
from hate_compress.metrics import classification_metrics
from hate_compress.models.artifact import load_classifier
from hate_compress.models.classifier import predict_logits
from hate_compress.predict import main
from tests.conftest import ROOT, compose_cfg


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    cfg = compose_cfg(tmp, ["pipeline=full", "prune=magnitude", "prune.finetune_epochs=1",
                            "quant=dynamic_int8"])
    return run_pipeline(cfg, tmp / "run"), tmp


def test_final_model_link_points_at_the_last_stage(pipeline_run):
    metrics, tmp = pipeline_run
    final = tmp / "run" / "final_model"
    assert final.resolve() == (tmp / "run" / "quant" / "model").resolve()
    meta = json.loads((final / "hate_compress.json").read_text())
    assert meta["compression"][-1]["kind"] == "quant_dynamic_int8"
    assert meta["metrics"]["test"]["macro_f1"] == metrics["quant"]["test"]["macro_f1"]
    assert "macro_f1" in (final / "README.md").read_text()


def test_predict_file_to_csv_with_probabilities(pipeline_run, tmp_path, capsys):
    _, tmp = pipeline_run
    source = tmp_path / "in.csv"
    source.write_text("text\nDu bist ein Idiot\nDas Wetter ist schön\n", encoding="utf-8")
    assert main([f"model={tmp / 'run' / 'final_model'}", f"input={source}"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["text"] for r in rows] == ["Du bist ein Idiot", "Das Wetter ist schön"]
    for row in rows:
        assert row["label"] in ("OTHER", "OFFENSE")
        assert abs(float(row["prob_OTHER"]) + float(row["prob_OFFENSE"]) - 1) < 1e-4


def test_reloaded_artifacts_reproduce_the_recorded_metrics(pipeline_run):
    """Each stage's metrics were measured on the in-memory model; the saved artifact, reloaded
    from safetensors (pruned masks baked in, int8 weights repacked), must score the same."""
    metrics, tmp = pipeline_run
    cfg = compose_cfg(tmp, [])
    data = make_data(cfg)
    for stage in ("teacher", "kd", "prune", "quant"):
        model, tok, meta = load_classifier(metrics[stage]["artifact"])
        data.set_tokenizers({"m": tok})
        logits, labels = predict_logits(model, data.dataloader("test"), "m")
        again = classification_metrics(logits, labels, task=meta["task"],
                                       label_names=meta["label_names"],
                                       positive_index=data.positive_index)
        assert again["macro_f1"] == pytest.approx(metrics[stage]["test"]["macro_f1"], abs=1e-9)
        assert again["accuracy"] == pytest.approx(metrics[stage]["test"]["accuracy"], abs=1e-9)


def test_stdin_to_jsonl_via_cli(pipeline_run):
    _, tmp = pipeline_run
    out = subprocess.run(
        [sys.executable, "-m", "hate_compress.predict", f"model={tmp / 'run' / 'final_model'}",
         "input=-", "format=jsonl"],
        input="Du Dummkopf\nSchönes Wetter heute\n", capture_output=True, text=True, cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 2 and {"text", "label", "prob_OTHER", "prob_OFFENSE"} <= set(rows[0])


def test_bad_arguments_give_one_line(tmp_path, capsys):
    assert main(["model=/nonexistent"]) == 2
    assert capsys.readouterr().err.startswith("error: /nonexistent")
    assert main(["modle=x"]) == 2
    assert "unknown argument 'modle=x'" in capsys.readouterr().err

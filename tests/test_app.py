"""The Hydra app end to end on real configs with tiny settings (synthetic sample data)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hate_compress.artifacts import load_classifier
from hate_compress.errors import ConfigError, GateError
from hate_compress.pipeline.runner import run_pipeline
from tests.conftest import ROOT, cli_env


def test_teacher_only_pipeline_writes_metrics_and_model(tiny_cfg, tmp_path):
    cfg = tiny_cfg("pipeline=teacher")
    metrics = run_pipeline(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["run"]["status"] == "ok"
    assert set(saved) >= {"run", "teacher"}
    t = saved["teacher"]
    for split in ("dev", "test"):
        assert 0.0 <= t[split]["macro_f1"] <= 1.0
        assert {"f1_OTHER", "f1_OFFENSE", "hate_f1", "accuracy"} <= set(t[split])
    assert t["size_mb"] > 0 and t["params_total"] > 0
    assert metrics["teacher"]["gate"]["min_f1"] == 0.0
    assert (tmp_path / "run" / "config_resolved.yaml").exists()
    model, tok, meta = load_classifier(t["artifact"])
    assert meta["label_names"] == ["OTHER", "OFFENSE"]
    assert (tmp_path / "run" / "teacher" / "checkpoints" / "last.ckpt").exists()


def test_trained_teacher_is_reused_not_retrained(tiny_cfg, tmp_path):
    cfg = tiny_cfg("pipeline=teacher")
    first = run_pipeline(cfg, tmp_path / "a")["teacher"]
    second = run_pipeline(cfg, tmp_path / "b")["teacher"]
    assert first["artifact"] == second["artifact"]
    assert not (tmp_path / "b" / "teacher" / "checkpoints").exists()  # nothing trained
    assert first["test"]["macro_f1"] == second["test"]["macro_f1"]


def test_teacher_checkpoint_is_loaded(tiny_cfg, tmp_path):
    stored = run_pipeline(tiny_cfg("pipeline=teacher"), tmp_path / "a")["teacher"]["artifact"]
    again = run_pipeline(tiny_cfg("pipeline=teacher", f"teacher.checkpoint={stored}",
                                  "teacher.train.epochs=5"), tmp_path / "b")
    assert again["teacher"]["artifact"] == stored


def test_missing_teacher_checkpoint_is_a_config_error(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="teacher.checkpoint=.*no saved hate_compress model"):
        run_pipeline(tiny_cfg("teacher.checkpoint=/nonexistent/teacher"), tmp_path / "run")


def test_teacher_gate_stops_before_kd(tiny_cfg, tmp_path):
    with pytest.raises(GateError, match=r"teacher gate: dev macro F1 .* < teacher.min_f1=0.99"):
        run_pipeline(tiny_cfg("pipeline=teacher_kd", "teacher.min_f1=0.99"), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "kd" not in saved and saved["teacher"]["gate"]["passed"] is False


def test_unknown_stage_and_bad_order_are_rejected(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="unknown stage"):
        run_pipeline(tiny_cfg("stages=[teacher,distill]"), tmp_path / "a")
    with pytest.raises(ConfigError, match="order"):
        run_pipeline(tiny_cfg("stages=[teacher,quant,kd]"), tmp_path / "b")


def run_cli(tmp_path, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "hate_compress", *args], cwd=ROOT,
                          env=cli_env(tmp_path), capture_output=True, text=True, timeout=timeout)


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = run_cli(tmp_path, "teacher=gbert", "student=sahajbert", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "name_or_path: deepset/gbert-base" in out.stdout
    assert "name_or_path: neuropark/sahajBERT" in out.stdout


def test_unknown_group_option_lists_choices(tmp_path):
    out = run_cli(tmp_path, "teacher=gbertt")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: teacher=gbertt: no such option; choose from bangla_bert_base, banglabert, char_ngram, "
            "ensemble, gbert, "
        "tiny_teacher, tiny_teacher_small, xlmr"]
    multirun = run_cli(tmp_path, "-m", "student=tiny_student,tiny_studnet")
    assert multirun.returncode == 2 and "student=tiny_studnet: no such option" in multirun.stderr


def test_hub_model_fails_fast_with_one_line(tmp_path):
    out = run_cli(tmp_path, "teacher=gbert", "student=sahajbert", "data=synthetic",
                  f"paths.output_root={tmp_path}", timeout=120)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr[-2000:]
    assert "could not load teacher model 'deepset/gbert-base'" in errors[0]
    assert "teacher.backbone.name_or_path" in errors[0]


def test_unset_data_dir_gives_a_hint(tmp_path):
    out = run_cli(tmp_path, "data=germeval_coarse", f"paths.output_root={tmp_path}")
    assert out.returncode == 2
    assert "error: paths.data_dir is not set" in out.stderr
    assert "HATE_COMPRESS_DATA_DIR" in out.stderr


def test_kd_stage_records_agreement_and_terms(tiny_cfg, tmp_path):
    metrics = run_pipeline(tiny_cfg("pipeline=teacher_kd", "kd=multi_level"), tmp_path / "run")
    kd = metrics["kd"]
    assert 0 <= kd["test"]["agreement"] <= 1
    assert kd["shared_tokenizer"] is True
    assert kd["teacher_cache"] is False  # token-level terms need the live teacher
    logged = (tmp_path / "run" / "kd" / "logs" / "metrics.csv").read_text().splitlines()[0]
    for term in ("train/ce", "train/logit", "train/hidden", "train/attention"):
        assert term in logged


def test_temperature_study_command(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "hate_compress.temperature", "data=synthetic",
         f"paths.output_root={tmp_path}", "run_name=temp", "temperatures=[1,4,20]",
         "teacher.backbone.scratch.num_hidden_layers=1", "teacher.backbone.scratch.hidden_size=32",
         "teacher.backbone.scratch.intermediate_size=64", "teacher.train.epochs=1", "trainer=fast"],
        cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "runs" / "temp" / "temperature_study.json").read_text())["rows"]
    assert [r["temperature"] for r in rows] == [1.0, 4.0, 20.0]
    assert rows[0]["entropy"] <= rows[1]["entropy"] <= rows[2]["entropy"]
    assert (tmp_path / "runs" / "temp" / "temperature_study.png").stat().st_size > 1000
    assert "| 20 |" in out.stdout


def test_custom_student_size_from_config(tiny_cfg, tmp_path):
    metrics = run_pipeline(tiny_cfg("pipeline=teacher_kd", "student=custom", "student.layers=1",
                                    "student.hidden=48", "student.heads=2",
                                    "student.intermediate=96"), tmp_path / "run")
    model, _, _ = load_classifier(metrics["kd"]["artifact"])
    assert (model.num_layers, model.hidden_size) == (1, 48)
    assert model.encoder.config.intermediate_size == 96
    assert metrics["kd"]["shared_tokenizer"] is True  # custom students read the teacher's tokens


def test_kd_none_is_the_label_only_control(tiny_cfg, tmp_path):
    metrics = run_pipeline(tiny_cfg("pipeline=teacher_kd", "kd=none"), tmp_path / "run")
    assert metrics["kd"]["kd"] == "none"
    assert metrics["kd"]["teacher_cache"] is False  # no term needs the teacher
    header = (tmp_path / "run" / "kd" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/ce" in header and "train/logit" not in header
    assert 0 <= metrics["kd"]["test"]["agreement"] <= 1  # still measured against the teacher


def test_backbone_from_a_local_directory(tiny_cfg, tmp_path):
    """`name_or_path` may be a save_pretrained directory: how users run hub models offline."""
    from transformers import BertConfig, BertModel

    from hate_compress.models.tokenizer import train_wordpiece_tokenizer

    local = tmp_path / "my-bert"
    tok = train_wordpiece_tokenizer(["Du bist ein Idiot", "Das Wetter ist schön"] * 5,
                                    tmp_path / "tok", vocab_size=80, min_frequency=1)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(local)
    tok.save_pretrained(local)
    metrics = run_pipeline(tiny_cfg("pipeline=teacher", f"teacher.backbone.name_or_path={local}",
                                    "teacher.backbone.scratch=null",
                                    "teacher.backbone.tokenizer=null"), tmp_path / "run")
    model, _, _ = load_classifier(metrics["teacher"]["artifact"])
    assert (model.num_layers, model.hidden_size) == (1, 32)

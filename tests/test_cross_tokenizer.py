"""KD across vocabularies (GBERT/XLM-R teachers -> SahajBERT/DistilBERT students), offline:
the tiny teacher and `tiny_student_xtok` train two different WordPiece tokenizers."""

from __future__ import annotations

import pytest

from hate_compress.errors import ConfigError
from hate_compress.pipeline.runner import run_pipeline

XTOK = ["pipeline=teacher_kd", "student=tiny_student_xtok",
        "student.backbone.tokenizer.vocab_size=500", "student.backbone.scratch.hidden_size=48"]


def test_logit_kd_across_tokenizers_uses_both_tokenizations_and_the_cache(tiny_cfg, tmp_path):
    metrics = run_pipeline(tiny_cfg(*XTOK, "kd=logit"), tmp_path / "run")
    kd = metrics["kd"]
    assert kd["shared_tokenizer"] is False
    assert kd["teacher_cache"] is True
    assert 0 <= kd["test"]["agreement"] <= 1
    caches = list((tmp_path / "cache" / "teacher_outputs").glob("*.safetensors"))
    assert len(caches) == 1
    # a second student reuses the cached teacher outputs (same teacher, data, tokenizer)
    run_pipeline(tiny_cfg(*XTOK, "kd=logit", "student.head.hidden=24"), tmp_path / "run2")
    assert list((tmp_path / "cache" / "teacher_outputs").glob("*.safetensors")) == caches


def test_pooled_hidden_kd_across_tokenizers(tiny_cfg, tmp_path):
    metrics = run_pipeline(tiny_cfg(*XTOK, "kd=hidden"), tmp_path / "run")
    header = (tmp_path / "run" / "kd" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/hidden" in header
    assert metrics["kd"]["teacher_cache"] is True  # pooled hidden states are cacheable


def test_attention_kd_across_tokenizers_stops_unless_skipped(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="share a tokenizer"):
        run_pipeline(tiny_cfg(*XTOK, "kd=attention"), tmp_path / "a")
    metrics = run_pipeline(tiny_cfg(*XTOK, "kd=attention", "kd.terms.attention.on_mismatch=skip"),
                           tmp_path / "b")
    assert metrics["kd"]["skipped_terms"] == ["attention"]


def test_self_distillation_by_config_alone(tiny_cfg, tmp_path):
    metrics = run_pipeline(tiny_cfg("pipeline=teacher_kd", "student=born_again"), tmp_path / "r")
    assert metrics["kd"]["shared_tokenizer"] is True
    assert metrics["kd"]["params_total"] == metrics["teacher"]["params_total"]
    assert metrics["run"]["student"] == "born_again"

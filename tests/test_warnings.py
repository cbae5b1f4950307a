"""Warnings a user can act on, not noise (issue 12, item 8).

transformers 5 printed a LOAD REPORT table for the classification/pretraining head we replace
anyway; Lightning warned "Found N module(s) in eval mode" when a stored teacher (reloaded in eval
mode) was fine-tuned by pruning, which also meant it trained without dropout.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForSequenceClassification

from hate_compress.models.backbone import load_pretrained_encoder
from hate_compress.pipeline.runner import run_pipeline
from tests.conftest import compose_cfg


@pytest.fixture
def checkpoint(tmp_path):
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, vocab_size=100)
    BertForSequenceClassification(config).save_pretrained(str(tmp_path / "ckpt"))
    return tmp_path / "ckpt"


def test_replaced_head_is_not_reported(checkpoint, capfd, caplog):
    with caplog.at_level(logging.WARNING):
        encoder = load_pretrained_encoder(str(checkpoint), role="student")
    assert encoder.config.hidden_size == 32
    assert "LOAD REPORT" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("hate_compress")]


def test_missing_encoder_weights_are_reported_in_one_line(checkpoint, capfd, caplog):
    weights = checkpoint / "model.safetensors"
    state = load_file(str(weights))
    dropped = [k for k in state if "encoder.layer.0.attention.self.query" in k]
    save_file({k: v for k, v in state.items() if k not in dropped}, str(weights), metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING):
        load_pretrained_encoder(str(checkpoint), role="student")
    assert "LOAD REPORT" not in capfd.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hate_compress")]
    assert len(lines) == 1 and "2 encoder weight(s) not in the checkpoint start random" in lines[0]


def test_fine_tuning_a_stored_teacher_trains_in_train_mode(tmp_path):
    run_pipeline(compose_cfg(tmp_path, ["pipeline=teacher"]), tmp_path / "first")
    cfg = compose_cfg(tmp_path, ["pipeline=teacher_prune_quant", "prune=magnitude",
                                 "prune.finetune_epochs=1", "quant=none"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        run_pipeline(cfg, tmp_path / "second")
    eval_mode = [str(w.message) for w in caught if "in eval mode" in str(w.message)]
    assert not eval_mode, eval_mode


def test_kd_from_a_checkpoint_with_a_head_is_quiet(tmp_path, capfd, caplog):
    """A whole KD run whose student starts from a checkpoint that has a classification head (the
    head we replace): no LOAD REPORT, no "module(s) in eval mode" for the frozen teacher (it is
    not a submodule of the trained LightningModule), no load warning, no larger-student warning."""
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, vocab_size=1000)
    BertForSequenceClassification(config).save_pretrained(str(tmp_path / "student_ckpt"))
    cfg = compose_cfg(tmp_path, ["pipeline=teacher_kd", "student.backbone.scratch=null",
                                 f"student.backbone.name_or_path={tmp_path / 'student_ckpt'}"])
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        metrics = run_pipeline(cfg, tmp_path / "run")
    assert metrics["run"]["status"] == "ok" and "skipped" not in metrics["kd"]
    out = capfd.readouterr()
    assert "LOAD REPORT" not in out.out + out.err
    eval_mode = [str(w.message) for w in caught if "in eval mode" in str(w.message)]
    assert not eval_mode, eval_mode
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("hate_compress")
            and ("weight" in r.getMessage() or "larger than" in r.getMessage())]
    assert not ours, ours


def test_a_normal_teacher_student_pair_does_not_warn_about_size(tmp_path, caplog):
    """The larger-student warning (tests/test_preflight_models.py) must stay rare to be read:
    the shipped offline pair (4x256 teacher, 2x128 student) does not trigger it."""
    from hate_compress.pipeline.runner import make_data
    from hate_compress.stages.kd import check_kd_models
    from hate_compress.stages.state import Run

    cfg = compose_cfg(tmp_path, ["pipeline=teacher_kd"], tiny=False)
    with caplog.at_level(logging.WARNING):
        check_kd_models(Run(cfg, tmp_path / "run", make_data(cfg)))
    assert not [r for r in caplog.records if "larger than" in r.getMessage()]
    swapped = compose_cfg(tmp_path, ["pipeline=teacher_kd", "teacher=tiny_teacher_small"], tiny=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_kd_models(Run(swapped, tmp_path / "run2", make_data(swapped)))
    assert not [r for r in caplog.records if "larger than" in r.getMessage()], "2x192 vs 2x128"

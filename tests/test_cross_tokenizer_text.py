"""Across tokenizers, teacher and student read the same text, token-level terms are refused
before anything trains, and a skipped attention term costs nothing (cache on, no eager)."""

from __future__ import annotations

import json

import pytest

from hate_compress.data.datamodule import shared_prefixes
from hate_compress.errors import ConfigError
from hate_compress.models.backbone import build_tokenizer
from hate_compress.pipeline.runner import make_data, run_pipeline
from hate_compress.stages.common import plain
from tests.test_cross_tokenizer import XTOK


def tokenizers(cfg, data):
    cache = cfg.paths.cache_dir
    teacher = build_tokenizer(plain(cfg.teacher.backbone), role="teacher",
                              train_texts=data.train_texts, cache_dir=cache)
    student = build_tokenizer(plain(cfg.student.backbone), role="student",
                              train_texts=data.train_texts, cache_dir=cache)
    return teacher, student


def decoded_words(tok, ids) -> list[str]:
    return tok.decode(ids, skip_special_tokens=True).lower().split()


def test_teacher_and_student_read_the_same_text(tiny_cfg):
    cfg = tiny_cfg(*XTOK, "data.max_length=12")
    data = make_data(cfg)
    teacher, student = tokenizers(cfg, data)
    texts = data.texts("train")
    data.set_tokenizers({"teacher": teacher, "student": student})
    cut = data.model_texts("train")
    assert len(cut) == len(texts) and sum(a != b for a, b in zip(cut, texts)) > 10
    loader = data.dataloader("train", batch_size=len(texts))
    batch = next(iter(loader))
    for row, text in enumerate(cut):
        assert texts[row].startswith(text)
        ids = {k: batch["inputs"][k]["input_ids"][row][batch["inputs"][k]["attention_mask"][row]
                                                       .bool()].tolist() for k in ("teacher", "student")}
        # each model's tokens spell the whole cut text: nothing of it is truncated away
        words = [decoded_words(tok, ids[k]) for k, tok in (("teacher", teacher), ("student", student))]
        assert words[0] == words[1] == text.lower().split() or "[unk]" in " ".join(sum(words, []))
        assert len(ids["teacher"]) <= 12 and len(ids["student"]) <= 12


def test_shared_prefixes_keep_texts_both_keep_whole(tiny_cfg):
    cfg = tiny_cfg(*XTOK)
    data = make_data(cfg)
    teacher, student = tokenizers(cfg, data)
    texts = ["ein sehr langer satz " * 10, "kurz", "x" * 200]
    cut = shared_prefixes(texts, [teacher, student], 16)
    assert cut[1] == "kurz"
    for text, short in zip(texts, cut):
        assert text.startswith(short) and len(short) < len(text) or text == short
        for tok in (teacher, student):
            full = tok(short, truncation=False)["input_ids"]
            assert len(full) <= 16


def test_hidden_token_level_across_tokenizers_is_refused_before_the_teacher_trains(tiny_cfg,
                                                                                  tmp_path):
    cfg = tiny_cfg(*XTOK, "kd=hidden", "kd.terms.hidden.token_level=true")
    with pytest.raises(ConfigError, match=r"kd.terms.hidden.token_level=true .* different "
                                          r"tokenizers"):
        run_pipeline(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "teacher").exists()  # nothing trained
    assert not (tmp_path / "cache" / "teachers").exists()
    status = json.loads((tmp_path / "run" / "metrics.json").read_text())["run"]
    assert status["status"] == "failed"


def test_skipped_attention_keeps_the_cache_and_sdpa(tiny_cfg, tmp_path, monkeypatch):
    from hate_compress.models.classifier import HateClassifier

    eager = []
    monkeypatch.setattr(HateClassifier, "use_eager_attention", lambda self: eager.append(self))
    metrics = run_pipeline(tiny_cfg(*XTOK, "kd=attention", "kd.terms.attention.on_mismatch=skip"),
                           tmp_path / "run")
    assert metrics["kd"]["skipped_terms"] == ["attention"]
    assert metrics["kd"]["teacher_cache"] is True
    assert eager == []

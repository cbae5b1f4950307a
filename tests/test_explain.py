"""Explanation similarity (hate_compress/measure/explain.py) and what compression forgets
(measure/forgetting.py), checked on cases small enough to work out by hand."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hate_compress.measure.explain import (
    NotExplainable,
    cosine,
    explain_words,
    similarity,
    to_word_scores,
    token_words,
    top_k_overlap,
    word_spans,
)
from hate_compress.measure.forgetting import forgetting, group_retention
from hate_compress.models.tokenizer import train_wordpiece_tokenizer

TEXTS = ["du bist ein Idiot und Lügner", "schönes Wetter heute in Köln",
         "diese Leute sind dumm und hässlich", "Ein ganz normaler Satz über Politik"] * 10


class OneTokenModel(nn.Module):
    """Class 1's logit is 3 x (sum of embedding dim 0 over the post); only the pieces of
    `word` have a non-zero embedding, so the logit depends on that word and nothing else."""

    def __init__(self, tokenizer, word: str):
        super().__init__()
        emb = nn.Embedding(len(tokenizer), 4)
        nn.init.zeros_(emb.weight)
        with torch.no_grad():
            for piece in tokenizer(word, add_special_tokens=False)["input_ids"]:
                emb.weight[piece, 0] = 1.0
        self.encoder = SimpleNamespace(get_input_embeddings=lambda: emb)
        self.emb = emb

    def forward(self, input_ids, attention_mask):
        signal = (self.emb(input_ids)[..., 0] * attention_mask).sum(-1)
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(signal), 3 * signal], -1))


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """The offline teacher's tokenizer (lowercase) and tiny_student_xtok's (cased, smaller)."""
    cache = tmp_path_factory.mktemp("tok")
    teacher = train_wordpiece_tokenizer(TEXTS, cache, vocab_size=300, lowercase=True,
                                        min_frequency=1)
    student = train_wordpiece_tokenizer(TEXTS, cache, vocab_size=90, lowercase=False,
                                        min_frequency=2)
    return teacher, student


def test_one_token_model_puts_all_attribution_on_that_word(tokenizers):
    tok = tokenizers[0]
    model = OneTokenModel(tok, "idiot")
    text = "du bist ein Idiot und Lügner"
    (exp,) = explain_words(model, tok, [text], [[1]], steps=16, max_length=64)
    words = text.split()
    assert int(np.argmax(exp.scores)) == words.index("Idiot")
    others = np.delete(exp.scores, words.index("Idiot"))
    assert np.all(others == 0.0)
    # completeness: attributions sum to logit(post) - logit(baseline) = 3 x (#pieces of "idiot")
    pieces = len(tok("idiot", add_special_tokens=False)["input_ids"])
    assert exp.scores.sum() == pytest.approx(3.0 * pieces, rel=1e-4)


def test_word_mapping_across_two_tokenizers(tokenizers):
    teacher, student = tokenizers
    text = "Diese  Politiker lügen IMMER!! schönes-Wetter"
    spans = word_spans(text)
    assert [text[s:e] for s, e in spans] == ["Diese", "Politiker", "lügen", "IMMER!!",
                                             "schönes-Wetter"]
    lengths = []  # token sequences
    for tok in (teacher, student):
        enc = tok(text, return_offsets_mapping=True)
        words = token_words(enc["offset_mapping"], spans)
        lengths.append(tok.convert_ids_to_tokens(enc["input_ids"]))
        assert words[0] == -1 and words[-1] == -1  # [CLS], [SEP]
        for j, (start, end) in enumerate(spans):  # every word is covered exactly by its tokens
            mine = [o for o, w in zip(enc["offset_mapping"], words) if w == j]
            assert min(s for s, _ in mine) == start and max(e for _, e in mine) == end
        scores, seen = to_word_scores([1.0] * len(words), words, len(spans))
        assert seen.all() and scores.sum() == len(words) - 2
    assert lengths[0] != lengths[1]  # really two different tokenizations of the same words


def test_cosine_and_top_k_overlap_by_hand():
    a = np.array([1.0, 0.0, -2.0, 0.5, 0.0, 3.0])
    b = np.array([1.0, 0.0, -2.0, 0.5, 0.0, 3.0]) * 4
    assert cosine(a, b) == pytest.approx(1.0)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, np.zeros(6)) is None  # undefined, never a silent 0
    # top-2 by |score|: a -> {5, 2}; c -> {5, 0}
    c = np.array([2.5, 0.0, 0.1, 0.0, 0.0, 3.0])
    assert top_k_overlap(a, c, k=2) == 0.5
    assert top_k_overlap(a[:3], c[:3], k=5) == 1.0  # k capped at the 3 words: all shared


def test_similarity_leaves_undefined_pairs_out(tokenizers):
    tok = tokenizers[0]
    texts = ["du bist ein Idiot", "schönes Wetter heute"]
    idiot = explain_words(OneTokenModel(tok, "idiot"), tok, texts, [[1], [1]], steps=8,
                          max_length=32)
    stats = similarity(idiot, idiot)
    # the second post has no "idiot": all-zero explanation, left out and counted
    assert stats["n"] == 1 and stats["n_undefined"] == 1 and stats["cosine_mean"] == 1.0


def test_int8_model_is_not_explained_as_zero(tokenizers):
    """torchao int8 kernels have no gradient: that must raise, not give all-zero attributions."""
    from hate_compress.compress.quantization import quantize_model
    from hate_compress.models.backbone import build_scratch_encoder
    from hate_compress.models.classifier import HateClassifier

    tok = tokenizers[0]
    torch.manual_seed(0)
    encoder = build_scratch_encoder({"model_type": "bert", "num_hidden_layers": 1,
                                     "hidden_size": 32, "num_attention_heads": 2,
                                     "intermediate_size": 64}, len(tok))
    model = HateClassifier(encoder, 2)
    assert explain_words(model, tok, TEXTS[:2], [[1], [0]], steps=4, max_length=32)
    quantize_model(model, "dynamic_int8", calibration_batches=[], input_key="teacher")
    with pytest.raises(NotExplainable, match="no gradient"):
        explain_words(model, tok, TEXTS[:2], [[1], [0]], steps=4, max_length=32)


def test_disagreements_csv_matches_predictions(tmp_path):
    names = ["OTHER", "OFFENSE"]
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    model = torch.tensor([[0.0, 1.0], [0.0, 2.0], [1.0, 0.0], [2.0, 0.0]])
    labels = np.array([0, 1, 1, 1])
    metrics = {"f1_OTHER": 0.5, "f1_OFFENSE": 0.4}
    result = forgetting(split="test", model_metrics=metrics,
                        teacher_metrics={"f1_OTHER": 0.8, "f1_OFFENSE": 0.4},
                        model_logits=model, teacher_logits=teacher, labels=labels,
                        texts=["a", "b, \"quoted\"", "c\nline", "d"], rows=[2, 3, 5, 7],
                        task="binary", label_names=names,
                        meta={"to_whom": ["Individual", "None", "Individual", "None"]},
                        out_dir=tmp_path)
    with open(tmp_path / "disagreements.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # examples 0 and 2 differ; teacher confidence softmax(3) > softmax(2): row 5 first
    assert [r["row"] for r in rows] == ["5", "2"]
    first = rows[0]
    assert first["text"] == "c\nline" and first["gold"] == "OFFENSE"
    assert first["teacher_pred"] == "OFFENSE" and first["model_pred"] == "OTHER"
    assert float(first["teacher_prob"]) == pytest.approx(torch.softmax(teacher[2], 0)[1].item(),
                                                         abs=1e-6)
    assert float(first["model_prob"]) == pytest.approx(torch.softmax(model[2], 0)[0].item(),
                                                       abs=1e-6)
    assert first["teacher_correct"] == "True" and first["model_correct"] == "False"
    assert result["n_disagreements"] == 2
    # teacher right on 0,1,2 (3); the model loses 0 and 2; teacher wrong on 3, model too
    assert result["flip_rate_lost"] == pytest.approx(2 / 3)
    assert result["flip_rate_gained"] == 0.0
    assert result["f1_change"] == pytest.approx({"OTHER": -0.3, "OFFENSE": 0.0})
    assert set(result["groups"]["to_whom"]) == {"Individual", "None"}


def test_group_retention_by_hand():
    labels = np.array([1, 1, 0, 1, 0])
    teacher = np.array([1, 1, 0, 1, 0])
    model = np.array([1, 0, 0, 1, 0])
    groups = ["Individual", "Individual", "None", "Community", "None"]
    out = group_retention(groups, labels, teacher, model, 2)
    assert list(out) == ["Individual", "None", "Community"]  # largest group first
    # Individual: only class 1 present; model F1 = 2*1/(2*1+1) = 2/3
    assert out["Individual"]["retention"] == pytest.approx(2 / 3)
    assert out["None"]["retention"] == 1.0 and out["Community"]["n"] == 1


def test_banglamultihate_keeps_to_whom(shared_data, monkeypatch):
    from hate_compress.pipeline.runner import make_data
    from tests.conftest import compose_cfg

    monkeypatch.setenv("HATE_COMPRESS_DATA_DIR", str(shared_data))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(compose_cfg(Path(tmp), ["data=banglamultihate_binary"]))
    meta = data.meta("test")["to_whom"]
    assert len(meta) == data.split_sizes["test"]
    assert {"Individual", "None"} <= set(meta)


def test_classes_to_explain_and_seeded_sample():
    from hate_compress.measure.analysis import classes_to_explain, sample_positions

    logits = torch.tensor([[2.0, -1.0, 3.0], [-2.0, -1.0, -3.0]])
    assert classes_to_explain(logits, "multiclass") == [[2], [1]]
    # multilabel: every active label; none active -> the most probable one
    assert classes_to_explain(logits, "multilabel") == [[0, 2], [1]]
    assert sample_positions(10, 20, 0) == list(range(10))
    picked = sample_positions(1000, 5, 42)
    assert picked == sample_positions(1000, 5, 42) == sorted(picked) and len(set(picked)) == 5
    assert picked != sample_positions(1000, 5, 43)

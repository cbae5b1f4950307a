"""The training module under KD: the teacher is frozen, unsaved, outside the optimizer."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from transformers import BertConfig, BertModel

from hate_compress.kd.teacher import CachedTeacher, LiveTeacher, TeacherSource
from hate_compress.kd.terms import build_composite_loss
from hate_compress.models.classifier import HateClassifier
from hate_compress.training.module import ClassifierModule


def tiny(hidden=32, layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=2 * hidden)
    model = HateClassifier(BertModel(cfg, add_pooling_layer=False), 2, head_hidden=16)
    model.use_eager_attention()
    return model


def batches(n=6, bs=4, seq=7):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        ids = torch.randint(5, 50, (bs, seq), generator=g)
        mask = torch.ones(bs, seq, dtype=torch.long)
        mask[0, -2:] = 0
        inputs = {"input_ids": ids, "attention_mask": mask}
        out.append({"idx": torch.arange(i * bs, (i + 1) * bs),
                    "labels": torch.randint(0, 2, (bs,), generator=g),
                    "inputs": {"teacher": inputs, "student": inputs}})
    return out


def loader(items):
    """Pre-built batches, yielded as they are."""
    return DataLoader(items, batch_size=None)


def kd_module(teacher, student, kd_cfg):
    loss = build_composite_loss(kd_cfg, task="binary", num_labels=2,
                                student_dims=(student.num_layers, student.hidden_size),
                                teacher_dims=(teacher.num_layers, teacher.hidden_size),
                                shared_tokenizer=True)
    source = TeacherSource(LiveTeacher(teacher, "teacher", hidden=True, attentions=True))
    return ClassifierModule(student, loss, task="binary", label_names=["a", "b"],
                            positive_index=1, teacher_source=source, lr=1e-3)


MULTI = {"alpha": 0.5, "temperature": 2.0,
         "terms": {"logit": {}, "hidden": {}, "attention": {}}}


def test_teacher_never_changes_and_is_not_saved_or_optimised():
    teacher, student = tiny(hidden=48, layers=4, seed=0), tiny(seed=1)
    before = copy.deepcopy(teacher.state_dict())
    student_before = copy.deepcopy(student.state_dict())
    module = kd_module(teacher, student, MULTI)
    data = batches()
    trainer = pl.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=loader(data), val_dataloaders=loader(data[:1]))

    for name, tensor in teacher.state_dict().items():
        assert torch.equal(tensor, before[name]), f"teacher parameter {name} changed"
    assert any(not torch.equal(t, student_before[k]) for k, t in student.state_dict().items())
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    # the hidden-term projections (48 -> 32 differ) are trained with the student
    assert optimised & {id(p) for p in module.loss.parameters()}
    assert not any(k.startswith("teacher") for k in module.state_dict())


def test_cached_teacher_outputs_equal_live_outputs(tmp_path):
    teacher = tiny(hidden=48, seed=3)
    data = batches(n=3)
    cache = CachedTeacher.build(teacher, {"train": data}, "teacher", tmp_path / "c.safetensors",
                                pooling="cls")
    live = LiveTeacher(teacher, "teacher", hidden=True, attentions=False)
    shuffled = {**data[1], "idx": data[1]["idx"]}
    got, want = cache.outputs(shuffled, "train"), live.outputs(shuffled, "train")
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=1e-6)
    for layer, hidden in enumerate(want.hidden_states):
        torch.testing.assert_close(got.hidden_states[layer][:, 0], hidden[:, 0], rtol=0, atol=1e-6)
    reloaded = CachedTeacher.build(tiny(hidden=48, seed=99), {"train": data}, "teacher",
                                   tmp_path / "c.safetensors", pooling="cls")
    torch.testing.assert_close(reloaded.outputs(shuffled, "train").logits, want.logits)


def test_nan_loss_stops_with_a_clear_error():
    import pytest

    from hate_compress.errors import TrainingDiverged

    student = tiny()
    loss = build_composite_loss({"terms": {}}, task="binary", num_labels=2,
                                student_dims=(2, 32))
    module = ClassifierModule(student, loss, task="binary", label_names=["a", "b"], lr=1e-3)
    with torch.no_grad():
        student.head[-1].weight.fill_(float("nan"))
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(TrainingDiverged, match="loss became nan at step 0"):
        trainer.fit(module, train_dataloaders=loader(batches(n=2)))


def test_soft_label_entropy_by_hand():
    import math

    from hate_compress.temperature import soft_label_entropy, study

    logits = torch.tensor([[2.0, 0.0]])
    for t in (1.0, 4.0):
        p = torch.softmax(logits / t, -1)[0].tolist()
        want = -sum(x * math.log(x) for x in p)
        assert abs(soft_label_entropy(logits, t, "binary") - want) < 1e-6
    rows = study(torch.tensor([[3.0, 0.0, -1.0], [0.5, 2.0, 0.0]]), "multiclass", [1, 2, 5, 20])
    values = [r["normalized_entropy"] for r in rows]
    assert values == sorted(values) and values[-1] < 1.0 and values[-1] > 0.99
    sig = soft_label_entropy(torch.tensor([[0.0]]), 1.0, "multilabel")
    assert abs(sig - math.log(2)) < 1e-6


def test_wordpiece_vocabulary_is_deterministic(tmp_path):
    from hate_compress.models.tokenizer import train_wordpiece_tokenizer

    texts = ["Du bist ein Idiot", "Das Wetter in Berlin ist schön", "Ein Idiot bist du"] * 5
    a = train_wordpiece_tokenizer(texts, tmp_path / "a", vocab_size=200, min_frequency=2)
    b = train_wordpiece_tokenizer(texts, tmp_path / "b", vocab_size=200, min_frequency=2)
    assert a.get_vocab() == b.get_vocab() and 60 < len(a) <= 200
    assert a.tokenize("du bist") == ["du", "bist"]
    assert a.unk_token_id not in a("Das Wetter")["input_ids"]


def test_wordpiece_keeps_bangla_vowel_signs(tmp_path):
    from hate_compress.models.tokenizer import train_wordpiece_tokenizer

    texts = ["এই সরকার কে যারা নির্লজ্জের মত সাপোর্ট দিয়েছে", "তাদের আরো এমন রাস্তায় কাঁদতে হবে"] * 5
    tok = train_wordpiece_tokenizer(texts, tmp_path, vocab_size=300, min_frequency=2)
    word = "নির্লজ্জের"
    assert tok.decode(tok(word)["input_ids"], skip_special_tokens=True).replace(" ", "") == word

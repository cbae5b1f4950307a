"""Text-level teachers (issue 16): `teacher=char_ngram` and `teacher=ensemble`.

The char_ngram model must round-trip through JSON + safetensors exactly and never be pickled;
cross-fitted train targets must be the predictions of models that did not see the row; the
ensemble's soft target must be the weighted mean of its members' temperature-scaled
probabilities; and both must run through the real pipeline as logit-KD teachers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.model_selection import StratifiedKFold

from hate_compress.kd.ensemble import EnsembleModel, combine_logits
from hate_compress.models.char_ngram import DEFAULTS, CharNgramModel
from hate_compress.pipeline.runner import run_pipeline

SAMPLE = Path(__file__).resolve().parents[1] / "hate_compress" / "data" / "sample"

# conftest.TINY shrinks a neural teacher's backbone, which a text-level teacher does not have
LIGHT = ("trainer=fast", "measure.latency=false", "student.train.epochs=1", "teacher.min_f1=0.0")


def light(tiny_cfg, *overrides):
    return tiny_cfg(*LIGHT, *overrides, tiny=False)


def sample_texts(n: int = 200):
    import csv

    with open(SAMPLE / "synthetic_train.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:n]
    texts = [r["text"] for r in rows]
    labels = np.array([1 if r["label"] == "OFFENSE" else 0 for r in rows])
    return texts, labels


def no_pickle(directory: Path) -> None:
    for path in directory.rglob("*"):
        assert path.suffix not in {".pkl", ".pickle", ".joblib", ".bin", ".pt"}, path
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), f"{path} looks like a pickle"


def test_char_ngram_saves_without_pickle_and_round_trips_exactly(tmp_path):
    texts, labels = sample_texts()
    model = CharNgramModel.fit(texts, labels, task="binary", num_labels=2, seed=0)
    model.save(tmp_path / "m")
    no_pickle(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["char_ngram.json",
                                                                  "char_ngram.safetensors"]
    loaded = CharNgramModel.load(tmp_path / "m")
    unseen = ["ganz neue Sätze über Hamburg", "du bist ein Idiot", ""]
    for batch in (texts, unseen):
        assert np.array_equal(model.decision(batch), loaded.decision(batch))
    # it learned something: in-sample accuracy of this separable sample
    assert (model.decision(texts).argmax(1) == labels).mean() > 0.9


def test_char_ngram_binary_logits_are_a_softmax_pair(tmp_path):
    """Binary: two logits (+-d/2) whose softmax is sklearn's sigmoid(d)."""
    from sklearn.linear_model import LogisticRegression

    from hate_compress.models.char_ngram import features, fit_vocabularies

    texts, labels = sample_texts()
    model = CharNgramModel.fit(texts, labels, task="binary", num_labels=2, seed=0)
    settings = dict(DEFAULTS)
    vocab, idf = fit_vocabularies(texts, settings)
    x = features(texts, vocab, idf, settings)
    reference = LogisticRegression(C=3.0, class_weight="balanced", max_iter=2000,
                                   random_state=0).fit(x, labels)
    ours = torch.softmax(model.predict_texts(texts).double(), -1)[:, 1].numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(x)[:, 1], rtol=1e-6, atol=1e-9)


def test_char_ngram_multilabel_is_one_sigmoid_per_label():
    texts, labels = sample_texts()
    multi = np.stack([labels, 1 - labels, np.zeros_like(labels)], axis=1)  # last: never on
    model = CharNgramModel.fit(texts, multi, task="multilabel", num_labels=3, seed=0)
    probs = torch.sigmoid(model.predict_texts(texts))
    assert probs.shape == (len(texts), 3)
    assert ((probs[:, 0] > 0.5).numpy() == labels.astype(bool)).mean() > 0.9
    assert (probs[:, 2] < 1e-6).all()  # a constant label gets a constant, finite logit


def test_cross_fit_targets_come_from_models_that_did_not_see_the_row():
    texts, labels = sample_texts()
    k = 3
    model = CharNgramModel.fit(texts, labels, task="binary", num_labels=2, seed=7, cross_fit=k)
    oof = model.train_soft_logits(texts).numpy()
    assert oof.shape == (len(texts), 2)
    # rebuild fold 0 by hand: fitted on the other folds only, it must give fold 0's rows
    folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=7)
                 .split(np.zeros(len(texts)), labels))
    fit_idx, held_idx = folds[0]
    fold_model = CharNgramModel.fit([texts[i] for i in fit_idx], labels[fit_idx], task="binary",
                                    num_labels=2, seed=7)
    np.testing.assert_allclose(oof[held_idx], fold_model.decision([texts[i] for i in held_idx]),
                               rtol=1e-5, atol=1e-5)
    # and they differ from the memorised in-sample logits of the full model
    assert not np.allclose(oof, model.decision(texts))


def test_out_of_fold_targets_are_only_given_for_the_texts_they_label(tmp_path, caplog):
    """Same number of rows is not the same rows: another split of equal size (or the same rows
    reordered) gets the in-sample outputs and a warning, never misaligned out-of-fold targets;
    the texts' digest survives save and load."""
    texts, labels = sample_texts()
    model = CharNgramModel.fit(texts, labels, task="binary", num_labels=2, seed=7, cross_fit=3)
    model.save(tmp_path)
    loaded = CharNgramModel.load(tmp_path)
    assert loaded.oof_texts == model.oof_texts is not None
    np.testing.assert_allclose(loaded.train_soft_logits(texts).numpy(), model.train_oof_logits,
                               rtol=1e-6)
    assert not caplog.records
    shuffled = texts[1:] + texts[:1]
    with caplog.at_level("WARNING", logger="hate_compress.models.char_ngram"):
        fallback = loaded.train_soft_logits(shuffled).numpy()
    np.testing.assert_allclose(fallback, loaded.decision(shuffled), rtol=1e-5, atol=1e-5)
    assert "out-of-fold logits label other train texts" in caplog.text


def test_ensemble_probs_equal_the_weighted_mean_by_hand():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 3) * 3, torch.randn(5, 3)
    t, w = 2.0, [0.25, 0.75]
    combined = combine_logits([z1, z2], w, task="multiclass", mode="probs", temperature=t)
    by_hand = 0.25 * torch.softmax(z1 / t, -1) + 0.75 * torch.softmax(z2 / t, -1)
    torch.testing.assert_close(torch.softmax(combined / t, -1), by_hand)
    combined = combine_logits([z1, z2], w, task="multilabel", mode="probs", temperature=t)
    by_hand = 0.25 * torch.sigmoid(z1 / t) + 0.75 * torch.sigmoid(z2 / t)
    torch.testing.assert_close(torch.sigmoid(combined / t), by_hand)
    combined = combine_logits([z1, z2], w, task="multiclass", mode="logits", temperature=t)
    torch.testing.assert_close(combined, 0.25 * z1 + 0.75 * z2)


def test_ensemble_weights_are_normalised():
    class Fixed:
        def __init__(self, z):
            self.z = z

        def predict_texts(self, texts):
            return self.z

    z1, z2 = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    ens = EnsembleModel({"a": Fixed(z1), "b": Fixed(z2)}, [1, 3], task="binary", mode="logits",
                        temperature=1.0)
    torch.testing.assert_close(ens.predict_texts(["x"]), 0.25 * z1 + 0.75 * z2)


def test_char_ngram_teacher_pipeline_stores_gates_and_teaches(tiny_cfg):
    cfg = light(tiny_cfg, "teacher=char_ngram", "teacher.cross_fit=3", "pipeline=teacher_kd")
    metrics = run_pipeline(cfg, Path(cfg.paths.output_root) / "run1")
    teacher = metrics["teacher"]
    assert teacher["runtime"] == "sklearn" and teacher["gate"]["passed"]
    stored = Path(teacher["artifact"])
    assert stored.parent == Path(cfg.paths.teacher_store) and stored.name.startswith("char_ngram-")
    no_pickle(stored)
    assert (stored / "train_oof_logits.safetensors").exists()
    assert metrics["kd"]["teacher_cache"] and metrics["kd"]["test"]["agreement"] is not None
    # KD read the out-of-fold logits for train, the full model's for dev
    cache = next((Path(cfg.paths.cache_dir) / "teacher_outputs").glob("text-*.safetensors"))
    tensors = load_file(str(cache))
    model = CharNgramModel.load(stored)
    torch.testing.assert_close(tensors["train.logits"],
                               torch.from_numpy(model.train_oof_logits).float())
    from hate_compress.pipeline.runner import make_data

    data = make_data(cfg)
    torch.testing.assert_close(tensors["dev.logits"], model.predict_texts(data.texts("dev")))
    # a second run reuses the stored teacher (same key), a changed setting does not
    again = run_pipeline(light(tiny_cfg, "teacher=char_ngram", "teacher.cross_fit=3",
                                     "pipeline=teacher"),
                         Path(cfg.paths.output_root) / "run2")
    assert again["teacher"]["artifact"] == teacher["artifact"]
    other = run_pipeline(light(tiny_cfg, "teacher=char_ngram", "teacher.ngram.C=1.0", "pipeline=teacher"),
                         Path(cfg.paths.output_root) / "run3")
    assert other["teacher"]["artifact"] != teacher["artifact"]


def test_ensemble_teacher_soft_targets_are_the_members_weighted_mean(tiny_cfg):
    cfg = tiny_cfg("teacher=ensemble", "teacher.weights=[0.4,0.6]", "kd.temperature=2.0",
                   "pipeline=teacher_kd")  # debug=tiny: members shrink too
    metrics = run_pipeline(cfg, Path(cfg.paths.output_root) / "run")
    teacher = metrics["teacher"]
    assert teacher["runtime"] == "ensemble"
    assert set(teacher["members"]) == {"tiny_teacher", "char_ngram"}
    assert all(m["passed"] for m in teacher["members"].values())
    assert metrics["kd"]["teacher_cache"]
    # the cached soft targets, against the members' own predictions combined by hand
    from hate_compress.artifacts import load_classifier
    from hate_compress.models.classifier import predict_logits
    from hate_compress.pipeline.runner import make_data

    data = make_data(cfg)
    char = CharNgramModel.load(teacher["members"]["char_ngram"]["artifact"])
    neural, tok, _ = load_classifier(teacher["members"]["tiny_teacher"]["artifact"])
    assert (neural.num_layers, neural.hidden_size) == (1, 64)  # debug=tiny shrank the member too
    data.set_tokenizers({"m": tok})
    z_neural = predict_logits(neural, data.dataloader("train"), "m")[0]
    z_char = char.predict_texts(data.texts("train"))
    by_hand = 0.4 * torch.softmax(z_neural / 2, -1) + 0.6 * torch.softmax(z_char / 2, -1)
    cache = next((Path(cfg.paths.cache_dir) / "teacher_outputs").glob("text-*.safetensors"))
    served = torch.softmax(load_file(str(cache))["train.logits"] / 2, -1)
    torch.testing.assert_close(served, by_hand, atol=1e-5, rtol=1e-4)
    pointer = Path(cfg.paths.output_root) / "run" / "teacher" / "model_path.txt"
    assert len(pointer.read_text().split()) == 2


@pytest.mark.parametrize("overrides,needle", [
    (("teacher=char_ngram", "kd=hidden"), "kd.terms.hidden needs the teacher's hidden_states"),
    (("teacher=char_ngram", "pipeline=teacher_prune_quant"), "cannot be pruned or quantized"),
    (("teacher=tiny_teacher", "teacher.cross_fit=3"), "teacher=char_ngram only"),
    (("teacher=ensemble", "teacher.members=[char_ngram]"), "at least two teachers"),
    (("teacher=ensemble", "teacher.weights=[1]"), "teacher.weights"),
])
def test_text_teacher_config_errors_before_training(tiny_cfg, overrides, needle, capsys):
    from hate_compress.pipeline.runner import guarded_run

    cfg = light(tiny_cfg, *overrides) if "teacher=tiny_teacher" not in overrides \
        else tiny_cfg(*overrides)
    run_dir = Path(cfg.paths.output_root) / "bad"
    with pytest.raises(SystemExit) as exc:
        guarded_run(cfg, run_dir)
    assert exc.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], errors
    store = Path(cfg.paths.teacher_store)
    assert not store.exists() or not [p for p in store.iterdir() if p.is_dir()]  # none trained
    assert json.loads((run_dir / "metrics.json").read_text())["run"]["status"] == "failed"

"""Teacher-labelled augmentation (`kd.augment`, issue 16): perturbed copies of the train texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hate_compress.data.augment import AugmentSettings, augment_split, perturb
from hate_compress.data.labeled import LabeledTexts
from hate_compress.errors import ConfigError
from hate_compress.pipeline.runner import run_pipeline
from tests.conftest import compose_cfg

TEXT = "das ist ein ganz normaler satz mit zehn wörtern und noch mehr"


def split(texts):
    return LabeledTexts(path=Path("train.tsv"), texts=list(texts), labels=np.arange(len(texts)) % 2,
                        rows=list(range(2, len(texts) + 2)), label_names=["OTHER", "OFFENSE"],
                        task="binary", meta={"who": [f"w{i}" for i in range(len(texts))]})


def test_no_noise_is_the_same_text_and_each_kind_of_noise_does_its_job():
    rng = np.random.default_rng(0)
    quiet = AugmentSettings(copies=1, word_dropout=0, word_swap=0, char_noise=0)
    assert perturb(TEXT, rng, quiet) == TEXT
    dropped = perturb(TEXT, rng, AugmentSettings(copies=1, word_dropout=0.5, word_swap=0, char_noise=0))
    assert 1 <= len(dropped.split()) < len(TEXT.split())
    assert all(w in TEXT.split() for w in dropped.split())
    almost_all = perturb("a b c", rng, AugmentSettings(copies=1, word_dropout=0.99, word_swap=0, char_noise=0))
    assert len(almost_all.split()) == 1  # one word always stays
    swapped = perturb(TEXT, rng, AugmentSettings(copies=1, word_dropout=0, word_swap=0.9, char_noise=0))
    assert swapped != TEXT and sorted(swapped.split()) == sorted(TEXT.split())
    typos = perturb(TEXT, rng, AugmentSettings(copies=1, word_dropout=0, word_swap=0, char_noise=0.5))
    assert typos != TEXT and len(typos.split()) == len(TEXT.split())


def test_augmented_split_keeps_the_real_rows_first_and_is_seeded():
    train = split([TEXT, "zweiter text hier", "dritter"])
    settings = AugmentSettings(copies=2, seed=7, word_dropout=0.3)
    out = augment_split(train, settings)
    assert len(out) == 9 and out.texts[:3] == train.texts
    assert out.labels.tolist() == train.labels.tolist() * 3  # each copy keeps its source's label
    assert out.rows == train.rows * 3 and out.meta["who"] == train.meta["who"] * 3
    assert out.texts[3:] != train.texts * 2
    assert augment_split(train, settings).texts == out.texts  # same seed, same copies
    assert augment_split(train, AugmentSettings(copies=2, seed=8, word_dropout=0.3)).texts != out.texts
    assert augment_split(train, AugmentSettings(copies=0)) is train


@pytest.mark.parametrize("bad, message", [
    ({"copies": -1}, "copies=-1"), ({"copies": 1, "char_noise": 1.5}, "char_noise=1.5"),
    ({"copies": 1, "typo": 0.1}, "unknown key"),
])
def test_bad_settings_are_one_line_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        AugmentSettings.from_config(bad)


def test_kd_trains_on_the_copies_and_measures_on_real_data(tmp_path):
    """The student sees real + copies (the teacher's cache covers every copy); dev/test and the
    later stages see the real splits; metrics.json records the settings."""
    cfg = compose_cfg(tmp_path, ["pipeline=teacher_kd", "kd.augment.copies=2"])
    run_pipeline(cfg, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["run"]["status"] == "ok"
    assert metrics["kd"]["augment"]["copies"] == 2
    from safetensors.torch import load_file

    caches = list((tmp_path / "cache" / "teacher_outputs").glob("*.safetensors"))
    sizes = {k: v.shape[0] for c in caches for k, v in load_file(str(c)).items() if k.startswith("train")}
    assert set(sizes.values()) == {3 * metrics["run"]["split_sizes"]["train"]}  # real split


@pytest.mark.parametrize("overrides, message", [
    (["teacher=char_ngram", "teacher.cross_fit=3"], "cross-fitted teacher"),
    (["kd=mutual"], "needs a teacher to label the copies"),
])
def test_augment_refuses_what_it_cannot_label_before_training(tmp_path, overrides, message):
    cfg = compose_cfg(tmp_path, ["pipeline=teacher_kd", "kd.augment.copies=1", *overrides])
    with pytest.raises(ConfigError, match=message):
        run_pipeline(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "teacher").exists()

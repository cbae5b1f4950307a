"""HateDataModule: splits, batches for several tokenizers, class weights and the cache fingerprint.

Tokenizers are trained offline on a few strings (no model hub).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

import hate_compress.data.datamodule as dm_module
from hate_compress.data import HateDataModule, sample_dir
from hate_compress.errors import ConfigError, DataError

TRAIN = sample_dir() / "synthetic_train.csv"
TEST = sample_dir() / "synthetic_test.csv"
SHARED = Path("/work/shared/data")


def make_tokenizer(texts: list[str], specials: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]"),
                   lowercase: bool = False, name: str = "") -> PreTrainedTokenizerFast:
    """A tiny WordPiece tokenizer trained on `texts`; `specials` order changes every id."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase() if lowercase else normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=list(specials)))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(s, tok.token_to_id(s)) for s in ("[CLS]", "[SEP]")])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")
    fast.name_or_path = name
    return fast


@pytest.fixture(scope="module")
def dm() -> HateDataModule:
    module = HateDataModule(TRAIN, test_file=TEST, max_length=24, batch_size=8, eval_batch_size=16)
    module.setup()
    return module


@pytest.fixture(scope="module")
def toks(dm):
    teacher = make_tokenizer(dm.train_texts)
    student = make_tokenizer(dm.train_texts, specials=("[SEP]", "[CLS]", "[PAD]", "[UNK]"), lowercase=True)
    return teacher, student


def offense_share(module: HateDataModule, split: str) -> float:
    return float(np.mean(module.labels(split) == module.label_names.index("OFFENSE")))


# -- splits -----------------------------------------------------------------------------------


def test_stratified_split_sizes_and_proportions(dm):
    assert dm.split_sizes == {"train": 360, "dev": 40, "test": 150}
    assert abs(offense_share(dm, "train") - offense_share(dm, "dev")) < 0.02
    assert not set(dm.texts("train")) & set(dm.texts("dev"))
    counted = HateDataModule(TRAIN, dev_size=100)
    assert counted.split_sizes == {"train": 300, "dev": 100}
    assert not counted.has_test


def test_split_is_deterministic_per_seed(dm):
    again = HateDataModule(TRAIN, test_file=TEST)
    other = HateDataModule(TRAIN, test_file=TEST, split_seed=7)
    assert again.texts("dev") == dm.texts("dev")
    assert other.texts("dev") != dm.texts("dev")
    assert again.fingerprint() == dm.fingerprint() != other.fingerprint()


def test_properties(dm):
    assert dm.label_names == ["OFFENSE", "OTHER"] and dm.num_labels == 2
    assert dm.task == "binary" and not dm.is_multilabel
    assert dm.positive_index == 0  # OFFENSE, though it sorts first
    assert HateDataModule(TRAIN, positive_label="OTHER").positive_index == 1
    assert len(dm.train_texts) == 360


def test_dev_size_too_small_for_classes_is_reported():
    with pytest.raises(DataError, match=r"synthetic_train\.csv: data\.dev_size=1 gives 1 of 400 rows"):
        HateDataModule(TRAIN, dev_size=1).setup()
    with pytest.raises(ConfigError, match="data.dev_size"):
        HateDataModule(TRAIN, dev_size=1.5)


def test_missing_test_split_is_a_clear_error(toks):
    module = HateDataModule(TRAIN)
    module.set_tokenizers({"student": toks[0]})
    assert not module.has_test
    with pytest.raises(ConfigError, match="data.test_file"):
        module.test_dataloader()


def test_setup_works_without_tokenizers_but_loaders_need_them():
    module = HateDataModule(TRAIN)
    assert len(module.train_texts) == 360
    with pytest.raises(RuntimeError, match="set_tokenizers"):
        module.train_dataloader()


# -- batches ----------------------------------------------------------------------------------


def test_batch_layout(dm, toks):
    dm.set_tokenizers({"teacher": toks[0], "student": toks[1]})
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"idx", "labels", "inputs"} and set(batch["inputs"]) == {"teacher", "student"}
    assert batch["idx"].dtype == torch.long and batch["idx"].tolist() == list(range(16))
    assert batch["labels"].dtype == torch.long and batch["labels"].shape == (16,)
    np.testing.assert_array_equal(batch["labels"].numpy(), dm.labels("dev")[:16])
    for enc in batch["inputs"].values():
        assert set(enc) == {"input_ids", "attention_mask"}
        assert enc["input_ids"].dtype == enc["attention_mask"].dtype == torch.long
        assert enc["input_ids"].shape == enc["attention_mask"].shape
        assert enc["input_ids"].shape[0] == 16 and enc["input_ids"].shape[1] <= 24


def test_different_tokenizers_give_different_ids(dm, toks):
    dm.set_tokenizers({"teacher": toks[0], "student": toks[1]})
    batch = next(iter(dm.dataloader("dev", batch_size=4)))
    t, s = batch["inputs"]["teacher"], batch["inputs"]["student"]
    assert t is not s
    assert t["input_ids"][:, 0].unique().tolist() == [toks[0].cls_token_id]
    assert s["input_ids"][:, 0].unique().tolist() == [toks[1].cls_token_id]
    assert toks[0].cls_token_id != toks[1].cls_token_id
    assert t["input_ids"][0].tolist() != s["input_ids"][0].tolist()


def test_same_tokenizer_shares_one_tokenization(dm, toks, monkeypatch):
    calls = []
    real = dm_module._tokenize
    monkeypatch.setattr(dm_module, "_tokenize", lambda tok, texts, n: calls.append(tok) or real(tok, texts, n))
    twin = make_tokenizer(dm.train_texts, name="tiny-wp")
    twin2 = PreTrainedTokenizerFast(  # separate object, same name + pipeline (as if loaded twice)
        tokenizer_object=Tokenizer.from_str(twin.backend_tokenizer.to_str()), pad_token="[PAD]",
        unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    twin2.name_or_path = "tiny-wp"
    other = make_tokenizer(dm.train_texts, specials=("[SEP]", "[CLS]", "[PAD]", "[UNK]"), name="tiny-wp")
    dm.set_tokenizers({"teacher": twin, "student": twin2, "extra": twin, "other": other})
    for _ in range(2):
        batch = next(iter(dm.val_dataloader()))
    inputs = batch["inputs"]
    assert inputs["teacher"] is inputs["student"] is inputs["extra"]
    assert inputs["other"] is not inputs["teacher"]  # same name_or_path, different vocab
    assert calls == [twin, other]  # one tokenization per distinct tokenizer, cached on the 2nd pass
    moved = dm.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert moved["inputs"]["teacher"]["input_ids"] is moved["inputs"]["student"]["input_ids"]


def test_dynamic_padding(dm, toks):
    tok = toks[0]
    dm.set_tokenizers({"student": tok})
    lengths = [len(tok(t, truncation=True, max_length=24)["input_ids"]) for t in dm.texts("dev")]
    widths = []
    for start, batch in zip(range(0, 40, 5), dm.dataloader("dev", batch_size=5)):
        enc = batch["inputs"]["student"]
        want = lengths[start:start + 5]
        widths.append(enc["input_ids"].shape[1])
        assert widths[-1] == max(want)  # padded to the batch's longest, not to max_length
        assert enc["attention_mask"].sum(dim=1).tolist() == want
        assert (enc["input_ids"][enc["attention_mask"] == 0] == tok.pad_token_id).all()
    assert len(set(widths)) > 1 and min(widths) < 24 and max(lengths) <= 24


def test_train_loader_shuffles_reproducibly_and_covers_each_row_once(dm, toks):
    dm.set_tokenizers({"student": toks[0]})
    first = torch.cat([b["idx"] for b in dm.train_dataloader()])
    second = torch.cat([b["idx"] for b in dm.train_dataloader()])
    assert sorted(first.tolist()) == list(range(360)) and first.tolist() != list(range(360))
    assert first.tolist() == second.tolist()
    batch = next(iter(dm.train_dataloader()))
    np.testing.assert_array_equal(batch["labels"].numpy(), dm.labels("train")[batch["idx"].numpy()])


# -- weights and fingerprint ------------------------------------------------------------------


def _write(path: Path, labels: list[str]) -> Path:
    path.write_text("text,label\n" + "".join(f"text number {i},{lab}\n" for i, lab in enumerate(labels)),
                    encoding="utf-8")
    return path


def test_class_weights_single_label(tmp_path):
    # train A,A,A,B: inverse frequency (1/3, 1) normalised to mean 1 -> (0.5, 1.5)
    train = _write(tmp_path / "train.csv", ["A", "A", "A", "B"])
    dev = _write(tmp_path / "dev.csv", ["A", "B"])
    module = HateDataModule(train, dev_file=dev, positive_label="B")
    torch.testing.assert_close(module.class_weights(), torch.tensor([0.5, 1.5]))


def test_class_weights_multilabel_pos_weight(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,insult,threat\na,1,0\nb,1,1\nc,0,0\nd,1,0\n", encoding="utf-8")
    dev = tmp_path / "dev.csv"
    dev.write_text("text,insult,threat\ne,1,0\n", encoding="utf-8")
    module = HateDataModule(train, dev_file=dev, task="multilabel", label_columns=["insult", "threat"])
    torch.testing.assert_close(module.class_weights(), torch.tensor([1 / 3, 3.0]))  # neg/pos per label
    module.set_tokenizers({"s": make_tokenizer(["a b c d e"])})
    batch = next(iter(module.train_dataloader()))
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (4, 2)


def test_fingerprint_tracks_labels_not_location(tmp_path):
    labels = ["A", "B"] * 10
    base = HateDataModule(_write(tmp_path / "a.csv", labels)).fingerprint()
    (tmp_path / "moved").mkdir()
    moved = HateDataModule(_write(tmp_path / "moved" / "a.csv", labels)).fingerprint()
    flipped = HateDataModule(_write(tmp_path / "b.csv", ["B"] + labels[1:])).fingerprint()
    assert base == moved and base != flipped and len(base) == 64


def test_hydra_style_config(tmp_path):
    cfg = OmegaConf.create({"train_file": str(_write(tmp_path / "t.csv", ["x", "y"] * 10)),
                            "label_names": ["y", "x"], "positive_label": "x", "dev_size": 0.2})
    module = HateDataModule(**cfg)
    assert module.label_names == ["y", "x"] and module.positive_index == 1
    assert module.split_sizes == {"train": 16, "dev": 4}


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real datasets not present at {SHARED}")
def test_real_germeval_module():
    module = HateDataModule(SHARED / "germeval2018" / "train.tsv", test_file=SHARED / "germeval2018" / "test.tsv",
                            label_column="coarse", positive_label="OFFENSE")
    assert module.split_sizes == {"train": 3879, "dev": 431, "test": 3047}
    assert module.label_names[module.positive_index] == "OFFENSE"


def test_test_size_holds_out_a_stratified_test_split(tmp_path):
    from hate_compress.data import HateDataModule

    path = tmp_path / "d.csv"
    rows = [f"text {i},{'A' if i % 4 else 'B'}" for i in range(200)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    dm = HateDataModule(path, task="binary", test_size=0.2, dev_size=0.1, split_seed=1)
    sizes = dm.split_sizes
    assert sizes == {"train": 144, "dev": 16, "test": 40}
    assert dm.has_test
    test_labels = dm.labels("test")
    assert (test_labels == dm.label_names.index("B")).sum() == 10  # 25% B, stratified
    seen = set(dm.texts("train")) | set(dm.texts("dev"))
    assert not seen & set(dm.texts("test"))
    again = HateDataModule(path, task="binary", test_size=0.2, dev_size=0.1, split_seed=1)
    assert again.texts("test") == dm.texts("test")

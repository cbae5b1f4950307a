"""Lightning DataModule serving one dataset to several models (teacher and student) at once.

Distillation feeds the same example to a teacher and a student that usually have different
tokenizers, so a batch carries one tokenization per tokenizer key, and ``idx`` (the row position
within its split) lets a teacher-output cache be keyed without re-running the teacher.

Reading/validation happens in `setup` and needs no tokenizer (so a caller can read
`train_texts` to train a tokenizer first); tokenization happens once per split and per distinct
tokenizer, lazily, when a dataloader is first requested. Padding is per batch (dynamic), so
short-text datasets do not pay for ``max_length``. Reading and splitting the files is
`hate_compress.data.splitting`; the tokenizer helpers are `hate_compress.data.tokenization`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from hate_compress.data.batching import Collate, EpochSeededSampler, IndexDataset, ShardedEpochSampler
from hate_compress.data.reading import FORMATS, LabeledTexts
from hate_compress.data.schema import DataSchema
from hate_compress.data.splitting import check_split_size, read_splits
from hate_compress.data.tokenization import (  # noqa: F401  (tokenizer_config: re-exported)
    padding_id,
    same_tokenizer,
    shared_prefixes,
    token_limit,
    tokenizer_config,
)
from hate_compress.errors import ConfigError

SPLITS = ("train", "dev", "test")
_ALIASES = {"val": "dev", "validation": "dev", "valid": "dev"}
_TOKENIZE_CHUNK = 1024


class HateDataModule(pl.LightningDataModule):
    """Train/dev/test splits of one labelled dataset, tokenized for every model that needs it.

    All constructor arguments are plain values so Hydra can instantiate it from a ``data``
    config group. Without ``dev_file`` a stratified dev split of ``dev_size`` (fraction or row
    count) is cut from the train file with ``split_seed``; without ``test_file`` there is no test
    split (`has_test` is False).
    """

    def __init__(
        self,
        train_file: str | Path,
        dev_file: str | Path | None = None,
        test_file: str | Path | None = None,
        format: str = "auto",
        text_column: str = "text",
        task: str = "binary",
        label_column: str | None = "label",
        label_columns: Sequence[str] | None = None,
        label_delimiter: str | None = None,
        label_names: Sequence[str] | None = None,
        positive_label: str | None = None,
        strip_labels: bool = True,
        binary_from: Mapping[str, Any] | None = None,
        multilabel_from: Mapping[str, Any] | None = None,
        meta_columns: Sequence[str] | None = None,
        dev_size: float = 0.1,
        test_size: float | int | None = None,
        split_seed: int = 42,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        name: str | None = None,
        licence: str | None = None,
    ):
        super().__init__()
        self.licence = licence  # not used for training: model cards state what the data allows
        self.schema = DataSchema(
            text_column=text_column, task=task, label_column=label_column, label_columns=label_columns,
            label_delimiter=label_delimiter, label_names=label_names, positive_label=positive_label,
            strip_labels=strip_labels, binary_from=dict(binary_from) if binary_from is not None else None,
            multilabel_from=dict(multilabel_from) if multilabel_from is not None else None,
            meta_columns=meta_columns,
        )
        if format not in FORMATS:
            raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {format!r}")
        if train_file is None or str(train_file) == "":
            raise ConfigError("data.train_file is required")
        check_split_size(dev_size)
        if test_size is not None:
            if test_file:
                raise ConfigError("data.test_size and data.test_file are both set; use one")
            check_split_size(test_size, "test_size")
        for key, value, low in (("max_length", max_length, 2), ("batch_size", batch_size, 1),
                                ("eval_batch_size", eval_batch_size, 1), ("num_workers", num_workers, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"data.{key} must be an integer >= {low}, got {value!r}")
        self.train_file = Path(train_file)
        self.dev_file = Path(dev_file) if dev_file else None
        self.test_file = Path(test_file) if test_file else None
        self.format, self.dev_size, self.split_seed = format, dev_size, int(split_seed)
        self.test_size = test_size
        self.max_length, self.batch_size, self.eval_batch_size = max_length, batch_size, eval_batch_size
        self.num_workers = num_workers
        self.name = name or f"{self.train_file.parent.name}_{self.train_file.stem}".strip("_")
        self._splits: dict[str, LabeledTexts] | None = None
        self._key_to_rep: dict[str, Any] = {}
        self._encodings: list[tuple[Any, dict[str, list[np.ndarray]]]] = []  # (tokenizer, {split: ids})
        self._aligned_texts: dict[str, list[str]] | None = None  # see `model_texts`
        self._vocabulary_texts: list[str] | None = None  # see `with_train`

    # -- reading ------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Read and validate every split once; later calls (fit, then test) reuse the result."""
        if self._splits is None:
            self._splits = read_splits(
                self.schema, self.format, self.train_file, self.dev_file, self.test_file,
                dev_size=self.dev_size, test_size=self.test_size, split_seed=self.split_seed)

    def _data(self) -> dict[str, LabeledTexts]:
        self.setup()
        return self._splits

    def split(self, split: str) -> LabeledTexts:
        """The `LabeledTexts` of "train", "dev" (alias "val") or "test"."""
        split = _ALIASES.get(split, split)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        data = self._data()
        if split not in data:
            raise ConfigError("there is no test split; set data.test_file")
        return data[split]

    def texts(self, split: str) -> list[str]:
        return self.split(split).texts

    def labels(self, split: str) -> np.ndarray:
        return self.split(split).labels

    def meta(self, split: str) -> dict[str, list[str]]:
        """`data.meta_columns` of one split, per example (empty when none are configured)."""
        return self.split(split).meta

    @property
    def has_test(self) -> bool:
        return "test" in self._data()

    @property
    def split_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self._data().items()}

    @property
    def train_texts(self) -> list[str]:
        """The texts tokenizers learn their vocabulary from: the real train split, also in a
        `with_train` view whose train split holds augmented copies (noise is not vocabulary)."""
        return self._vocabulary_texts if self._vocabulary_texts is not None else self.texts("train")

    def with_train(self, train: LabeledTexts) -> HateDataModule:
        """This data with another train split (KD's perturbed copies): dev and test, settings and
        `train_texts` are this module's; tokenizers must be registered on the view again."""
        view = copy.copy(self)
        view._splits = {**self._data(), "train": train}
        view._key_to_rep, view._encodings, view._aligned_texts = {}, [], None
        view._vocabulary_texts = self.train_texts
        return view

    @property
    def tokenizers(self) -> dict[str, Any]:
        """The tokenizers registered by `set_tokenizers`, by key."""
        return dict(self._key_to_rep)

    @property
    def label_names(self) -> list[str]:
        return list(self._data()["train"].label_names)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def task(self) -> str:
        return self.schema.task

    @property
    def is_multilabel(self) -> bool:
        return self.schema.is_multilabel

    @property
    def positive_index(self) -> int | None:
        """Binary only: class id whose F1 is the headline metric (see `DataSchema`)."""
        if self.task != "binary":
            return None
        return self.schema.default_positive_index(self.label_names)

    def class_weights(self) -> torch.Tensor:
        """Loss weights from train frequencies, so rare (usually hate) classes are not ignored.

        Single-label: inverse class frequency normalised to mean 1 over the classes present in
        train (a class listed in ``label_names`` but absent from train gets 0). Multilabel: the
        BCE ``pos_weight`` = negatives / positives per label.
        """
        y = self.labels("train")
        if self.is_multilabel:
            pos = y.sum(axis=0).astype(np.float64)
            return torch.tensor((len(y) - pos) / pos, dtype=torch.float32)
        counts = np.bincount(y, minlength=self.num_labels).astype(np.float64)
        inv = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
        return torch.tensor(inv / inv[counts > 0].mean(), dtype=torch.float32)

    def fingerprint(self, split: str = "train") -> str:
        """sha256 of one split as used (texts in order, labels, class names, split seed).

        Keys caches of per-example outputs and the teacher store: it changes whenever any text,
        label or the row order of that split changes, and not when files merely move.
        """
        data = self.split(split)
        h = hashlib.sha256()
        meta = {"task": self.task, "label_names": data.label_names, "split_seed": self.split_seed}
        h.update(json.dumps(meta, sort_keys=True).encode())
        for text in data.texts:
            _update_sized(h, text.encode("utf-8", errors="surrogatepass"))
        h.update(np.ascontiguousarray(data.labels).tobytes())
        return h.hexdigest()

    def fingerprints(self) -> dict[str, str]:
        """`fingerprint` of every split there is: what a model trained (and selected) here saw."""
        return {split: self.fingerprint(split) for split in self._data()}

    def token_fingerprint(self, key: str, split: str) -> str:
        """sha256 of the token ids tokenizer `key`'s batches of `split` hold (plus padding).

        Exactly what a model reading `key` is fed, so a cache keyed by it follows every change
        of tokenizer, `max_length` or truncation rule without listing them."""
        rep = self._key_to_rep[key]
        h = hashlib.sha256(f"pad={padding_id(rep)}:{rep.padding_side}".encode())
        for ids in self._encoded(rep, _ALIASES.get(split, split)):
            _update_sized(h, np.ascontiguousarray(ids, dtype="<i8").tobytes())
        return h.hexdigest()

    # -- tokenization -------------------------------------------------------------------------

    def set_tokenizers(self, tokenizers: Mapping[str, Any]) -> None:
        """Register the tokenizers batches are built for, e.g. ``{"teacher": t, "student": s}``.

        Keys whose tokenizers are the same object, or the same class with the same
        ``name_or_path`` and identical vocabulary/pipeline, share one tokenization (and the same
        tensors in each batch). Encodings of tokenizers still in use are kept across calls.
        """
        if not tokenizers:
            raise ValueError("set_tokenizers needs at least one tokenizer")
        reps: list[Any] = []
        self._key_to_rep = {}
        for key, tok in tokenizers.items():
            rep = next((r for r in reps if same_tokenizer(r, tok)), None)
            if rep is None:
                reps.append(tok)
                rep = tok
            self._key_to_rep[key] = rep
        old = self._encodings
        aligned = len(reps) > 1
        if aligned or self._aligned_texts:  # the texts change: no old encoding is valid
            old, self._aligned_texts = [], {} if aligned else None
        self._encodings = [(r, next((enc for t, enc in old if t is r), {})) for r in reps]

    def model_texts(self, split: str) -> list[str]:
        """The texts every registered model reads: with several distinct tokenizers, each text
        is cut to the prefix that *all* of them keep within `max_length`, so teacher and student
        never see different text (each would otherwise truncate at its own token count)."""
        if self._aligned_texts is None:
            return self.texts(split)
        if split not in self._aligned_texts:
            reps = [r for r, _ in self._encodings]
            self._aligned_texts[split] = shared_prefixes(self.texts(split), reps, self.max_length)
        return self._aligned_texts[split]

    def _encoded(self, rep: Any, split: str) -> list[np.ndarray]:
        cache = next(enc for t, enc in self._encodings if t is rep)
        if split not in cache:
            cache[split] = _tokenize(rep, self.model_texts(split), self.max_length)
        return cache[split]

    # -- loaders ------------------------------------------------------------------------------

    def dataloader(self, split: str, shuffle: bool = False, batch_size: int | None = None,
                   shard: tuple[int, int] | None = None) -> DataLoader:
        """Batches of one split: ``{"idx", "labels", "inputs": {key: {"input_ids", "attention_mask"}}}``.

        `shard=(rank, world_size)` (shuffled training under DDP): this rank's share of each
        epoch's order, see `ShardedEpochSampler`."""
        if not self._key_to_rep:
            raise RuntimeError("no tokenizers: call set_tokenizers({...}) before requesting a dataloader")
        split = _ALIASES.get(split, split)
        data = self.split(split)
        groups = []
        for tok, _ in self._encodings:
            keys = [k for k, r in self._key_to_rep.items() if r is tok]
            groups.append((keys, self._encoded(tok, split), padding_id(tok), tok.padding_side == "left"))
        if batch_size is None:
            batch_size = self.batch_size if split == "train" else self.eval_batch_size
        sampler = EpochSeededSampler(len(data), self.split_seed) if shuffle else None
        if shuffle and shard is not None and shard[1] > 1:
            sampler = ShardedEpochSampler(len(data), self.split_seed, *shard)
        return DataLoader(
            IndexDataset(len(data)), batch_size=batch_size, sampler=sampler,
            collate_fn=Collate(data.labels, groups), num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return self.dataloader("train", shuffle=True,
                                   shard=(trainer.global_rank, trainer.world_size))
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("dev")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Move a batch, keeping tensors shared between tokenizer keys shared on the device too."""
        moved: dict[int, Any] = {}

        def move(x: Any) -> Any:
            if id(x) in moved:
                return moved[id(x)]
            if isinstance(x, torch.Tensor):
                out = x.to(device, non_blocking=True)
            elif isinstance(x, dict):
                out = {k: move(v) for k, v in x.items()}
            else:
                return x
            moved[id(x)] = out
            return out

        return move(batch)


# -- helpers ------------------------------------------------------------------------------------


def _update_sized(h, data: bytes) -> None:
    """Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently."""
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _tokenize(tok: Any, texts: list[str], max_length: int) -> list[np.ndarray]:
    """Truncated, unpadded ids; also capped at the tokenizer's own limit when it has a real one."""
    max_length = token_limit(tok, max_length)
    out: list[np.ndarray] = []
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        enc = tok(texts[start:start + _TOKENIZE_CHUNK], truncation=True, max_length=max_length,
                  padding=False, return_attention_mask=False, return_token_type_ids=False)
        out.extend(np.asarray(ids, dtype=np.int64) for ids in enc["input_ids"])
    return out

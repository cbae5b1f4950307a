"""What reading a split gives: `LabeledTexts` (and unlabelled `Texts`), and the checks that
need a whole split — no text column of numbers, label sets a classifier can learn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hate_compress.data.records import did_you_mean
from hate_compress.errors import DataError

NUMBER = re.compile(r"[-+]?(\d+([.,]\d+)*|[.,]\d+)([eE][-+]?\d+)?%?")
NUMERIC_SHARE = 0.9  # a text column this numeric is an id/count column, not text


@dataclass
class LabeledTexts:
    """One split: texts with their label encoding and the file row each came from.

    ``labels`` is int64 class ids of shape (N,) for binary/multiclass and float32 0/1 of shape
    (N, C) for multilabel. ``rows`` keeps the 1-based data row of each example so later errors
    and reports can point back into the file.
    """

    path: Path
    texts: list[str]
    labels: np.ndarray
    rows: list[int]
    label_names: list[str]
    task: str
    meta: dict[str, list[str]] = field(default_factory=dict)  # data.meta_columns, per example

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_multilabel(self) -> bool:
        return self.task == "multilabel"

    def present_labels(self) -> list[str]:
        """Label names that occur at least once (multilabel: have at least one positive row)."""
        if self.is_multilabel:
            hits = self.labels.sum(axis=0) > 0 if len(self) else np.zeros(len(self.label_names), bool)
            return [n for n, hit in zip(self.label_names, hits) if hit]
        return [self.label_names[i] for i in sorted(set(self.labels.tolist()))]

    def first_row_with(self, name: str) -> int:
        """Row of the first example carrying label `name` (for error messages)."""
        k = self.label_names.index(name)
        hits = self.labels[:, k] > 0 if self.is_multilabel else self.labels == k
        return self.rows[int(np.argmax(hits))]

    def subset(self, positions: Sequence[int]) -> LabeledTexts:
        """Examples at `positions` (in that order), e.g. one side of a train/dev split."""
        pos = np.asarray(positions, dtype=np.int64)
        return replace(self, texts=[self.texts[i] for i in pos], labels=self.labels[pos],
                       rows=[self.rows[i] for i in pos],
                       meta={k: [v[i] for i in pos] for k, v in self.meta.items()})

    def relabel(self, names: Sequence[str]) -> LabeledTexts:
        """Re-encode labels against another class order (a dev file's names → the train names).

        Every label present here must exist in `names`; `check_label_coverage` guarantees that.
        """
        names = list(names)
        if names == self.label_names:
            return self
        if self.is_multilabel:
            out = np.zeros((len(self), len(names)), dtype=np.float32)
            for j, n in enumerate(self.label_names):
                if n in names:
                    out[:, names.index(n)] = self.labels[:, j]
        else:
            lut = np.array([names.index(n) if n in names else -1 for n in self.label_names], np.int64)
            out = lut[self.labels] if len(self) else self.labels
        return replace(self, labels=out, label_names=names)


@dataclass
class Texts:
    """Unlabelled texts (prediction input) and the 1-based data row each came from."""

    source: str
    texts: list[str]
    rows: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def empty_text_message(column: str) -> str:
    return f"text in column {column!r} is empty or whitespace-only; fill it in or remove the row"


def check_not_numeric(path: str | Path, column: str, option: str, texts: Sequence[str],
                      rows: Sequence[int]) -> None:
    """Refuse a text column of (nearly) only numbers: the usual sign of a wrong text column
    (an id or a count), which would otherwise train or predict on meaningless input."""
    numeric = [i for i, t in enumerate(texts) if NUMBER.fullmatch(t.strip())]
    if texts and len(numeric) >= NUMERIC_SHARE * len(texts):
        first = numeric[0]
        raise DataError(
            f"{path}: column {column!r} ({option}) holds numbers, not text, in {len(numeric)} of "
            f"{len(texts)} rows (row {rows[first]}: {texts[first]!r}); point {option} at the "
            "column with the texts"
        )


def check_label_coverage(train: LabeledTexts, other: LabeledTexts | None = None) -> None:
    """Fail early on label sets a classifier cannot learn or be evaluated on.

    A train split with a single class (or, multilabel, a label with no positive row) gives a
    degenerate model and infinite class weights; a label seen only in dev/test can never be
    predicted, so its scores would be silently meaningless.
    """
    present = train.present_labels()
    if train.is_multilabel:
        missing = [n for n in train.label_names if n not in present]
        if missing:
            raise DataError(
                f"{train.path}: label {missing[0]!r} has no positive row in the train split; "
                "add examples or remove it from data.label_columns"
            )
    elif len(present) < 2:
        only = present[0] if present else "none"
        raise DataError(
            f"{train.path}: the train split has a single class ({only!r}) in {len(train)} rows; "
            "a classifier needs at least 2 — check data.label_column and the file"
        )
    if other is None:
        return
    for name in other.present_labels():
        if name not in present:
            hint = did_you_mean(name, present)
            raise DataError(
                f"{other.path}: row {other.first_row_with(name)}: label {name!r} never occurs in the "
                f"train split ({train.path.name}); the model cannot learn it"
                + (f"; {hint}" if hint else "; add training examples or remove the row")
            )

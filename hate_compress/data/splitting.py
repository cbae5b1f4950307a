"""Train/dev/test from the configured files: read, relabel dev/test to the train class order,
and cut missing dev/test splits off train (stratified, seeded), with the label checks that make
a split usable (every class on both sides, the positive label present).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from hate_compress.data.reading import (
    LabeledTexts,
    check_label_coverage,
    did_you_mean,
    read_split,
)
from hate_compress.data.schema import DataSchema
from hate_compress.errors import ConfigError, DataError


def read_splits(schema: DataSchema, fmt: str, train_file: Path, dev_file: Path | None,
                test_file: Path | None, *, dev_size: float | int, test_size: float | int | None,
                split_seed: int) -> dict[str, LabeledTexts]:
    """Every split, validated: `train`, `dev` and, when there is one, `test`."""
    train = read_split(train_file, schema, fmt)
    check_label_coverage(train)
    check_positive_label(schema, train)
    held_out = None
    if test_size:  # no official test split: hold one out first, before dev is cut
        train, held_out = stratified_split(train, test_size, "test_size", split_seed)
    if dev_file is not None:
        splits = {"train": train, "dev": read_other(schema, fmt, dev_file, train)}
    else:
        train, dev = stratified_split(train, dev_size, "dev_size", split_seed)
        check_label_coverage(train, dev)
        splits = {"train": train, "dev": dev}
    if test_file is not None:
        splits["test"] = read_other(schema, fmt, test_file, train)
    elif held_out is not None:
        check_label_coverage(train, held_out)
        splits["test"] = held_out
    return splits


def read_other(schema: DataSchema, fmt: str, path: Path, train: LabeledTexts) -> LabeledTexts:
    """Dev/test with the train class order; labels unseen in train are reported by file+row."""
    other = read_split(path, schema, fmt, label_names=schema.label_names)
    check_label_coverage(train, other)
    return other.relabel(train.label_names)


def check_positive_label(schema: DataSchema, train: LabeledTexts) -> None:
    pos = schema.positive_label
    if pos is not None and pos not in train.label_names:
        raise DataError(
            f"{train.path}: data.positive_label={pos!r} is not a label of column "
            f"{schema.label_column!r} (found: {', '.join(train.label_names)})"
            + (f"; {hint}" if (hint := did_you_mean(pos, train.label_names)) else "")
        )


def stratified_split(full: LabeledTexts, size: float | int, key: str,
                     seed: int) -> tuple[LabeledTexts, LabeledTexts]:
    """Stratified, seeded split of `size` rows (fraction or count) off `full`."""
    n = len(full)
    n_dev = math.ceil(size * n) if isinstance(size, float) else size
    strata = split_strata(full)
    n_classes = len(set(strata.tolist())) if strata is not None else 1
    if not n_classes <= n_dev <= n - n_classes:
        raise DataError(
            f"{full.path}: data.{key}={size} gives {n_dev} of {n} rows for the held-out split, "
            f"but both splits need at least one row per class ({n_classes}); change data.{key}"
        )
    if strata is not None:
        counts = np.bincount(strata)
        rare = next((k for k, c in enumerate(counts) if c == 1), None)
        if rare is not None and not full.is_multilabel:
            name = full.label_names[rare]
            raise DataError(
                f"{full.path}: row {full.first_row_with(name)}: label {name!r} occurs only once; a "
                "stratified split needs at least 2 rows per label — add examples or set data.dev_file"
            )
    train_idx, dev_idx = train_test_split(
        np.arange(n), test_size=n_dev, random_state=seed, stratify=strata
    )
    return full.subset(np.sort(train_idx)), full.subset(np.sort(dev_idx))


def check_split_size(size: Any, key: str = "dev_size") -> None:
    ok = (isinstance(size, float) and 0.0 < size < 1.0) or (
        isinstance(size, int) and not isinstance(size, bool) and size >= 1)
    if not ok:
        raise ConfigError(f"data.{key} must be a fraction in (0, 1) or a row count >= 1, got {size!r}")


def split_strata(data: LabeledTexts) -> np.ndarray | None:
    """What to stratify the dev split on.

    Single-label: the class. Multilabel: the rarest label that has at least 2 positives and 2
    negatives (the rarest is the one a random split would most likely leave out of one side);
    None (plain seeded random split) if no label qualifies.
    """
    if not data.is_multilabel:
        return data.labels
    pos = data.labels.sum(axis=0)
    usable = [j for j in np.argsort(pos, kind="stable") if 2 <= pos[j] <= len(data) - 2]
    return data.labels[:, usable[0]].astype(np.int64) if usable else None

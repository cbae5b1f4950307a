"""Validated records turned into texts and label arrays: single-label, binary_from,
multilabel (0/1 columns, a delimited column, or several categorical columns), with the label
checks that name the row (case/space variants, unknown labels, a third label for binary).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from hate_compress.data.labeled import LabeledTexts, check_not_numeric, empty_text_message
from hate_compress.data.records import Cells, Record, did_you_mean
from hate_compress.data.schema import DataSchema
from hate_compress.errors import DataError

_ONE_ZERO = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}


class LabelExtractor:
    """Turns validated records into texts and label arrays for one file."""

    def __init__(self, path: Path, schema: DataSchema, names: list[str] | None):
        self.path, self.schema, self.names = path, schema, names
        self.where: dict[int, str] = {}

    def fail(self, row: int, problem: str) -> DataError:
        return DataError(f"{self.path}: {self.where.get(row, f'row {row}')}: {problem}")

    def run(self, records: list[Record]) -> LabeledTexts:
        s = self.schema
        self.where = {row: where for row, where, _ in records if where != f"row {row}"}
        cells = [(row, rec) for row, _, rec in records]
        texts, rows = [], []
        for row, rec in cells:
            if not rec[s.text_column].strip():
                raise self.fail(row, empty_text_message(s.text_column))
            texts.append(rec[s.text_column])
            rows.append(row)
        check_not_numeric(self.path, s.text_column, "data.text_column", texts, rows)
        if s.label_columns:
            names, labels = list(s.label_columns), self._zero_one(cells)
        elif s.multilabel_from:
            names, labels = self._categorical(cells)
        elif s.is_multilabel:
            names, labels = self._delimited(cells)
        else:
            names, labels = self._single(cells)
        meta = {col: [rec[col] for _, rec in cells] for col in s.meta_columns}
        return LabeledTexts(self.path, texts, labels, rows, names, s.task, meta)

    def _cell(self, row: int, col: str, value: str) -> str:
        if not value.strip():
            raise self.fail(row, f"label in column {col!r} is empty; fill it in or remove the row")
        return value.strip() if self.schema.strip_labels else value

    def _zero_one(self, records: list[Cells]) -> np.ndarray:
        out = np.zeros((len(records), len(self.schema.label_columns)), dtype=np.float32)
        for i, (row, rec) in enumerate(records):
            for j, col in enumerate(self.schema.label_columns):
                cell = self._cell(row, col, rec[col]).strip()
                if cell not in _ONE_ZERO:
                    raise self.fail(row, f"column {col!r} must be 0 or 1 (multilabel), got {cell!r}")
                out[i, j] = _ONE_ZERO[cell]
        return out

    def _categorical(self, records: list[Cells]) -> tuple[list[str], np.ndarray]:
        spec = self.schema.multilabel_from
        sets = []
        for row, rec in records:
            values = [self._cell(row, col, rec[col]) for col in spec["columns"]]
            sets.append((row, [v for v in values if v not in spec["ignore"]]))
        return self._multi_hot(sets)

    def _multi_hot(self, sets: list[tuple[int, list[str]]]) -> tuple[list[str], np.ndarray]:
        names = self._names([(r, p) for r, ps in sets for p in ps])
        lookup = {n: i for i, n in enumerate(names)}
        out = np.zeros((len(sets), len(names)), dtype=np.float32)
        for i, (row, pieces) in enumerate(sets):
            for p in pieces:
                out[i, self._index(row, p, lookup)] = 1.0
        return names, out

    def _delimited(self, records: list[Cells]) -> tuple[list[str], np.ndarray]:
        col, delim = self.schema.label_column, self.schema.label_delimiter
        sets = []
        for row, rec in records:
            pieces = [p.strip() if self.schema.strip_labels else p
                      for p in self._cell(row, col, rec[col]).split(delim)]
            pieces = [p for p in pieces if p.strip()]
            if not pieces:
                raise self.fail(row, f"label in column {col!r} has no labels between the {delim!r} delimiters")
            sets.append((row, pieces))
        return self._multi_hot(sets)

    def _single(self, records: list[Cells]) -> tuple[list[str], np.ndarray]:
        col = self.schema.label_column
        values = [(row, self._cell(row, col, rec[col])) for row, rec in records]
        if self.schema.binary_from is not None:
            values = [(row, self._binarise(row, v)) for row, v in values]
        names = self._names(values)
        lookup = {n: i for i, n in enumerate(names)}
        ids = np.array([self._index(row, v, lookup) for row, v in values], dtype=np.int64)
        return names, ids

    def _binarise(self, row: int, value: str) -> str:
        spec, col = self.schema.binary_from, self.schema.label_column
        if value in spec["negative"]:
            return spec["negative_name"]
        if spec["positive"]:
            if value in spec["positive"]:
                return spec["positive_name"]
            hint = did_you_mean(value, spec["negative"] + spec["positive"])
            raise self.fail(row, f"label {value!r} in column {col!r} is in neither binary_from.negative "
                                 f"nor binary_from.positive" + (f"; {hint}" if hint else ""))
        hint = did_you_mean(value, spec["negative"])
        if hint:  # 'none' vs 'None' would otherwise silently count as hate
            raise self.fail(row, f"label {value!r} in column {col!r} is not a binary_from.negative value "
                                 f"and would count as positive; {hint}")
        return spec["positive_name"]

    def _names(self, values: list[tuple[int, str]]) -> list[str]:
        """The given class order, or the sorted labels of this file after sanity checks."""
        if self.names is not None:
            return list(self.names)
        col = self.schema.label_column
        counts = Counter(v for _, v in values)
        first_row = {}
        for row, v in values:
            first_row.setdefault(v, row)
        by_fold: dict[str, list[str]] = {}
        for v in counts:
            by_fold.setdefault(v.strip().casefold(), []).append(v)
        for variants in by_fold.values():
            if len(variants) > 1:
                canon = max(variants, key=lambda v: (counts[v], v))
                odd = min((v for v in variants if v != canon), key=lambda v: first_row[v])
                raise self.fail(first_row[odd], f"label {odd!r} in column {col!r} differs from {canon!r} "
                                                f"({counts[canon]} rows) only in case or spacing; did you "
                                                f"mean {canon!r}? (or list both in data.label_names)")
        names = sorted(counts)
        if self.schema.task == "binary":
            self._check_binary(names, first_row)
        return names

    def _check_binary(self, names: list[str], first_row: dict[str, int]) -> None:
        if len(names) > 2:
            third = sorted(names, key=lambda n: first_row[n])[2]
            raise self.fail(first_row[third], f"task=binary but column {self.schema.label_column!r} has "
                                              f"{len(names)} labels ({', '.join(names)}); use "
                                              "task=multiclass or data.binary_from")

    def _index(self, row: int, value: str, lookup: dict[str, int]) -> int:
        if value in lookup:
            return lookup[value]
        hint = did_you_mean(value, list(lookup))
        raise self.fail(row, f"unknown label {value!r} in column {self.schema.label_column!r} "
                             f"(known labels: {', '.join(lookup)})" + (f"; {hint}" if hint else ""))

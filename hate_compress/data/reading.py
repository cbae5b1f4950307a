"""Read one labelled split file (CSV, TSV or JSON Lines) into texts and label ids, checking every row.

Why a hand-rolled reader on top of the stdlib `csv` module instead of `pandas.read_csv`: every
problem must be reported as one line naming the file and the 1-based data row ("row N", header
excluded), and pandas either hides the row (ragged rows, bad bytes) or silently "fixes" data
(``"None"`` → NaN, blank labels → NaN, numeric coercion). Here all cells stay strings.

Documented, accepted quirks (not errors):

* a UTF-8 byte-order mark is stripped; ``\\r\\n``, ``\\n`` and mixed line endings all work;
* whitespace around header names is stripped; blank lines are skipped (they still count as rows,
  so "row N" is line N+1 of the file; after a quoted multi-line field messages say
  "row N (line L)");
* a quoted CSV field may span lines; in TSV it may not (TSV rows are lines: a field that runs
  over several lines is an unbalanced quote swallowing rows, and is reported as such);
* whitespace around labels is trimmed when ``strip_labels`` is true (the default);
* texts are kept verbatim, however long (the tokenizer truncates to ``max_length`` later);
* in JSON Lines numbers/booleans in label fields are read as strings (``1`` → ``"1"``,
  ``true`` → ``"1"``) and ``null`` counts as empty.

Not accepted although the stdlib would parse it: text after a closing quote (``"Hallo" sagte er``
would silently lose its quotes; quote the whole field), a quote never closed, and a text column
that holds (nearly) only numbers — what pointing ``data.text_column`` at an id column looks like.

`read_texts` reads unlabelled input (``python -m hate_compress.predict``) with the same checks.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hate_compress.data.schema import DataSchema
from hate_compress.errors import ConfigError, DataError

FORMATS = ("auto", "csv", "tsv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
               ".ndjson": "jsonl"}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
_ONE_ZERO = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}
_SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes under errors="surrogateescape"
_NUMBER = re.compile(r"[-+]?(\d+([.,]\d+)*|[.,]\d+)([eE][-+]?\d+)?%?")
_UTF8_BOM = b"\xef\xbb\xbf"
NUMERIC_SHARE = 0.9  # a text column this numeric is an id/count column, not text

Record = tuple[int, str, dict[str, str]]  # (1-based data row, "row N" or "row N (line L)", cells)
Cells = tuple[int, dict[str, str]]  # (1-based data row, {column: cell})


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


@dataclass(frozen=True)
class _Columns:
    """The columns a file must have, each with the option that names it (for the hints)."""

    options: dict[str, str]  # column -> e.g. "data.text_column"

    @property
    def required(self) -> list[str]:
        return list(self.options)

    @classmethod
    def of(cls, schema: DataSchema) -> _Columns:
        labels = ("data.label_columns" if schema.label_columns else
                  "data.multilabel_from.columns" if schema.multilabel_from else "data.label_column")
        return cls({schema.text_column: "data.text_column",
                    **{c: labels for c in schema.required_columns[1:]},
                    **{c: "data.meta_columns" for c in schema.extra_meta_columns}})


@dataclass
class Texts:
    """Unlabelled texts (prediction input) and the 1-based data row each came from."""

    source: str
    texts: list[str]
    rows: list[int]

    def __len__(self) -> int:
        return len(self.texts)


# -- public API -------------------------------------------------------------------------------


def read_split(path: str | Path, schema: DataSchema, fmt: str = "auto",
               label_names: Sequence[str] | None = None) -> LabeledTexts:
    """Read and validate one split file.

    `label_names` overrides ``schema.label_names`` (pass the train split's names when reading
    dev/test so ids agree); when both are None the names are the sorted labels of this file.
    Raises `DataError` (one line: file, row, problem, hint) for any bad file or row.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    text = _decode(path)
    records = _records(path, text, fmt, _Columns.of(schema))
    names = list(label_names) if label_names is not None else schema.label_names
    return _Extractor(path, schema, names).run(records)


def read_texts(path: str | Path, text_column: str = "text", option: str = "text_column") -> Texts:
    """Unlabelled texts from a CSV/TSV/JSON Lines file (column `text_column`) or a .txt file
    (one text per line), with the decoding, delimiter, quoting and row checks of `read_split`.

    `option` is how the user sets the column (named in hints). The rows parsed are checked
    against the file's physical lines where a row is a line (TSV, JSON Lines, .txt), so no
    text can silently swallow its neighbours.
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        return text_lines(_decode(path), str(path))
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown input format {path.suffix!r}; use "
                        f"{', '.join(sorted({*_EXTENSIONS, '.txt'}))}")
    text = _decode(path)
    records = _records(path, text, fmt, _Columns({text_column: option}))
    texts, rows = [], []
    for row, where, cells in records:
        if not cells[text_column].strip():
            raise DataError(f"{path}: {where}: {_empty_text(text_column)}")
        texts.append(cells[text_column])
        rows.append(row)
    if fmt != "csv":  # a CSV field may legitimately span lines
        _check_line_count(str(path), text, len(texts), header=fmt == "tsv")
    check_not_numeric(path, text_column, option, texts, rows)
    return Texts(str(path), texts, rows)


def text_lines(text: str, source: str) -> Texts:
    """One text per line (.txt, stdin); blank lines are skipped but still counted as rows."""
    texts, rows = [], []
    for row, line in enumerate(_lines(text), start=1):
        if line.strip():
            if _SURROGATE.search(line):
                raise _bad_bytes_error(source, f"line {row}", line)
            texts.append(line.rstrip("\r\n"))
            rows.append(row)
    if not texts:
        raise DataError(f"{source}: has no text (only blank lines)")
    return Texts(source, texts, rows)


def decode_bytes(raw: bytes, source: str) -> str:
    """UTF-8 text of `raw` (a file's or stdin's bytes), refusing UTF-16 and empty input; bad
    bytes become surrogates so the row holding them can be named later."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{source}: input is UTF-16 encoded; re-save it as UTF-8")
    raw = raw.removeprefix(_UTF8_BOM)  # written by Excel/Notepad: harmless, strip it
    if not raw.strip():
        raise DataError(f"{source}: input is empty ({len(raw)} bytes)")
    return raw.decode("utf-8", errors="surrogateescape")


def _empty_text(column: str) -> str:
    return f"text in column {column!r} is empty or whitespace-only; fill it in or remove the row"


def check_not_numeric(path: str | Path, column: str, option: str, texts: Sequence[str],
                      rows: Sequence[int]) -> None:
    """Refuse a text column of (nearly) only numbers: the usual sign of a wrong text column
    (an id or a count), which would otherwise train or predict on meaningless input."""
    numeric = [i for i, t in enumerate(texts) if _NUMBER.fullmatch(t.strip())]
    if texts and len(numeric) >= NUMERIC_SHARE * len(texts):
        first = numeric[0]
        raise DataError(
            f"{path}: column {column!r} ({option}) holds numbers, not text, in {len(numeric)} of "
            f"{len(texts)} rows (row {rows[first]}: {texts[first]!r}); point {option} at the "
            "column with the texts"
        )


def detect_format(path: Path, fmt: str = "auto") -> str:
    """Resolve ``fmt="auto"`` from the extension; an unknown one is an error, not a guess."""
    if fmt not in FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise DataError(
            f"{path}: cannot tell the file format from the extension {path.suffix!r}; "
            "set data.format to csv, tsv or jsonl"
        )
    return found


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


# -- decoding ---------------------------------------------------------------------------------


def _decode(path: Path) -> str:
    """UTF-8 text of `path`; undecodable bytes become surrogates so the row can be found later."""
    if not path.exists():
        raise DataError(f"{path}: file not found; check the data.*_file path")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file")
    raw = path.read_bytes()
    if not raw.removeprefix(_UTF8_BOM).strip():
        raise DataError(f"{path}: file is empty ({len(raw)} bytes); expected a header and data rows")
    return decode_bytes(raw, str(path))


def _lines(text: str) -> list[str]:
    """Physical lines as the csv module counts them (\\n, \\r\\n or \\r; not U+2028 etc.)."""
    return list(io.StringIO(text, newline=""))


def _check_line_count(source: str, text: str, n_rows: int, header: bool) -> None:
    """Rows parsed must equal the non-blank physical lines (minus the header) of a format whose
    rows are lines: counted independently of the parser, so a swallowed line cannot go unseen."""
    n_lines = sum(1 for line in _lines(text) if line.strip("\r\n")) - int(header)
    if n_lines != n_rows:
        raise DataError(f"{source}: {n_lines} data lines but {n_rows} rows were read; a quote or "
                        "line break inside a text joined or split rows — check the quoting")


def _bad_bytes_error(path: Path | str, where: str, cell: str) -> DataError:
    byte = ord(_SURROGATE.search(cell).group()) - 0xDC00
    return DataError(
        f"{path}: {where}: bytes are not valid UTF-8 (first bad byte 0x{byte:02x}); the file is "
        "probably Latin-1/Windows-1252 — re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


# -- records ----------------------------------------------------------------------------------


def _records(path: Path, text: str, fmt: str, columns: _Columns) -> list[Record]:
    parse = _jsonl_records if fmt == "jsonl" else _delimited_records
    records = list(parse(path, text, fmt, columns))
    if not records:
        raise DataError(f"{path}: has a header but no data rows")
    return records


@contextmanager
def _field_limit(size: int) -> Iterator[None]:
    """Let one field be as long as the whole file (the stdlib default caps it at 128 KiB)."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, size + 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _delimited_records(path: Path, text: str, fmt: str, columns: _Columns) -> Iterator[Record]:
    delimiter = _DELIMITERS[fmt]
    with _field_limit(len(text)):
        # strict: text after a closing quote or a quote never closed is an error, not a guess
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        try:
            header = next((r for r in reader if r), None)
        except csv.Error as exc:
            raise _quote_error(path, "header", 1, reader.line_num, exc) from None
        if header is None:
            raise DataError(f"{path}: file is empty; expected a header and data rows")
        header = [h.strip() for h in header]
        if any(_SURROGATE.search(h) for h in header):
            raise _bad_bytes_error(path, "header", next(h for h in header if _SURROGATE.search(h)))
        index = _check_header(path, header, fmt, columns)
        row = 0
        while True:
            row += 1
            line = reader.line_num + 1  # where this record starts; differs from row+1 after a
            where = f"row {row}" if line == row + 1 else f"row {row} (line {line})"  # multi-line field
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _quote_error(path, where, line, reader.line_num, exc) from None
            if not fields:
                continue  # blank line
            if fmt == "tsv" and reader.line_num > line:
                raise _quote_error(path, where, line, reader.line_num, None)
            bad = next((f for f in fields if _SURROGATE.search(f)), None)
            if bad is not None:
                raise _bad_bytes_error(path, where, bad)
            if len(fields) != len(header):
                raise _ragged_error(path, where, len(fields), len(header), fmt)
            yield row, where, {col: fields[i] for col, i in index.items()}


def _quote_error(path: Path, where: str, line: int, end: int, exc: csv.Error | None) -> DataError:
    """A stray double quote: the csv module reads everything up to the next quote as one field."""
    joined = f"joined lines {line}-{end} into one field; " if end > line else ""
    if exc is None or "expected after" in str(exc):
        return DataError(
            f'{path}: {where}: an unbalanced double quote (") {joined}'
            + ("TSV rows cannot span lines; " if exc is None else
               "text follows a closing quote; ")
            + 'remove the stray quote, or quote the whole field and double quotes inside it ("")'
        )
    if "unexpected end of data" in str(exc):
        return DataError(f'{path}: {where}: a double quote (") opened at line {line} is never '
                         f"closed, so every line after it would be one text; remove or close it")
    return DataError(f"{path}: {where}: cannot parse ({exc})")


def _ragged_error(path: Path, where: str, n_fields: int, n_header: int, fmt: str) -> DataError:
    if n_fields > n_header:
        why = (f"a field probably contains an unquoted {_DELIMITER_NAMES[fmt]} — put that field in "
               'double quotes')
    else:
        why = 'a field is missing, or an unbalanced quote (") joined it with the next line'
    return DataError(f"{path}: {where} has {n_fields} field{'s' if n_fields != 1 else ''} but the "
                     f"header has {n_header}; {why}")


_DELIMITER_NAMES = {"csv": "comma", "tsv": "tab"}
_SEPARATORS = (("\t", "tab-separated", "set data.format=tsv"),
               (",", "comma-separated", "set data.format=csv"),
               (";", "semicolon-separated", "re-save it as CSV (comma) or TSV"))


def _check_header(path: Path, header: list[str], fmt: str, columns: _Columns) -> dict[str, int]:
    """Column positions of the required columns, or an error explaining what is wrong."""
    if any(c not in header for c in columns.required):  # wrong delimiter? say so first
        for sep, looks, fix in _SEPARATORS:
            if sep != _DELIMITERS[fmt] and any(sep in h for h in header):
                shape = f"a single column {header[0]!r}" if len(header) == 1 else f"columns {header}"
                raise DataError(f"{path}: the header read as {fmt} is {shape}; the file looks {looks}; {fix}")
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups:
        raise DataError(
            f"{path}: duplicated column name(s) in the header: {', '.join(map(repr, dups))}; "
            "rename them so every column is unique"
        )
    _check_columns(path, header, columns, where="")
    return {col: header.index(col) for col in columns.required}


def _check_columns(path: Path, found: Sequence[str], columns: _Columns, where: str) -> None:
    missing = [c for c in columns.required if c not in found]
    if not missing:
        return
    what = "key" if where else "column"
    parts = []
    for col in missing:
        hint = did_you_mean(col, found)
        parts.append(f"{col!r} ({columns.options[col]})" + (f" — {hint}" if hint else ""))
    raise DataError(
        f"{path}: {where}missing {what}{'s' if len(missing) > 1 else ''} {', '.join(parts)}; "
        f"{what}s found: {list(found)}" + ("" if where else " (does the file have a header row?)")
    )


def _jsonl_records(path: Path, text: str, fmt: str, columns: _Columns) -> Iterator[Record]:
    if text.lstrip().startswith("["):
        raise DataError(f"{path}: is a JSON array; expected JSON Lines (one object per line)")
    for row, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if _SURROGATE.search(line):
            raise _bad_bytes_error(path, f"row {row}", line)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: row {row}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: row {row}: expected a JSON object, got {type(obj).__name__}")
        _check_columns(path, list(obj), columns, where=f"row {row}: ")
        yield row, f"row {row}", {col: _json_cell(path, row, col, obj[col]) for col in columns.required}


def _json_cell(path: Path, row: int, col: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    raise DataError(f"{path}: row {row}: key {col!r} holds a {type(value).__name__}; expected a string")


# -- labels -----------------------------------------------------------------------------------


def did_you_mean(value: str, names: Sequence[str]) -> str:
    """'did you mean' hint for a label/column that differs from a known one by case or spacing."""
    folded = {n.strip().casefold(): n for n in names}
    hit = folded.get(value.strip().casefold())
    if hit is not None and hit != value:
        why = "case differs" if hit.strip() != value.strip() else "stray whitespace"
        return f"did you mean {hit!r}? ({why})"
    close = difflib.get_close_matches(value, list(names), n=1, cutoff=0.8)
    return f"did you mean {close[0]!r}?" if close else ""


class _Extractor:
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
                raise self.fail(row, _empty_text(s.text_column))
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

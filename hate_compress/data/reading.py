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

The work is split by what it knows about: `hate_compress.data.records` (bytes -> rows of string
cells), `hate_compress.data.labels` (cells -> texts and label arrays) and
`hate_compress.data.labeled` (the split containers and whole-split checks); this module is the
entry point and re-exports their public names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hate_compress.data.labeled import (
    NUMERIC_SHARE,
    LabeledTexts,
    Texts,
    check_label_coverage,
    check_not_numeric,
    empty_text_message,
)
from hate_compress.data.labels import LabelExtractor
from hate_compress.data.records import (
    EXTENSIONS,
    FORMATS,
    SURROGATE,
    Columns,
    bad_bytes_error,
    check_line_count,
    decode_bytes,
    decode_file,
    detect_format,
    did_you_mean,
    parse_records,
    physical_lines,
)
from hate_compress.data.schema import DataSchema
from hate_compress.errors import DataError

__all__ = [
    "FORMATS", "NUMERIC_SHARE", "LabeledTexts", "Texts", "check_label_coverage",
    "check_not_numeric", "decode_bytes", "detect_format", "did_you_mean", "read_split",
    "read_texts", "text_lines",
]


def read_split(path: str | Path, schema: DataSchema, fmt: str = "auto",
               label_names: Sequence[str] | None = None) -> LabeledTexts:
    """Read and validate one split file.

    `label_names` overrides ``schema.label_names`` (pass the train split's names when reading
    dev/test so ids agree); when both are None the names are the sorted labels of this file.
    Raises `DataError` (one line: file, row, problem, hint) for any bad file or row.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    text = decode_file(path)
    records = parse_records(path, text, fmt, Columns.of(schema))
    names = list(label_names) if label_names is not None else schema.label_names
    return LabelExtractor(path, schema, names).run(records)


def read_texts(path: str | Path, text_column: str = "text", option: str = "text_column") -> Texts:
    """Unlabelled texts from a CSV/TSV/JSON Lines file (column `text_column`) or a .txt file
    (one text per line), with the decoding, delimiter, quoting and row checks of `read_split`.

    `option` is how the user sets the column (named in hints). The rows parsed are checked
    against the file's physical lines where a row is a line (TSV, JSON Lines, .txt), so no
    text can silently swallow its neighbours.
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        return text_lines(decode_file(path), str(path))
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown input format {path.suffix!r}; use "
                        f"{', '.join(sorted({*EXTENSIONS, '.txt'}))}")
    text = decode_file(path)
    records = parse_records(path, text, fmt, Columns({text_column: option}))
    texts, rows = [], []
    for row, where, cells in records:
        if not cells[text_column].strip():
            raise DataError(f"{path}: {where}: {empty_text_message(text_column)}")
        texts.append(cells[text_column])
        rows.append(row)
    if fmt != "csv":  # a CSV field may legitimately span lines
        check_line_count(str(path), text, len(texts), header=fmt == "tsv")
    check_not_numeric(path, text_column, option, texts, rows)
    return Texts(str(path), texts, rows)


def text_lines(text: str, source: str) -> Texts:
    """One text per line (.txt, stdin); blank lines are skipped but still counted as rows."""
    texts, rows = [], []
    for row, line in enumerate(physical_lines(text), start=1):
        if line.strip():
            if SURROGATE.search(line):
                raise bad_bytes_error(source, f"line {row}", line)
            texts.append(line.rstrip("\r\n"))
            rows.append(row)
    if not texts:
        raise DataError(f"{source}: has no text (only blank lines)")
    return Texts(source, texts, rows)

"""A data file turned into rows of string cells, every problem one line naming the file and row.

Decoding (UTF-8 only, BOM stripped, bad bytes kept as surrogates so their row can be named),
the CSV/TSV reader (strict quoting, fields as long as the file, blank lines counted as rows)
and JSON Lines; the header and the required columns, with "did you mean" hints. What the cells
mean (texts, labels) is `hate_compress.data.labels`' job; the quirks accepted here are listed
in `hate_compress.data.reading`.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hate_compress.data.schema import DataSchema
from hate_compress.errors import ConfigError, DataError

FORMATS = ("auto", "csv", "tsv", "jsonl")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
              ".ndjson": "jsonl"}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes under errors="surrogateescape"
UTF8_BOM = b"\xef\xbb\xbf"

Record = tuple[int, str, dict[str, str]]  # (1-based data row, "row N" or "row N (line L)", cells)
Cells = tuple[int, dict[str, str]]  # (1-based data row, {column: cell})


@dataclass(frozen=True)
class Columns:
    """The columns a file must have, each with the option that names it (for the hints)."""

    options: dict[str, str]  # column -> e.g. "data.text_column"

    @property
    def required(self) -> list[str]:
        return list(self.options)

    @classmethod
    def of(cls, schema: DataSchema) -> Columns:
        labels = ("data.label_columns" if schema.label_columns else
                  "data.multilabel_from.columns" if schema.multilabel_from else "data.label_column")
        return cls({schema.text_column: "data.text_column",
                    **{c: labels for c in schema.required_columns[1:]},
                    **{c: "data.meta_columns" for c in schema.extra_meta_columns}})


def decode_bytes(raw: bytes, source: str) -> str:
    """UTF-8 text of `raw` (a file's or stdin's bytes), refusing UTF-16 and empty input; bad
    bytes become surrogates so the row holding them can be named later."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{source}: input is UTF-16 encoded; re-save it as UTF-8")
    raw = raw.removeprefix(UTF8_BOM)  # written by Excel/Notepad: harmless, strip it
    if not raw.strip():
        raise DataError(f"{source}: input is empty ({len(raw)} bytes)")
    return raw.decode("utf-8", errors="surrogateescape")


def detect_format(path: Path, fmt: str = "auto") -> str:
    """Resolve ``fmt="auto"`` from the extension; an unknown one is an error, not a guess."""
    if fmt not in FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    found = EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise DataError(
            f"{path}: cannot tell the file format from the extension {path.suffix!r}; "
            "set data.format to csv, tsv or jsonl"
        )
    return found


def did_you_mean(value: str, names: Sequence[str]) -> str:
    """'did you mean' hint for a label/column that differs from a known one by case or spacing."""
    folded = {n.strip().casefold(): n for n in names}
    hit = folded.get(value.strip().casefold())
    if hit is not None and hit != value:
        why = "case differs" if hit.strip() != value.strip() else "stray whitespace"
        return f"did you mean {hit!r}? ({why})"
    close = difflib.get_close_matches(value, list(names), n=1, cutoff=0.8)
    return f"did you mean {close[0]!r}?" if close else ""


# -- decoding ---------------------------------------------------------------------------------


def decode_file(path: Path) -> str:
    """UTF-8 text of `path`; undecodable bytes become surrogates so the row can be found later."""
    if not path.exists():
        raise DataError(f"{path}: file not found; check the data.*_file path")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a data file")
    raw = path.read_bytes()
    if not raw.removeprefix(UTF8_BOM).strip():
        raise DataError(f"{path}: file is empty ({len(raw)} bytes); expected a header and data rows")
    return decode_bytes(raw, str(path))


def physical_lines(text: str) -> list[str]:
    """Physical lines as the csv module counts them (\\n, \\r\\n or \\r; not U+2028 etc.)."""
    return list(io.StringIO(text, newline=""))


def check_line_count(source: str, text: str, n_rows: int, header: bool) -> None:
    """Rows parsed must equal the non-blank physical lines (minus the header) of a format whose
    rows are lines: counted independently of the parser, so a swallowed line cannot go unseen."""
    n_lines = sum(1 for line in physical_lines(text) if line.strip("\r\n")) - int(header)
    if n_lines != n_rows:
        raise DataError(f"{source}: {n_lines} data lines but {n_rows} rows were read; a quote or "
                        "line break inside a text joined or split rows — check the quoting")


def bad_bytes_error(path: Path | str, where: str, cell: str) -> DataError:
    byte = ord(SURROGATE.search(cell).group()) - 0xDC00
    return DataError(
        f"{path}: {where}: bytes are not valid UTF-8 (first bad byte 0x{byte:02x}); the file is "
        "probably Latin-1/Windows-1252 — re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


# -- records ----------------------------------------------------------------------------------


def parse_records(path: Path, text: str, fmt: str, columns: Columns) -> list[Record]:
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


def _delimited_records(path: Path, text: str, fmt: str, columns: Columns) -> Iterator[Record]:
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
        if any(SURROGATE.search(h) for h in header):
            raise bad_bytes_error(path, "header", next(h for h in header if SURROGATE.search(h)))
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
            bad = next((f for f in fields if SURROGATE.search(f)), None)
            if bad is not None:
                raise bad_bytes_error(path, where, bad)
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


def _check_header(path: Path, header: list[str], fmt: str, columns: Columns) -> dict[str, int]:
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


def _check_columns(path: Path, found: Sequence[str], columns: Columns, where: str) -> None:
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


def _jsonl_records(path: Path, text: str, fmt: str, columns: Columns) -> Iterator[Record]:
    if text.lstrip().startswith("["):
        raise DataError(f"{path}: is a JSON array; expected JSON Lines (one object per line)")
    for row, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if SURROGATE.search(line):
            raise bad_bytes_error(path, f"row {row}", line)
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

"""Every malformed input in tests/data/bad/ must fail with ONE clear line (file, row, problem),
and the documented quirks (BOM, stray label spaces, mixed line endings, huge texts) must just work.

The expected messages are documented in tests/data/bad/CASES.md; a test keeps that table in sync
with what the code really prints.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from hate_compress.data import DataSchema, check_label_coverage, read_split
from hate_compress.data.reading import read_texts
from hate_compress.errors import DataError

BAD = Path(__file__).parent / "data" / "bad"
CASES_MD = BAD / "CASES.md"
ML = {"task": "multilabel", "label_columns": ["insult", "threat"]}
LABELS = {"label_names": ["OFFENSE", "OTHER"]}

# (file, schema kwargs, data row named in the message or None, problem keyword)
ERROR_CASES = [
    ("does_not_exist.csv", {}, None, "file not found"),
    ("missing_text_column.csv", {}, None, "missing column 'text'"),
    ("missing_label_column.csv", {}, None, "missing column 'label'"),
    ("empty.csv", {}, None, "file is empty"),
    ("header_only.csv", {}, None, "no data rows"),
    ("whitespace_text.csv", {}, 2, "empty or whitespace-only"),
    ("empty_text.csv", {}, 3, "empty or whitespace-only"),
    ("nan_label.csv", {}, 2, "label in column 'label' is empty"),
    ("unknown_label.csv", LABELS, 4, "unknown label 'OFFENCE'"),
    ("case_mismatch_label.csv", {}, 3, "did you mean 'OFFENSE'"),
    ("tsv_named_csv.csv", {}, None, "looks tab-separated; set data.format=tsv"),
    ("undecodable.csv", {}, 3, "not valid UTF-8"),
    ("duplicated_header.csv", {}, None, "duplicated column name"),
    ("multilabel_bad_value.csv", ML, 3, "must be 0 or 1"),
    ("negative_label_value.csv", ML, 2, "must be 0 or 1"),
    ("multilabel_yes_value.csv", ML, 1, "must be 0 or 1"),
    ("ragged_row.csv", {}, 2, "has 3 fields but the header has 2"),
    ("ragged_short_row.csv", {}, 3, "has 1 field but the header has 2"),
    ("single_class_train.csv", {}, None, "single class"),
    ("binary_three_labels.csv", {}, 3, "task=binary but column 'label' has 3 labels"),
    ("binary_from_case.tsv", {"label_column": "hate_type", "binary_from": {"negative": ["None"]}},
     3, "did you mean 'None'"),
    ("unknown_extension.txt", {}, None, "set data.format"),
    ("bad_json.jsonl", {}, 2, "invalid JSON"),
    ("dev_only_label_dev.csv", {"task": "multiclass"}, 2, "never occurs in the train split"),
    ("numeric_text_column.csv", {"text_column": "id"}, 1, "column 'id' (data.text_column) holds numbers"),
]
# prediction input (`python -m hate_compress.predict`, read by `read_texts`): (file, row, keyword)
PREDICT_CASES = [
    ("predict_unbalanced_quote.tsv", 4, "unbalanced double quote"),
    ("predict_utf16.csv", None, "UTF-16"),
]


def load(name: str, kwargs: dict) -> object:
    """What a user run does with the file: read + coverage check (dev files: via the data module)."""
    if name == "dev_only_label_dev.csv":
        from hate_compress.data import HateDataModule

        dm = HateDataModule(BAD / "dev_only_label_train.csv", dev_file=BAD / name, **kwargs)
        dm.setup()
        return dm
    data = read_split(BAD / name, DataSchema(**kwargs))
    check_label_coverage(data)
    return data


def documented_messages() -> str:
    return CASES_MD.read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "kwargs", "row", "keyword"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_input_fails_with_one_clear_line(name, kwargs, row, keyword):
    with pytest.raises(DataError) as info:
        load(name, kwargs)
    check_message(str(info.value), name, row, keyword)


def check_message(msg: str, name: str, row: int | None, keyword: str) -> None:
    assert "\n" not in msg and "\r" not in msg
    assert name in msg
    if row is not None:
        assert re.search(rf"\brow {row}\b", msg), msg
    else:
        assert not re.search(r"\brow \d", msg), msg
    assert keyword in msg
    shown = msg.replace(str(BAD), "tests/data/bad")
    assert f"`{shown}`" in documented_messages(), f"CASES.md is out of date for {name}: {shown}"


@pytest.mark.parametrize(("name", "row", "keyword"), PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_bad_prediction_input_fails_with_one_clear_line(name, row, keyword):
    with pytest.raises(DataError) as info:
        read_texts(BAD / name, "text")
    check_message(str(info.value), name, row, keyword)


def test_every_fixture_is_a_documented_case():
    used = ({c[0] for c in ERROR_CASES} | {c[0] for c in PREDICT_CASES} | set(ACCEPTED)
            | {"dev_only_label_train.csv"})
    on_disk = {p.name for p in BAD.iterdir() if p.name not in ("CASES.md", ".gitattributes")}
    assert on_disk <= used, f"fixtures without a test: {sorted(on_disk - used)}"
    table = documented_messages()
    for name in on_disk:
        assert f"`{name}`" in table, f"{name} missing from CASES.md"


def _labels(data) -> list[str]:
    return [data.label_names[i] for i in data.labels]


ACCEPTED = {
    "stray_space_label.csv": lambda d: _labels(d) == ["OFFENSE", "OTHER", "OTHER"],
    "bom.csv": lambda d: d.texts[0] == "Du bist ein Dummkopf" and _labels(d) == ["OFFENSE", "OTHER"],
    "mixed_line_endings.csv": lambda d: (
        d.texts == ["Du bist ein Dummkopf", "Schönes Wetter heute", "Der Bus kommt spät", "Zwei\r\nZeilen"]
        and _labels(d) == ["OFFENSE", "OTHER", "OTHER", "OTHER"] and d.rows == [1, 2, 3, 4]
    ),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_documented_quirks_are_accepted(name):
    data = read_split(BAD / name, DataSchema())
    assert ACCEPTED[name](data), (data.texts, _labels(data))


def test_stray_space_is_an_error_when_strip_labels_is_off():
    with pytest.raises(DataError, match=r"row 1: .*did you mean 'OFFENSE'\? \(stray whitespace\)"):
        read_split(BAD / "stray_space_label.csv", DataSchema(strip_labels=False, **LABELS))


def test_one_megabyte_text_is_accepted(tmp_path):
    big = "Wort " * 210_000  # ~1 MB, above the csv module's default 128 KiB field limit
    path = tmp_path / "big.csv"
    path.write_text(f"text,label\n{big},OFFENSE\nkurz,OTHER\n", encoding="utf-8")
    data = read_split(path, DataSchema())
    assert len(data.texts[0]) == len(big) and data.texts[1] == "kurz"
    np.testing.assert_array_equal(data.labels, [0, 1])

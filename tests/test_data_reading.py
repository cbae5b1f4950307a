"""Reading real and synthetic datasets: row counts, label sets and encodings must be exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from hate_compress.data import DataSchema, detect_format, read_split, sample_dir
from hate_compress.errors import ConfigError, DataError

SHARED = Path("/work/shared/data")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real datasets not present at {SHARED}")


def counts(data) -> dict[str, int]:
    return dict(zip(data.label_names, np.bincount(data.labels, minlength=len(data.label_names)).tolist()))


# -- real data --------------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize(("split", "n", "offense"), [("train", 4310, 1462), ("test", 3047, 1033)])
def test_germeval_coarse(split, n, offense):
    data = read_split(SHARED / "germeval2018" / f"{split}.tsv", DataSchema(label_column="coarse"))
    assert len(data) == n and data.rows[0] == 1 and data.rows[-1] == n
    assert counts(data) == {"OFFENSE": offense, "OTHER": n - offense}
    assert DataSchema().default_positive_index(data.label_names) == 0  # OFFENSE, not sorted index 1


@needs_shared
def test_germeval_fine_is_multiclass():
    data = read_split(SHARED / "germeval2018" / "train.tsv", DataSchema(task="multiclass", label_column="fine"))
    assert counts(data) == {"ABUSE": 889, "INSULT": 511, "OTHER": 2848, "PROFANITY": 62}


@needs_shared
@pytest.mark.parametrize(("name", "n", "labels"), [
    ("v1.tsv", 2935, ["Gender abusive", "Geopolitical", "Personal", "Political", "Religious"]),
    ("v2.csv", 4851, ["Geopolitical", "Personal", "Political", "Religious"]),
])
def test_bengali_hate(name, n, labels):
    data = read_split(SHARED / "bengali_hate" / name, DataSchema(task="multiclass"))
    assert len(data) == n and data.label_names == labels
    assert all(t.strip() for t in data.texts)


@needs_shared
def test_banglamultihate_keeps_none_as_a_label():
    path = SHARED / "banglamultihate" / "multitask.tsv"
    data = read_split(path, DataSchema(task="multiclass", label_column="hate_type"))
    assert len(data) == 2163
    assert counts(data) == {"Abusive": 473, "None": 1254, "Political Hate": 263, "Profane": 131,
                            "Religious Hate": 33, "Sexism": 9}


@needs_shared
def test_banglamultihate_binary_view():
    schema = DataSchema(label_column="hate_type", binary_from={"negative": ["None"]})
    data = read_split(SHARED / "banglamultihate" / "multitask.tsv", schema)
    assert data.label_names == ["NotHate", "Hate"] and schema.positive_label == "Hate"
    assert counts(data) == {"NotHate": 1254, "Hate": 909}
    assert schema.default_positive_index(data.label_names) == 1


# -- multilabel encodings ---------------------------------------------------------------------

ROWS = [("du Dummkopf", ["insult"]), ("ich finde dich", ["threat"]), ("du Idiot, ich finde dich",
        ["insult", "threat"]), ("schönes Wetter", [])]


def _zero_one_file(tmp_path: Path) -> Path:
    lines = ["text,insult,threat"] + [f'"{t}",{int("insult" in ls)},{int("threat" in ls)}' for t, ls in ROWS]
    path = tmp_path / "ml01.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_multilabel_zero_one_columns(tmp_path):
    data = read_split(_zero_one_file(tmp_path), DataSchema(task="multilabel", label_columns=["insult", "threat"]))
    assert data.label_names == ["insult", "threat"] and data.labels.dtype == np.float32
    np.testing.assert_array_equal(data.labels, [[1, 0], [0, 1], [1, 1], [0, 0]])


def test_multilabel_delimited_column_matches_zero_one(tmp_path):
    path = tmp_path / "mldelim.tsv"
    body = [f"{t}\t{'|'.join(ls) or 'insult'}" for t, ls in ROWS[:3]] + ["noch ein Dummkopf\t insult | insult "]
    path.write_text("text\tlabels\n" + "\n".join(body) + "\n", encoding="utf-8")
    data = read_split(path, DataSchema(task="multilabel", label_column="labels", label_delimiter="|"))
    assert data.label_names == ["insult", "threat"]
    np.testing.assert_array_equal(data.labels, [[1, 0], [0, 1], [1, 1], [1, 0]])


def test_multilabel_delimited_unknown_label_names_row(tmp_path):
    path = tmp_path / "mld.csv"
    path.write_text('text,labels\na,insult\nb,"insult,treat"\n', encoding="utf-8")
    schema = DataSchema(task="multilabel", label_column="labels", label_delimiter=",",
                        label_names=["insult", "threat"])
    with pytest.raises(DataError, match=r"mld\.csv: row 2: unknown label 'treat'.*did you mean 'threat'"):
        read_split(path, schema)


def test_jsonl_reads_like_csv(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"text": t, "label": "OFFENSE" if "insult" in ls else "OTHER"}) for t, ls in ROWS]
    path.write_text("\r\n".join(lines) + "\n", encoding="utf-8")
    data = read_split(path, DataSchema())
    assert data.texts == [t for t, _ in ROWS] and data.labels.tolist() == [0, 1, 0, 1]


def test_jsonl_missing_key_names_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "X"}\n{"text": "b", "lable": "Y"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl: row 2: missing key 'label'.*did you mean 'lable'"):
        read_split(path, DataSchema())


def test_row_after_multiline_field_also_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\na,X\n"zwei\nZeilen",Y\n\nc,Z\n', encoding="utf-8")
    data = read_split(path, DataSchema(task="multiclass"))
    assert data.rows == [1, 2, 4] and data.texts[1] == "zwei\nZeilen"
    with pytest.raises(DataError, match=r"d\.csv: row 4 \(line 6\): unknown label 'Z'"):
        read_split(path, DataSchema(task="multiclass", label_names=["X", "Y"]))


def test_explicit_format_overrides_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("text\tlabel\na\tX\nb\tY\n", encoding="utf-8")
    assert read_split(path, DataSchema(), fmt="tsv").label_names == ["X", "Y"]
    assert detect_format(Path("x.JSONL")) == "jsonl"
    with pytest.raises(ConfigError, match="data.format"):
        read_split(path, DataSchema(), fmt="excel")


def test_comma_file_read_as_tsv_says_so(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("text,label\na,X\n", encoding="utf-8")
    with pytest.raises(DataError, match="looks comma-separated; set data.format=csv"):
        read_split(path, DataSchema())


# -- schema validation ------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"task": "regression"}, "data.task"),
    ({"task": "multilabel"}, "data.label_columns"),
    ({"task": "multilabel", "label_columns": ["a"], "label_delimiter": "|"}, "data.label_delimiter"),
    ({"label_columns": ["a", "b"]}, "data.label_columns"),
    ({"label_names": ["A", "B", "C"]}, "data.label_names"),
    ({"label_names": ["A", "B"], "positive_label": "C"}, "data.positive_label"),
    ({"task": "multiclass", "positive_label": "A"}, "data.positive_label"),
    ({"binary_from": {"negative": ["None"], "postive": ["x"]}}, "data.binary_from.postive"),
    ({"binary_from": {"negative": ["None"]}, "label_names": ["no", "yes"]}, "data.label_names"),
])
def test_schema_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        DataSchema(**kwargs)


def test_schema_accepts_omegaconf_values():
    cfg = OmegaConf.create({"task": "binary", "label_column": "hate_type",
                            "binary_from": {"negative": ["None", "Neutral"]}})
    schema = DataSchema(**cfg)
    assert schema.binary_from["negative"] == ["None", "Neutral"] and type(schema.binary_from["negative"]) is list
    ml = DataSchema(**OmegaConf.create({"task": "multilabel", "label_columns": ["a", "b"]}))
    assert ml.label_columns == ["a", "b"] and type(ml.label_columns) is list


# -- bundled synthetic sample -----------------------------------------------------------------


def test_sample_files_are_reproducible(tmp_path):
    from hate_compress.data.sample import make_sample

    make_sample.main(tmp_path)
    for name in ("synthetic_train.csv", "synthetic_test.csv"):
        assert (tmp_path / name).read_bytes() == (sample_dir() / name).read_bytes(), name


def test_sample_is_learnable_but_not_trivial():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    train = read_split(sample_dir() / "synthetic_train.csv", DataSchema())
    test = read_split(sample_dir() / "synthetic_test.csv", DataSchema())
    assert (len(train), len(test)) == (400, 150)
    assert train.label_names == test.label_names == ["OFFENSE", "OTHER"]
    assert not set(train.texts) & set(test.texts)
    vec = TfidfVectorizer()
    model = LogisticRegression(max_iter=1000).fit(vec.fit_transform(train.texts), train.labels)
    f1 = f1_score(test.labels, model.predict(vec.transform(test.texts)), pos_label=0)
    assert 0.75 <= f1 <= 0.97, f1


def test_banglamultihate_multilabel_view(tmp_path):
    """hate_type + to_whom as labels, "None" dropped; a row may have no label at all."""
    path = tmp_path / "mh.tsv"
    path.write_text("id\ttext\thate_type\thate_severity\tto_whom\n"
                    "1\tক\tAbusive\tMild\tIndividual\n"
                    "2\tখ\tNone\tLittle to None\tNone\n"
                    "3\tগ\tPolitical Hate\tSevere\tSociety\n", encoding="utf-8")
    schema = DataSchema(task="multilabel", label_column=None,
                        multilabel_from={"columns": ["hate_type", "to_whom"], "ignore": ["None"]})
    got = read_split(path, schema)
    assert got.label_names == ["Abusive", "Individual", "Political Hate", "Society"]
    assert got.labels.tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]]


# -- quoting: a stray quote must not swallow rows ------------------------------------------------


@pytest.mark.parametrize(("body", "message"), [
    ('text\tlabel\n"a\tX\nb\tY\nc"\tX\nd\tY\n',
     r'd\.tsv: row 1: an unbalanced double quote \("\) joined lines 2-4 into one field; TSV rows'),
    ('text\tlabel\n"a\tX\nb\tY\nc\tX\n', r"d\.tsv: row 1: a double quote .* opened at line 2 is never closed"),
    ('text\tlabel\na\tX\n"Hallo" sagte er\tY\n', r"d\.tsv: row 2: .*text follows a closing quote"),
])
def test_stray_quote_is_an_error_not_a_merged_row(tmp_path, body, message):
    path = tmp_path / "d.tsv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_split(path, DataSchema())


def test_numeric_text_column_is_refused_below_the_threshold_accepted(tmp_path):
    path = tmp_path / "d.csv"
    numbers = [f"{1000 + i}" for i in range(9)]
    path.write_text("text,label\n" + "".join(f"{n},{'XY'[i % 2]}\n" for i, n in enumerate(numbers))
                    + "ein echter Text,X\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"column 'text' \(data\.text_column\) holds numbers, not "
                                        r"text, in 9 of 10 rows \(row 1: '1000'\)"):
        read_split(path, DataSchema())
    path.write_text("text,label\n42,X\n3.5 Sterne,Y\n1.000,X\n+7,Y\nZahl 9,X\n", encoding="utf-8")
    assert len(read_split(path, DataSchema())) == 5  # 3 of 5 numeric: texts with numbers in them


def test_read_texts_uses_the_training_checks(tmp_path):
    from hate_compress.data.reading import read_texts

    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,"zwei\nZeilen"\n2,eins\n', encoding="utf-8")
    texts = read_texts(path, "text")
    assert texts.texts == ["zwei\nZeilen", "eins"] and texts.rows == [1, 2]
    with pytest.raises(DataError, match=r"in\.csv: missing column 'tweet' \(text_column\)"):
        read_texts(path, "tweet")
    with pytest.raises(DataError, match=r"column 'id' \(text_column\) holds numbers"):
        read_texts(path, "id")
    lines = tmp_path / "in.txt"
    lines.write_bytes("eins\r\nzwei \u2028 noch zwei\n\ndrei".encode())
    texts = read_texts(lines, "text")  # U+2028 is not a line break; blank lines keep their row
    assert texts.texts == ["eins", "zwei \u2028 noch zwei", "drei"] and texts.rows == [1, 2, 4]
    lines.write_bytes(b"eins\nzw\xf6lf\n")
    with pytest.raises(DataError, match=r"in\.txt: line 2: bytes are not valid UTF-8"):
        read_texts(lines, "text")

"""Label texts with a saved model: `python -m hate_compress.predict model=<dir> input=<file or ->`.

Input: a CSV/TSV/JSONL file with a text column, a .txt file or stdin with one text per line.
Output (stdout or `output=<file>`): CSV or JSONL with the text, the predicted label(s) and one
probability column per label. Works for every artifact the pipeline saves — teacher, student,
pruned or quantized — because they all reload through `load_classifier` (safetensors only).
A directory holding `model.onnx` runs with ONNX Runtime instead (`hate_compress.onnx_runtime`),
and then torch, Lightning and Hydra are never imported: `load_predictor` picks the backend.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hate_compress.data.reading import Texts, decode_bytes, read_texts, text_lines
from hate_compress.errors import ConfigError, DataError, HateCompressError

USAGE = ("usage: python -m hate_compress.predict model=<dir> input=<file or -> "
         "[output=<file or ->] [format=csv|jsonl] [text_column=text] [batch_size=64]")
OPTIONS = {"model": None, "input": "-", "output": "-", "format": None, "text_column": "text",
           "batch_size": "64"}


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    opts = dict(OPTIONS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in OPTIONS:
            raise ConfigError(f"unknown argument {arg!r}; {USAGE}")
        opts[key] = value
    if not opts["model"]:
        raise ConfigError(f"model=<dir> is required; {USAGE}")
    return opts


UNKNOWN_SHARE = 0.5  # warn when more of an input's tokens than this are the unknown token


def read_input(source: str, text_column: str) -> Texts:
    """The texts to label: stdin (one per line) or a file, as strictly as training reads."""
    if source == "-":
        return text_lines(decode_bytes(sys.stdin.buffer.read(), "<stdin>"), "<stdin>")
    return read_texts(source, text_column, option="text_column")


def unknown_token_share(predictor, texts: Sequence[str]) -> float | None:
    """Share of the tokens the model sees that are its unknown token (None if it has none).

    Text in a script the tokenizer never saw (Bengali on a German model) becomes all `[UNK]`:
    the predictions are then one constant guess, which looks like a result."""
    ids, unk = predictor.token_ids(list(texts)), predictor.unk_token_id
    if unk is None:
        return None
    total = sum(len(seq) for seq in ids)
    return sum(list(seq).count(unk) for seq in ids) / total if total else None


def warn_unknown_tokens(predictor, texts: Texts) -> None:
    share = unknown_token_share(predictor, texts.texts)
    if share is not None and share > UNKNOWN_SHARE:
        print(f"warning: {texts.source}: {share:.0%} of the tokens are unknown to the model's "
              f"tokenizer ({predictor.unk_token}); is the text in the language the model was trained on?",
              file=sys.stderr)


def check_one_prediction_per_row(texts: Texts, rows: list[dict]) -> None:
    if len(rows) != len(texts):
        raise DataError(f"{texts.source}: {len(texts)} rows in but {len(rows)} predictions out")


def batched(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TorchPredictor:
    """Label scores from a saved torch artifact (safetensors + restorers)."""

    runtime = "torch"

    def __init__(self, directory: str):
        from hate_compress.artifacts import load_classifier

        self.model, self.tokenizer, self.meta = load_classifier(directory)
        self.unk_token_id = getattr(self.tokenizer, "unk_token_id", None)
        self.unk_token = getattr(self.tokenizer, "unk_token", None)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False, truncation=True,
                              max_length=self.meta.get("max_length", 128))["input_ids"]

    def scores(self, texts: list[str]) -> tuple[list, list]:
        import torch

        from hate_compress.measure.quality import predictions, probabilities

        task = self.meta["task"]
        enc = self.tokenizer(texts, truncation=True, max_length=self.meta.get("max_length", 128),
                             padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(enc["input_ids"], enc["attention_mask"]).logits
        return probabilities(logits, task).tolist(), predictions(logits, task).tolist()


def load_predictor(directory: str):
    """The backend a model directory needs: ONNX Runtime for `model.onnx`, else torch."""
    from hate_compress.onnx_runtime import OnnxPredictor, is_onnx_dir

    return OnnxPredictor(directory) if is_onnx_dir(directory) else TorchPredictor(directory)


def predict_texts(predictor, texts: list[str], batch_size: int = 64):
    """Rows of {text, label, prob_<label>...}; the label is '|'-joined for multilabel."""
    names, task = predictor.meta["label_names"], predictor.meta["task"]
    rows = []
    for chunk in batched(texts, batch_size):
        probs, preds = predictor.scores(chunk)
        for text, p, y in zip(chunk, probs, preds):
            if task == "multilabel":
                label = "|".join(n for n, on in zip(names, y) if on)
            else:
                label = names[y]
            rows.append({"text": text, "label": label,
                         **{f"prob_{n}": round(v, 6) for n, v in zip(names, p)}})
    return rows


def write_rows(rows: list[dict], target: str, fmt: str | None) -> None:
    fmt = fmt or ("jsonl" if target.endswith((".jsonl", ".json")) else "csv")
    if fmt not in ("csv", "jsonl"):
        raise ConfigError(f"format={fmt!r} must be csv or jsonl")
    buffer = io.StringIO()
    if fmt == "jsonl":
        for row in rows:
            buffer.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if target == "-":
        sys.stdout.write(buffer.getvalue())
    else:
        Path(target).write_text(buffer.getvalue(), encoding="utf-8")


HELP = f"""{USAGE}

Label texts with a model directory saved by the pipeline (teacher, student, pruned, quantized
or ONNX). The directory is `final_model` or `<stage>/model` of a run.

  model=<dir>        saved model directory (required)
  input=<file or ->  .csv/.tsv/.jsonl with a text column, .txt or stdin: one text per line
  output=<file or -> where to write the predictions (default: stdout)
  format=csv|jsonl   output format (default: from the output file name, else csv)
  text_column=text   the column holding the text in a CSV/TSV/JSONL input
  batch_size=64      texts per forward pass
"""


def wants_help(argv: Sequence[str]) -> bool:
    """`--help`/`-h` anywhere: users try it first, and it must not be an "unknown argument"."""
    return any(arg in ("-h", "--help") for arg in argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        print(HELP, end="")
        return 0
    try:
        opts = parse_args(argv)
        predictor = load_predictor(opts["model"])
        texts = read_input(opts["input"], opts["text_column"])
        warn_unknown_tokens(predictor, texts)
        rows = predict_texts(predictor, texts.texts, int(opts["batch_size"]))
        check_one_prediction_per_row(texts, rows)
        write_rows(rows, opts["output"], opts["format"])
    except HateCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

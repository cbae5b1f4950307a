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


def read_texts(source: str, text_column: str) -> list[str]:
    if source == "-":
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
    elif suffix in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    else:
        raise DataError(f"{path}: unknown input format {suffix!r}; use .csv, .tsv, .jsonl or .txt")
    if rows and text_column not in rows[0]:
        raise DataError(f"{path}: no column {text_column!r} (columns: {sorted(rows[0])}); "
                        "set text_column=...")
    texts = [str(row[text_column] or "") for row in rows]
    for i, text in enumerate(texts, start=1):
        if not text.strip():
            raise DataError(f"{path}: row {i}: text in column {text_column!r} is empty")
    return texts


def batched(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TorchPredictor:
    """Label scores from a saved torch artifact (safetensors + restorers)."""

    runtime = "torch"

    def __init__(self, directory: str):
        from hate_compress.models.artifact import load_classifier

        self.model, self.tokenizer, self.meta = load_classifier(directory)

    def scores(self, texts: list[str]) -> tuple[list, list]:
        import torch

        from hate_compress.metrics import predictions, probabilities

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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
        predictor = load_predictor(opts["model"])
        texts = read_texts(opts["input"], opts["text_column"])
        rows = predict_texts(predictor, texts, int(opts["batch_size"]))
        write_rows(rows, opts["output"], opts["format"])
    except HateCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

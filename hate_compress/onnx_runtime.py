"""Run an exported model with ONNX Runtime: sessions, tokenization and label scores in numpy.

This module is what a serving process imports to label texts with an ONNX model directory
(`model.onnx` + `tokenizer.json` + `hate_compress.json`). It deliberately imports neither torch,
Lightning, Hydra nor transformers: the tokenizer is read with the `tokenizers` library straight
from `tokenizer.json`, and softmax/sigmoid are a few lines of numpy — so `predict` starts in a
fraction of the time the torch path needs (measured in README "Serving with ONNX Runtime").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hate_compress.errors import ModelLoadError

ONNX_FILE = "model.onnx"
META_FILE = "hate_compress.json"  # same name as artifacts.py (not imported: it pulls torch)
INPUT_NAMES = ("input_ids", "attention_mask")


def is_onnx_dir(directory: str | os.PathLike) -> bool:
    return (Path(directory) / ONNX_FILE).is_file()


def make_session(path: str | os.PathLike, threads: int = 1):
    """An ORT CPU session with a fixed intra-op thread count (reproducible latency, like
    `measure.threads` for torch) and every graph optimization ORT has (the default level)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT's own warnings about unused initializers etc.
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: ONNX Runtime cannot load this model ({first})") from None


def run_logits(session, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    feed = {"input_ids": input_ids.astype(np.int64, copy=False),
            "attention_mask": attention_mask.astype(np.int64, copy=False)}
    return session.run(None, feed)[0]


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Same maths as `hate_compress.measure.quality.probabilities`, in numpy."""
    logits = logits.astype(np.float64)
    if task == "multilabel":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def predictions(logits: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    if task == "multilabel":
        return (probabilities(logits, task) > threshold).astype(np.int64)
    return logits.argmax(-1)


def load_tokenizer(directory: Path, max_length: int):
    """The saved fast tokenizer, truncating to `max_length` and padding like the HF wrapper did."""
    from tokenizers import Tokenizer

    path = directory / "tokenizer.json"
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing tokenizer file (an ONNX model dir needs tokenizer.json)")
    tokenizer = Tokenizer.from_file(str(path))
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    pad_token = config.get("pad_token") or "[PAD]"
    if isinstance(pad_token, dict):
        pad_token = pad_token.get("content", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ModelLoadError(f"{config_path}: pad token {pad_token!r} is not in the vocabulary")
    tokenizer.enable_truncation(max_length=int(max_length))
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token,
                             direction=config.get("padding_side", "right"))
    return tokenizer


class OnnxPredictor:
    """Label scores for raw texts from an ONNX model directory (the `predict` backend)."""

    runtime = "onnxruntime"

    def __init__(self, directory: str | os.PathLike, threads: int = 1):
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise ModelLoadError(f"{meta_path}: not a hate_compress model directory (no {META_FILE})")
        self.meta = json.loads(meta_path.read_text())
        self.task = self.meta["task"]
        self.tokenizer = load_tokenizer(directory, self.meta.get("max_length", 128))
        self.session = make_session(directory / ONNX_FILE, threads)
        unk = self.unk_token = getattr(self.tokenizer.model, "unk_token", None)
        self.unk_token_id = self.tokenizer.token_to_id(unk) if unk else None

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """The ids the model reads, without special tokens or padding (for the [UNK] check)."""
        return [[i for i, m in zip(e.ids, e.attention_mask) if m]
                for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def logits(self, texts: list[str]) -> np.ndarray:
        return run_logits(self.session, *self.encode(texts))

    def scores(self, texts: list[str]) -> tuple[list, list]:
        """`(probabilities, predictions)` as nested lists, one row per text."""
        logits = self.logits(texts)
        return probabilities(logits, self.task).tolist(), predictions(logits, self.task).tolist()

"""Saving and loading a classifier as a self-describing directory.

Layout: `model.safetensors` (weights), `encoder_config.json` (the encoder's HF config),
`hate_compress.json` (labels, task, head, and the ordered list of compression steps applied),
the tokenizer files, the README.md model card, and a `config.json` that stops plain transformers.

Why that `config.json`: our head (mean or [CLS] pooling, Linear-ReLU-Dropout-Linear) has no
`*ForSequenceClassification` equivalent (BERT's is pooler Linear-Tanh then one Linear), and the
weights are named `encoder.*`/`head.*`. With the encoder's config under `config.json`,
`AutoModelForSequenceClassification.from_pretrained(dir)` "loaded" the directory with every weight
missing, labels LABEL_0/1 and random logits, silently. Now `config.json` names the unknown
model type `hate_compress`, so transformers raises instead; directories saved before keep
loading here (the encoder config is then read from `config.json`).
ONNX Runtime artifacts (`export_classifier`) share the card, with `model.onnx` instead.

Compression changes more than weights: structured pruning shrinks matrices and quantization
swaps modules. Each step is recorded in `compression` and a registered *restorer*
(`hate_compress.compression_steps`) replays the architecture change on a freshly built model before
the weights are loaded, so pruned and quantized models reload without pickle and give the same
predictions as before saving. Weights are only ever read with safetensors — nothing on disk can
execute code.

This module sits above `compress` and `models` (it imports the compression package, which
registers every restorer) so that nothing below it needs to know how artifacts are stored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

# importing the two packages registers every compression step's restorer
from hate_compress.compress.pruning import make_permanent
from hate_compress.compress.quantization import checked_options, get_quantizer
from hate_compress.compress.quantization.onnx import (
    EXPORTER,
    OnnxClassifier,
    export_onnx,
    optimize_for_transformers,
)
from hate_compress.compression_steps import RESTORERS, compression_log, packing_step
from hate_compress.errors import ConfigError, ModelLoadError
from hate_compress.measure.footprint import count_parameters
from hate_compress.models.backbone import drop_pooler
from hate_compress.models.card import model_card_markdown
from hate_compress.models.classifier import HateClassifier
from hate_compress.onnx_runtime import ONNX_FILE
from hate_compress.storage import write_text_atomically

META_FILE = "hate_compress.json"
WEIGHTS_FILE = "model.safetensors"
ENCODER_CONFIG_FILE = "encoder_config.json"
FOREIGN_MODEL_TYPE = "hate_compress"  # unknown to transformers' Auto* classes: they raise
FORMAT_VERSION = 1


@dataclass
class ModelCard:
    """What a saved model is for; written to hate_compress.json and README.md."""

    task: str
    label_names: list[str]
    positive_label: str | None = None
    max_length: int = 128
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _plain_state(model: HateClassifier) -> dict[str, torch.Tensor]:
    state = {}
    restorer = packing_step(compression_log(model))
    if restorer is not None:
        return {k: v.contiguous() for k, v in restorer.pack(model).items()}
    for name, tensor in model.state_dict().items():
        state[name] = tensor.detach().contiguous()
    return state


def save_classifier(model: HateClassifier, directory: str | Path, tokenizer, card: ModelCard) -> Path:
    """Write `model` as a self-describing directory that `load_classifier` rebuilds.

    Pruning masks still installed (one-shot pruning, a fine-tune that kept them) are made
    permanent first — on the model itself, so what is measured and compressed after saving is
    exactly what was saved. Every stage saves through here, so no path can write a
    reparametrised (unloadable, oversized) state dict.
    """
    directory = Path(directory)
    make_permanent(model)
    directory.mkdir(parents=True, exist_ok=True)
    state = _plain_state(model)
    # safetensors refuses shared storage (tied weights); clone those views
    seen: dict[int, str] = {}
    for name, tensor in list(state.items()):
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
        if ptr in seen and ptr != -1:
            state[name] = tensor.clone()
        seen[ptr] = name
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    model.encoder.config.to_json_file(str(directory / ENCODER_CONFIG_FILE))
    write_guard_config(directory, card.label_names)
    write_card(directory, {
        "format_version": FORMAT_VERSION,
        "head": model.head_config,
        "compression": compression_log(model),
        "task": card.task,
        "label_names": list(card.label_names),
        "positive_label": card.positive_label,
        "max_length": card.max_length,
        "metrics": card.metrics,
        **card.extra,
    })
    return directory


def write_guard_config(directory: Path, label_names: list[str]) -> None:
    """`config.json` for the transformers Auto* classes: refuse, and say where the model loads."""
    write_text_atomically(directory / "config.json", json.dumps({
        "model_type": FOREIGN_MODEL_TYPE,
        "architectures": ["HateClassifier"],
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
        "note": "a hate_compress model (encoder + pooling + MLP head), not a transformers "
                "*ForSequenceClassification: load it with hate_compress.artifacts."
                "load_classifier or `python -m hate_compress.predict model=<dir>`; the encoder's "
                f"own config is {ENCODER_CONFIG_FILE}",
    }, indent=2))


def encoder_config(directory: Path):
    """The encoder's HF config: `encoder_config.json`, or `config.json` in directories saved
    before the guard config existed."""
    path = directory / ENCODER_CONFIG_FILE
    if not path.exists():
        path = directory / "config.json"
    try:
        values = json.loads(path.read_text())
        return AutoConfig.for_model(values.pop("model_type"), **values)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{path}: not a readable encoder config ({exc})") from None


def write_card(directory: str | Path, meta: dict) -> None:
    """hate_compress.json and the README model card (shared by torch and ONNX artifacts).

    Written last, so it also makes every file of the artifact readable like any other file the
    user creates: safetensors writes its file 0600, which a model meant to be copied and
    served by another account must not be."""
    directory = Path(directory)
    write_text_atomically(directory / META_FILE, json.dumps(meta, indent=2, default=float))
    write_text_atomically(directory / "README.md", model_card_markdown(meta))
    share_files(directory)


def share_files(directory: Path) -> None:
    """chmod the artifact's files to what `open()` would create: 0644 under the usual umask 022."""
    umask = os.umask(0)
    os.umask(umask)
    for path in directory.iterdir():
        if path.is_file() and not path.is_symlink():
            try:
                path.chmod(0o666 & ~umask)
            except FileNotFoundError:  # a parallel worker's temp file, renamed meanwhile
                continue


def update_card(directory: str | Path, metrics: dict[str, Any]) -> None:
    """Record measured metrics in a saved model's card (weights untouched): sizes and latency
    can only be measured after the artifact exists, so the card is completed afterwards."""
    directory = Path(directory)
    meta = read_meta(directory)
    meta["metrics"] = metrics
    write_card(directory, meta)


def read_meta(directory: str | Path) -> dict:
    path = Path(directory) / META_FILE
    if not path.exists():
        raise ModelLoadError(f"{path}: not a hate_compress model directory (no {META_FILE})")
    return json.loads(path.read_text())


def load_classifier(directory: str | Path, with_tokenizer: bool = True):
    """Rebuild a saved classifier (no network, no pickle). Returns `(model, tokenizer, meta)`."""
    directory = Path(directory)
    meta = read_meta(directory)
    weights = directory / WEIGHTS_FILE
    if meta.get("format") == "onnx":
        raise ModelLoadError(f"{directory}: an ONNX Runtime model (model.onnx), not a torch one; "
                             "load it with hate_compress.onnx_runtime.OnnxPredictor")
    if not weights.exists():
        raise ModelLoadError(f"{weights}: missing weights file")
    encoder = drop_pooler(AutoModel.from_config(encoder_config(directory)))
    head = meta["head"]
    model = HateClassifier(
        encoder, head["num_labels"], pooling=head["pooling"], head_hidden=head["head_hidden"],
        dropout=head["dropout"],
    )
    steps = meta.get("compression", [])
    for step in steps:
        if step["kind"] not in RESTORERS:
            raise ModelLoadError(f"{directory}: unknown compression step {step['kind']!r}")
        RESTORERS[step["kind"]].rebuild(model, step)
    model.compression_log = list(steps)
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise ModelLoadError(f"{weights}: not a valid safetensors file ({exc})") from None
    restorer = packing_step(steps)
    if restorer is not None:  # the same step that packed the weights when they were saved
        restorer.unpack(model, state)
    else:
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if not m.endswith("position_ids")]
        if missing or unexpected:
            raise ModelLoadError(
                f"{weights}: weights do not match the architecture "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(directory)) if with_tokenizer else None
    return model, tokenizer, meta


def export_classifier(
    model: nn.Module,
    tokenizer,
    directory: str | Path,
    method: str,
    options: dict,
    example: Mapping[str, torch.Tensor],
    *,
    meta: dict,
    calibration: Iterable[Mapping] | None = None,
    input_key: str = "student",
    scratch: str | Path | None = None,
) -> tuple[OnnxClassifier, dict]:
    """Write an ONNX model directory for `model` with `method`; returns the session adapter
    and what was done (`exporter`, `optimize` fusions, calibration...).

    `meta` is the card (task, label names, max_length, provenance...); the fp32 export lives in
    `scratch` (default: beside `directory`) because only the shipped graph belongs in the dir."""
    quantizer = get_quantizer(method)
    if getattr(quantizer, "runtime", "torch") != "onnxruntime":
        raise ConfigError(f"quant.method={method!r} is not an ONNX method")
    opts = checked_options(quantizer, method, options)
    directory = Path(directory)
    scratch = Path(scratch) if scratch else directory.parent / "onnx_fp32"
    fp32 = export_onnx(model, scratch / ONNX_FILE, example)
    details: dict[str, Any] = {"exporter": EXPORTER, "torch": torch.__version__}
    if opts["optimize"]:
        details["fused_ops"] = optimize_for_transformers(fp32, scratch / "optimized.onnx", model)
        fp32 = scratch / "optimized.onnx"
    directory.mkdir(parents=True, exist_ok=True)
    details.update(quantizer.convert(fp32, directory / ONNX_FILE, opts,
                                     list(calibration or []), input_key))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    steps = compression_log(model) + [{"kind": "onnx_export", "method": method, "options": opts,
                                       **details}]
    write_card(directory, {"format_version": FORMAT_VERSION, "format": "onnx",
                           "runtime": "onnxruntime", **meta, "compression": steps})
    adapter = OnnxClassifier(directory / ONNX_FILE, count_parameters(model))
    return adapter, {"fp32_path": str(fp32), **details}

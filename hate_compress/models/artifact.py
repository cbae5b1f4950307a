"""Saving and loading a classifier as a self-describing directory.

Layout: `model.safetensors` (weights), `config.json` (the encoder's HF config), `hate_compress.json`
(labels, task, head, and the ordered list of compression steps applied), and the tokenizer files.

Compression changes more than weights: structured pruning shrinks matrices and quantization
swaps modules. Each step is recorded in `compression` and a registered *restorer* replays the
architecture change on a freshly built model before the weights are loaded, so pruned and
quantized models reload without pickle and give the same predictions as before saving.
Weights are only ever read with safetensors — nothing on disk can execute code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import prune as torch_prune
from transformers import AutoConfig, AutoModel, AutoTokenizer

from hate_compress.errors import ModelLoadError
from hate_compress.models.backbone import drop_pooler
from hate_compress.models.classifier import HateClassifier

META_FILE = "hate_compress.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


@dataclass
class Restorer:
    """How to replay one compression step on a fresh model and (de)serialise its weights."""

    rebuild: Callable[[HateClassifier, dict], None]
    pack: Callable[[HateClassifier], dict[str, torch.Tensor]] | None = None
    unpack: Callable[[HateClassifier, dict[str, torch.Tensor]], None] | None = None


RESTORERS: dict[str, Restorer] = {}


def register_restorer(kind: str, restorer: Restorer) -> None:
    RESTORERS[kind] = restorer


@dataclass
class ModelCard:
    """What a saved model is for; written to hate_compress.json and README.md."""

    task: str
    label_names: list[str]
    positive_label: str | None = None
    max_length: int = 128
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def compression_log(model: nn.Module) -> list[dict]:
    return list(getattr(model, "compression_log", []))


def record_compression(model: nn.Module, step: dict) -> None:
    """Remember an architecture-changing step so `load_classifier` can replay it."""
    if step["kind"] not in RESTORERS:
        raise KeyError(f"no restorer registered for compression step {step['kind']!r}")
    model.compression_log = compression_log(model) + [dict(step)]


def make_permanent(model: nn.Module) -> int:
    """Bake every `torch.nn.utils.prune` mask into its weight; returns how many were removed.

    A reparametrised module holds ``weight_orig`` + ``weight_mask`` instead of ``weight``: its
    state dict does not load into a fresh model, it is twice the size on disk, and modules that
    swap weights (quantization) cannot assign to a weight recomputed by the mask hook.
    """
    removed = 0
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
                removed += 1
    return removed


def _plain_state(model: HateClassifier) -> dict[str, torch.Tensor]:
    state = {}
    for step in compression_log(model):
        packer = RESTORERS[step["kind"]].pack
        if packer is not None:
            return {k: v.contiguous() for k, v in packer(model).items()}
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
    model.encoder.config.save_pretrained(str(directory))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
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


def write_card(directory: str | Path, meta: dict) -> None:
    """hate_compress.json and the README model card (shared by torch and ONNX artifacts)."""
    directory = Path(directory)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=float))
    (directory / "README.md").write_text(_model_card_markdown(meta))


def _model_card_markdown(meta: dict) -> str:
    lines = [
        "# hate_compress model",
        "",
        f"- task: {meta['task']}; labels: {', '.join(meta['label_names'])}",
        f"- compression: {', '.join(s['kind'] for s in meta['compression']) or 'none'}",
        "",
        "Use: `python -m hate_compress.predict model=<this dir> input=<file or ->`",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for stage, values in meta.get("metrics", {}).items():
        if isinstance(values, dict):
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    lines.append(f"| {stage}/{k} | {v:.4g} |")
        elif isinstance(values, (int, float)):
            lines.append(f"| {stage} | {values:.4g} |")
    return "\n".join(lines) + "\n"


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
    config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    encoder = drop_pooler(AutoModel.from_config(config))
    head = meta["head"]
    model = HateClassifier(
        encoder, head["num_labels"], pooling=head["pooling"], head_hidden=head["head_hidden"],
        dropout=head["dropout"],
    )
    steps = meta.get("compression", [])
    for step in steps:
        if step["kind"] not in RESTORERS:
            # restorers live in the compression package; importing it registers them
            import hate_compress.compress  # noqa: F401
        if step["kind"] not in RESTORERS:
            raise ModelLoadError(f"{directory}: unknown compression step {step['kind']!r}")
        RESTORERS[step["kind"]].rebuild(model, step)
    model.compression_log = list(steps)
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise ModelLoadError(f"{weights}: not a valid safetensors file ({exc})") from None
    unpackers = [RESTORERS[s["kind"]].unpack for s in steps if RESTORERS[s["kind"]].unpack]
    if unpackers:
        unpackers[-1](model, state)
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

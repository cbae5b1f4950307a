"""The one path every quantization method goes through, and the registry that names them.

`quantize_model` picks the target Linear layers (encoder only — embeddings are lookups, not
matmuls, and the tiny head decides every prediction, so both stay in float unless `include_head`
asks otherwise), hands them to the method (`Quantizer.apply`), and records a `quant_<method>`
step so `load_classifier` can replay the module change on a fresh model (`Quantizer.rebuild`,
weights restored by `packing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from hate_compress.compress.quantization.packing import pack_state, unpack_state
from hate_compress.compression_steps import (
    Restorer,
    compression_log,
    record_compression,
    register_restorer,
)
from hate_compress.errors import ConfigError, HateCompressError
from hate_compress.registry import Registry, with_defaults

STEP_PREFIX = "quant_"


class QuantizationUnavailable(HateCompressError):
    """The method cannot run on this machine (library or kernel missing).

    A separate type so the pipeline can record the stage as *skipped* with `reason` instead of
    failing the whole run: a missing 4-bit kernel is a property of the machine, not a user error.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = str(self)


# ---------------------------------------------------------------------------------------------
# shared helpers: which Linears, how to swap one, how to pull tensors out of a batch


def linear_targets(model: nn.Module, include_head: bool = False) -> list[str]:
    """Names of the Linear layers a method should quantize.

    Embedding modules are skipped by name too, because some encoders (ALBERT, ELECTRA) project
    embeddings with a Linear that is as sensitive as the embeddings themselves.
    """
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        in_encoder = name.startswith("encoder.") and ".embeddings." not in f".{name}."
        if in_encoder or (include_head and name.startswith("head.")):
            names.append(name)
    return names


def embedding_targets(model: nn.Module) -> list[str]:
    """Names of the encoder's embedding tables (token, position, type)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Embedding) and name.startswith("encoder.")]


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def batch_inputs(batch: Mapping, input_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        inputs = batch["inputs"][input_key]
        return inputs["input_ids"], inputs["attention_mask"]
    except (KeyError, TypeError):
        have = list(batch.get("inputs", {})) if isinstance(batch, Mapping) else type(batch).__name__
        raise ConfigError(
            f"quant.input_key={input_key!r}: calibration batch has no inputs[{input_key!r}]"
            f"[input_ids/attention_mask] (inputs: {have})"
        ) from None


class Quantizer:
    """One method: which options it takes, how it changes a model, and how to replay that."""

    name: ClassVar[str]
    runtime: ClassVar[str] = "torch"  # what runs the quantized model (onnx: onnxruntime)
    options: ClassVar[dict[str, Any]] = {}  # accepted options and their defaults
    selects_linears: ClassVar[bool] = True  # False: the method acts on the whole model

    def unavailable(self) -> str | None:
        """Why this method cannot run here (one line), or None."""
        return None

    def apply(self, model: nn.Module, targets: list[str], opts: dict, calibration: list | None,
              input_key: str) -> dict:
        """Quantize `targets` in place; return extra fields for the recorded step."""
        raise NotImplementedError

    def rebuild(self, model: nn.Module, step: dict) -> None:
        """Recreate the quantized modules on a fresh model; the weights come from `unpack_state`."""
        raise NotImplementedError


class NoQuantization(Quantizer):
    name = "none"

    def apply(self, model, targets, opts, calibration, input_key):
        return {}

    def rebuild(self, model, step):
        return None


QUANTIZERS: Registry[Quantizer] = Registry("quantizer", "quant.method")


def register_quantizer(q: Quantizer) -> None:
    """Make `q` selectable as `quant.method` (also from a plugin); torch methods also get a
    restorer for reloading."""
    QUANTIZERS.add(q.name, q)
    if q.name != "none" and q.runtime == "torch":
        register_restorer(STEP_PREFIX + q.name,
                          Restorer(rebuild=q.rebuild, pack=pack_state, unpack=unpack_state))


register_quantizer(NoQuantization())


def get_quantizer(method: str) -> Quantizer:
    return QUANTIZERS.get(method)


def checked_options(quantizer: Quantizer, method: str, options: Mapping[str, Any]) -> dict:
    """The method's options with defaults filled in; unknown options are a ConfigError and a
    method that cannot run here raises QuantizationUnavailable (so the stage is skipped)."""
    opts = with_defaults(options, quantizer.options, "quant", f"quant.method={method!r}")
    if method != "none":
        reason = quantizer.unavailable()
        if reason is not None:
            raise QuantizationUnavailable(f"quant.method={method}: {reason}")
    return opts


def quantize_model(
    model: nn.Module,
    method: str,
    calibration_batches: Iterable[Mapping] | None = None,
    input_key: str = "student",
    **options: Any,
) -> nn.Module:
    """Quantize `model` in place with `method` and record the step; returns the same model.

    Raises ConfigError for unknown methods/options or a model that is already quantized, and
    QuantizationUnavailable when the method's library cannot run on this machine.
    """
    quantizer = get_quantizer(method)
    opts = checked_options(quantizer, method, options)
    if method == "none":
        return model
    done = [s["kind"] for s in compression_log(model) if s["kind"].startswith(STEP_PREFIX)]
    if done:
        raise ConfigError(f"quant.method={method!r}: the model is already quantized ({done[0]})")
    calibration = list(calibration_batches) if calibration_batches is not None else None
    targets = (linear_targets(model, bool(opts.get("include_head", False)))
               if quantizer.selects_linears else [])
    extra = quantizer.apply(model, targets, opts, calibration, input_key)
    record_compression(model, {"kind": STEP_PREFIX + method, "method": method, "targets": targets,
                               "options": opts, **extra})
    return model

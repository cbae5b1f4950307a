"""Half precision: `fp16` and `bf16`, a plain cast of every weight.

Forwards run in half precision on CPU (checked on torch 2.13, no fp32 islands needed) and a
forward hook returns float32 logits so metrics never see halves. Measured, not guessed (2-layer
BERT-base-width encoder, seq 64, one thread, AVX512-BF16 CPU): fp16 was ~2.2x *slower* than fp32
(no fp16 GEMM kernels on x86), bf16 ~2x faster. fp16 is therefore a size option on CPU, not a
speed option.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from hate_compress.compress.quantization.base import Quantizer, register_quantizer


def _float32_logits(module: nn.Module, args: Any, output: Any) -> Any:
    """Forward hook: metrics and thresholds assume float32 logits, whatever the weights are."""
    logits = getattr(output, "logits", None)
    if dataclasses.is_dataclass(output) and logits is not None and logits.dtype != torch.float32:
        return dataclasses.replace(output, logits=logits.float())
    return output


def _ensure_float32_logits(model: nn.Module) -> None:
    if not getattr(model, "_float32_logits_hook", False):
        model.register_forward_hook(_float32_logits)
        model._float32_logits_hook = True


class Cast(Quantizer):
    """Half-precision weights: halves the file, no calibration, no special kernels."""

    options = {}
    selects_linears = False
    dtype: ClassVar[torch.dtype]

    def apply(self, model, targets, opts, calibration, input_key):
        self.rebuild(model, {})
        return {"dtype": str(self.dtype).removeprefix("torch.")}

    def rebuild(self, model, step):
        model.to(self.dtype)
        _ensure_float32_logits(model)


class FP16(Cast):
    name = "fp16"
    dtype = torch.float16


class BF16(Cast):
    name = "bf16"
    dtype = torch.bfloat16


for _q in (FP16(), BF16()):
    register_quantizer(_q)

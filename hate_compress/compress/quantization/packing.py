"""Saving quantized weights as plain tensors, and restoring them on reload.

Saving must write the *real* low-bit weights — otherwise the artifact is not smaller and the
size column in the report would be a lie. Quantized weights are tensor subclasses (torchao) or
packed parameters (bitsandbytes) that safetensors cannot store directly, so one shared
`pack_state` / `unpack_state` pair flattens them into their plain component tensors (int8 data,
scales, 4-bit packed bytes, block absmax, ...) and writes them back on reload. The reloaded model
therefore computes with bit-identical weights and gives identical predictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hate_compress.errors import ModelLoadError


def _is_wrapper_subclass(t: Any) -> bool:
    """torchao quantized weights follow the traceable-subclass protocol (`__tensor_flatten__`)."""
    return isinstance(t, torch.Tensor) and type(t) not in (torch.Tensor, nn.Parameter) and hasattr(
        t, "__tensor_flatten__"
    )


def _is_4bit_linear(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.Linear) and hasattr(weight, "quant_state") and hasattr(
        weight, "blocksize"
    )


def pack_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Plain tensors only: a torchao weight `w` becomes `w.qdata`, `w.scale`, ... entries.

    bitsandbytes 4-bit layers already emit their packed bytes and `weight.absmax`-style entries
    from `state_dict()`; they pass through unchanged.
    """
    state: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        _flatten_into(state, name, value.detach())
    return state


def _flatten_into(state: dict[str, torch.Tensor], name: str, value: torch.Tensor) -> None:
    if _is_wrapper_subclass(value):
        inner_names, _ = value.__tensor_flatten__()
        for inner in inner_names:
            _flatten_into(state, f"{name}.{inner}", getattr(value, inner))
    else:
        state[name] = value.as_subclass(torch.Tensor) if type(value) is not torch.Tensor else value


def unpack_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Inverse of `pack_state` on a model whose quantized modules `rebuild` already created."""
    state = dict(state)
    handled: set[str] = set()
    for name, module in model.named_modules():
        if _is_4bit_linear(module):
            _load_4bit(module, f"{name}.weight" if name else "weight", state)
            handled.add(f"{name}.weight")
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if not _is_wrapper_subclass(param):
            continue
        handled.add(name)
        inner_names, _ = param.__tensor_flatten__()
        for inner in inner_names:
            key = f"{name}.{inner}"
            if key not in state:
                if id(param) in seen:
                    continue
                raise ModelLoadError(f"weights file lacks {key!r} of a quantized layer")
            new = state.pop(key)
            old = getattr(param, inner)
            # static activation scales are placeholders until now, so their shape may differ
            if new.shape != old.shape and not inner.startswith("act_"):
                raise ModelLoadError(f"{key}: shape {tuple(new.shape)} != expected {tuple(old.shape)}")
            setattr(param, inner, new.to(old.dtype))
        seen.add(id(param))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m not in handled and not m.endswith("position_ids")]
    if missing or unexpected:
        raise ModelLoadError(
            f"weights do not match the quantized architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def _load_4bit(module: nn.Module, key: str, state: dict[str, torch.Tensor]) -> None:
    from bitsandbytes.nn import Params4bit

    if key not in state:
        raise ModelLoadError(f"weights file lacks the 4-bit weight {key!r}")
    data = state.pop(key)
    stats = {k[len(key) + 1:]: state.pop(k) for k in [k for k in state if k.startswith(key + ".")]}
    module.weight = Params4bit.from_prequantized(data, stats, device="cpu", module=module)
    module.exact_state = None

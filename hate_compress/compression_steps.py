"""The record of the compression steps a model went through, and how to replay each one.

Compression changes more than weights: structured pruning shrinks matrices and quantization
swaps modules. Each such step is appended to `model.compression_log`, and the method that made
it registers a `Restorer` under the step's kind, so `hate_compress.artifacts` can replay the
architecture change on a freshly built model before loading the weights.

A leaf module (nothing of the package but `errors` and `registry`): the compression methods
register here and the artifact layer above them reads here, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hate_compress.errors import ConfigError
from hate_compress.registry import Registry, qualified_name


@dataclass(frozen=True)
class Restorer:
    """How to replay one compression step on a fresh model and (de)serialise its weights.

    `pack` and `unpack` come as a pair: whatever one step packs at save time, the same step
    must unpack at load time (`packing_step`)."""

    rebuild: Callable[[nn.Module, dict], None]
    pack: Callable[[nn.Module], dict[str, torch.Tensor]] | None = None
    unpack: Callable[[nn.Module, dict[str, torch.Tensor]], None] | None = None

    def __post_init__(self):
        if (self.pack is None) != (self.unpack is None):
            raise ValueError("a Restorer needs both pack and unpack, or neither")


RESTORERS: Registry[Restorer] = Registry(
    "compression step", "compression", identity=lambda r: qualified_name(r.rebuild))


def register_restorer(kind: str, restorer: Restorer) -> Restorer:
    return RESTORERS.add(kind, restorer)


def compression_log(model: nn.Module) -> list[dict]:
    return list(getattr(model, "compression_log", []))


def record_compression(model: nn.Module, step: dict) -> None:
    """Remember an architecture-changing step so the artifact loader can replay it."""
    if step["kind"] not in RESTORERS:
        raise ConfigError(RESTORERS.unknown(step["kind"]))
    model.compression_log = compression_log(model) + [dict(step)]


def packing_step(steps: list[dict]) -> Restorer | None:
    """The restorer whose pack/unpack (de)serialises the weights: the LAST step that has one.

    Later steps work on what earlier ones produced, so the last packer is the one that sees the
    final modules; saving and loading must both use that same step."""
    for step in reversed(steps):
        restorer = RESTORERS.get(step["kind"])
        if restorer.pack is not None:
            return restorer
    return None

"""4-bit NormalFloat through bitsandbytes: `nf4`.

``nf4`` — bitsandbytes ``Linear4bit(quant_type="nf4")`` (QLoRA's 4-bit NormalFloat), which has a
CPU backend in bitsandbytes >= 0.45; the weights are quantized by ``.to("cpu")``. A machine whose
bitsandbytes cannot run 4-bit layers skips the stage with the reason (`_bnb_probe`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch
from torch import nn

from hate_compress.compress.quantization.base import Quantizer, register_quantizer, replace_module
from hate_compress.errors import ModelLoadError


@functools.cache
def _bnb_probe() -> str | None:
    """Import bitsandbytes and run one tiny NF4 forward; the reason string if that fails."""
    try:
        import bitsandbytes  # noqa: F401
        from bitsandbytes.nn import Linear4bit
    except Exception as exc:  # ImportError, or a broken native library raising anything
        return f"bitsandbytes is not importable here ({type(exc).__name__}: {exc})"
    try:
        layer = Linear4bit(64, 64, quant_type="nf4", compute_dtype=torch.float32).to("cpu")
        with torch.no_grad():
            out = layer(torch.randn(2, 64))
        if out.shape != (2, 64) or not torch.isfinite(out).all():
            return "bitsandbytes 4-bit matmul gives invalid results on this CPU"
    except Exception as exc:
        return f"bitsandbytes cannot run 4-bit layers on this CPU ({type(exc).__name__}: {exc})"
    return None


@functools.cache
def _nf4_linear_class() -> type:
    """bitsandbytes' Linear4bit whose state_dict stays exact after a CPU forward.

    On AVX512-BF16 CPUs the first eval forward repacks the 4-bit weight in place into a faster
    layout (~1.7x faster than bnb's plain CPU path here), and bnb 0.50's `_save_to_state_dict`
    converts it back with a lossy "best-effort" inverse — and does so *in place*, so merely
    saving changed the live model's logits (by 4e-3 without double quantization). We keep the
    exact serialised state from before the repack and emit that instead.
    """
    from bitsandbytes.nn import Linear4bit

    class NF4Linear(Linear4bit):
        exact_state: dict[str, torch.Tensor] | None = None

        def _exact(self) -> dict[str, torch.Tensor]:
            items = self.weight.quant_state.as_dict(packed=True).items()
            state = {"weight": self.weight.data.detach().clone()}
            state.update({f"weight.{k}": v.detach().clone() for k, v in items})
            return state

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            quant_state = getattr(self.weight, "quant_state", None)
            if (self.exact_state is None and quant_state is not None
                    and not getattr(quant_state, "packing_format_for_cpu", False)):
                self.exact_state = self._exact()
            return super().forward(x)

        def _save_to_state_dict(self, destination, prefix, keep_vars):
            packed = getattr(getattr(self.weight, "quant_state", None), "packing_format_for_cpu",
                             False)
            if not packed or self.exact_state is None:
                return super()._save_to_state_dict(destination, prefix, keep_vars)
            for key, value in self.exact_state.items():
                destination[prefix + key] = value
            if self.bias is not None:
                destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    return NF4Linear


class NF4(Quantizer):
    name = "nf4"
    # compress_statistics = QLoRA's double quantization of the block absmax values
    options = {"include_head": False, "blocksize": 64, "compress_statistics": True}

    def unavailable(self):
        return _bnb_probe()

    def _swap(self, model: nn.Module, targets: list[str], opts: Mapping) -> None:
        from bitsandbytes.nn import Params4bit

        cls = _nf4_linear_class()
        for name in targets:
            linear = model.get_submodule(name)
            new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                      compute_dtype=torch.float32, quant_type="nf4",
                      compress_statistics=bool(opts["compress_statistics"]))
            new.weight = Params4bit(
                linear.weight.data.detach().float().contiguous(), requires_grad=False,
                blocksize=int(opts["blocksize"]), quant_type="nf4",
                compress_statistics=bool(opts["compress_statistics"]), module=new,
            )
            if linear.bias is not None:
                new.bias = nn.Parameter(linear.bias.detach().float().clone(), requires_grad=False)
            new = new.to("cpu")  # this is where bitsandbytes quantizes
            new.train(linear.training)
            replace_module(model, name, new)

    def apply(self, model, targets, opts, calibration, input_key):
        self._swap(model, targets, opts)
        return {}

    def rebuild(self, model, step):
        reason = self.unavailable()
        if reason is not None:
            raise ModelLoadError(f"cannot load an nf4 model here: {reason}")
        self._swap(model, step["targets"], step["options"])


register_quantizer(NF4())

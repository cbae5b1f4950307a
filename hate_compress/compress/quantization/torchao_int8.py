"""int8 through torchao: `dynamic_int8` and `static_int8`.

* ``dynamic_int8`` — torchao ``quantize_(..., Int8DynamicActivationInt8WeightConfig())``: the
  maintained replacement of the deprecated ``torch.ao.quantization.quantize_dynamic``; int8
  per-channel weights, per-token activation scales computed at run time, ``torch._int_mm`` on CPU.
* ``static_int8`` — torchao ``Int8StaticActivationInt8WeightConfig`` (present and working on CPU
  in torchao 0.18) with per-Linear activation scales from torchao's
  ``AffineQuantizedMinMaxObserver`` run over calibration batches. Activation scales are per
  tensor because a static scale cannot depend on the batch or sequence length.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from hate_compress.compress.quantization.base import (
    Quantizer,
    batch_inputs,
    embedding_targets,
    register_quantizer,
)
from hate_compress.errors import ConfigError


def _reduce_range() -> bool:
    """int8×int8 sums can overflow int16 intermediates on CPUs without VNNI; torchao knows which."""
    from torchao.utils import should_reduce_range

    return bool(should_reduce_range(torch.device("cpu")))


class _TorchaoInt8(Quantizer):
    """Shared torchao plumbing: group targets by config and let `quantize_` swap the weights.

    `include_embeddings` also stores the embedding tables as int8 (weight-only, per row): in
    small students the vocabulary table is most of the file, so without it int8 cannot shrink
    a model much more than ~2-4x."""

    options = {"include_head": False, "include_embeddings": False}

    def configs(self, model, targets, opts, calibration, input_key, reduce_range) -> dict[str, Any]:
        raise NotImplementedError

    def embedding_configs(self, model: nn.Module, opts: Mapping) -> dict[str, Any]:
        if not opts.get("include_embeddings"):
            return {}
        from torchao.quantization import Int8WeightOnlyConfig

        config = Int8WeightOnlyConfig(set_inductor_config=False)
        return {name: config for name in embedding_targets(model)}

    def _quantize(self, model: nn.Module, configs: Mapping[str, Any]) -> None:
        from torchao.quantization import quantize_

        groups: dict[int, tuple[Any, set[str]]] = {}
        for name, config in configs.items():
            groups.setdefault(id(config), (config, set()))[1].add(name)
        for config, names in groups.values():
            quantize_(model, config, filter_fn=lambda module, fqn, names=names: fqn in names)

    def apply(self, model, targets, opts, calibration, input_key):
        reduce_range = _reduce_range()
        configs = self.configs(model, targets, opts, calibration, input_key, reduce_range)
        self._quantize(model, {**configs, **self.embedding_configs(model, opts)})
        return {"reduce_range": reduce_range}

    def rebuild(self, model, step):
        configs = self.configs(model, step["targets"], step["options"], None, "", step["reduce_range"])
        self._quantize(model, {**configs, **self.embedding_configs(model, step["options"])})


class DynamicInt8(_TorchaoInt8):
    name = "dynamic_int8"

    def configs(self, model, targets, opts, calibration, input_key, reduce_range):
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig

        # set_inductor_config=False: we run eager, and it would change global inductor settings
        config = Int8DynamicActivationInt8WeightConfig(set_inductor_config=False,
                                                       reduce_range=reduce_range)
        return {name: config for name in targets}


class StaticInt8(_TorchaoInt8):
    name = "static_int8"
    options = {"include_head": False, "include_embeddings": False, "num_batches": None}

    def configs(self, model, targets, opts, calibration, input_key, reduce_range):
        from torchao.quantization import Int8StaticActivationInt8WeightConfig
        from torchao.quantization.granularity import PerRow, PerTensor

        if calibration is None:  # reload: placeholder scales, the saved ones overwrite them
            scales = {name: torch.ones(1) for name in targets}
        else:
            scales = calibrate_activation_scales(model, targets, calibration, input_key, reduce_range)
        return {
            name: Int8StaticActivationInt8WeightConfig(
                act_quant_scale=scales[name],
                granularity=[PerTensor(), PerRow()],
                set_inductor_config=False,
                reduce_range=reduce_range,
            )
            for name in targets
        }

    def apply(self, model, targets, opts, calibration, input_key):
        if opts["num_batches"] is not None:
            calibration = calibration[: int(opts["num_batches"])]
        if not calibration:
            raise ConfigError("quant.method=static_int8 needs calibration batches; none were given")
        step = super().apply(model, targets, opts, calibration, input_key)
        return {**step, "calibration_batches": len(calibration)}


def calibrate_activation_scales(
    model: nn.Module,
    targets: list[str],
    batches: Iterable[Mapping],
    input_key: str = "student",
    reduce_range: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-tensor symmetric int8 scale of each target Linear's input, from min/max over batches.

    Observers hang on forward pre-hooks instead of wrapping modules, so calibration leaves the
    model's structure (and state_dict keys) untouched.
    """
    from torchao.quantization.granularity import PerTensor
    from torchao.quantization.observer import AffineQuantizedMinMaxObserver
    from torchao.quantization.quant_primitives import MappingType

    qmin, qmax = (-64, 63) if reduce_range else (-128, 127)
    observers = {
        name: AffineQuantizedMinMaxObserver(
            MappingType.SYMMETRIC, torch.int8, PerTensor(), quant_min=qmin, quant_max=qmax,
            eps=torch.finfo(torch.float32).eps, scale_dtype=torch.float32,
            zero_point_dtype=torch.int8, keepdim=True,  # keepdim: scale ndim must match input ndim
        )
        for name in targets
    }
    handles = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda module, args, obs=obs: obs(args[0])
        )
        for name, obs in observers.items()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(*batch_inputs(batch, input_key))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    scales = {}
    for name, obs in observers.items():
        if not hasattr(obs, "min_val"):
            raise ConfigError(f"quant.method=static_int8: calibration never reached layer {name}")
        scales[name] = obs.calculate_qparams()[0].detach().clone()
    return scales


def activation_scales(model: nn.Module) -> dict[str, float]:
    """Static activation scales per quantized Linear, for logging and for checking calibration."""
    scales = {}
    for name, module in model.named_modules():
        scale = getattr(getattr(module, "weight", None), "act_quant_scale", None)
        if scale is not None:
            scales[name] = float(scale.flatten()[0])
    return scales


for _q in (DynamicInt8(), StaticInt8()):
    register_quantizer(_q)

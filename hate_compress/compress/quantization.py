"""Post-training quantization of a trained classifier, chosen by name (`quant.method`).

Every method goes through one path, `quantize_model`: pick the target Linear layers (encoder
only — embeddings are lookups, not matmuls, and the tiny head decides every prediction, so both
stay in float unless `include_head` asks otherwise), hand them to the method, and record a
`quant_<method>` step so `load_classifier` can replay the module change on a fresh model.

Saving must write the *real* low-bit weights — otherwise the artifact is not smaller and the
size column in the report would be a lie. Quantized weights are tensor subclasses (torchao) or
packed parameters (bitsandbytes) that safetensors cannot store directly, so one shared
`pack_state` / `unpack_state` pair flattens them into their plain component tensors (int8 data,
scales, 4-bit packed bytes, block absmax, ...) and writes them back on reload. The reloaded model
therefore computes with bit-identical weights and gives identical predictions.

Method → library, and why:

* ``dynamic_int8`` — torchao ``quantize_(..., Int8DynamicActivationInt8WeightConfig())``: the
  maintained replacement of the deprecated ``torch.ao.quantization.quantize_dynamic``; int8
  per-channel weights, per-token activation scales computed at run time, ``torch._int_mm`` on CPU.
* ``static_int8`` — torchao ``Int8StaticActivationInt8WeightConfig`` (present and working on CPU
  in torchao 0.18) with per-Linear activation scales from torchao's
  ``AffineQuantizedMinMaxObserver`` run over calibration batches. Activation scales are per
  tensor because a static scale cannot depend on the batch or sequence length.
* ``nf4`` — bitsandbytes ``Linear4bit(quant_type="nf4")`` (QLoRA's 4-bit NormalFloat), which has
  a CPU backend in bitsandbytes ≥ 0.45; the weights are quantized by ``.to("cpu")``.
* ``fp16`` / ``bf16`` — a plain cast of every weight; forwards run in half precision on CPU
  (checked on torch 2.13, no fp32 islands needed) and a forward hook returns float32 logits so
  metrics never see halves. Measured, not guessed (2-layer BERT-base-width encoder, seq 64, one
  thread, AVX512-BF16 CPU): fp16 was ~2.2x *slower* than fp32 (no fp16 GEMM kernels on x86),
  bf16 ~2x faster. fp16 is therefore a size option on CPU, not a speed option.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from hate_compress.compress.steps import (
    Restorer,
    compression_log,
    record_compression,
    register_restorer,
)
from hate_compress.errors import ConfigError, HateCompressError, ModelLoadError
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


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _batch_inputs(batch: Mapping, input_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        inputs = batch["inputs"][input_key]
        return inputs["input_ids"], inputs["attention_mask"]
    except (KeyError, TypeError):
        have = list(batch.get("inputs", {})) if isinstance(batch, Mapping) else type(batch).__name__
        raise ConfigError(
            f"quant.input_key={input_key!r}: calibration batch has no inputs[{input_key!r}]"
            f"[input_ids/attention_mask] (inputs: {have})"
        ) from None


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


# ---------------------------------------------------------------------------------------------
# serialisation of quantized weights (shared by every method)


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


# ---------------------------------------------------------------------------------------------
# the methods


class Quantizer:
    """One method: which options it takes, how it changes a model, and how to replay that."""

    name: ClassVar[str]
    runtime: ClassVar[str] = "torch"  # what runs the quantized model (onnx_export: onnxruntime)
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
                model(*_batch_inputs(batch, input_key))
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
            _replace_module(model, name, new)

    def apply(self, model, targets, opts, calibration, input_key):
        self._swap(model, targets, opts)
        return {}

    def rebuild(self, model, step):
        reason = self.unavailable()
        if reason is not None:
            raise ModelLoadError(f"cannot load an nf4 model here: {reason}")
        self._swap(model, step["targets"], step["options"])


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


QUANTIZERS: Registry[Quantizer] = Registry("quantizer", "quant.method")


def register_quantizer(q: Quantizer) -> None:
    """Make `q` selectable as `quant.method` (also from a plugin); torch methods also get a
    restorer for reloading."""
    QUANTIZERS.add(q.name, q)
    if q.name != "none" and q.runtime == "torch":
        register_restorer(STEP_PREFIX + q.name,
                          Restorer(rebuild=q.rebuild, pack=pack_state, unpack=unpack_state))


for _q in (NoQuantization(), DynamicInt8(), StaticInt8(), NF4(), FP16(), BF16()):
    register_quantizer(_q)


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


def activation_scales(model: nn.Module) -> dict[str, float]:
    """Static activation scales per quantized Linear, for logging and for checking calibration."""
    scales = {}
    for name, module in model.named_modules():
        scale = getattr(getattr(module, "weight", None), "act_quant_scale", None)
        if scale is not None:
            scales[name] = float(scale.flatten()[0])
    return scales


__all__: list[str] = [
    "QUANTIZERS", "QuantizationUnavailable", "Quantizer", "activation_scales",
    "calibrate_activation_scales", "checked_options", "get_quantizer", "register_quantizer", "linear_targets", "pack_state",
    "quantize_model", "unpack_state",
]

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
* ``onnx`` / ``onnx_int8`` / ``onnx_static_int8`` — export to ONNX Runtime (`onnx`).

Modules: `base` (the shared path and the registry), `packing` (saving and reloading low-bit
weights), one module per library (`torchao_int8`, `nf4`, `cast`, `onnx`). Importing the package
registers every built-in method and its restorer; the names below are the API a plugin uses
(docs/plugins.md).
"""

from hate_compress.compress.quantization import cast, nf4, onnx, torchao_int8  # noqa: F401
from hate_compress.compress.quantization.base import (
    QUANTIZERS,
    STEP_PREFIX,
    QuantizationUnavailable,
    Quantizer,
    checked_options,
    get_quantizer,
    linear_targets,
    quantize_model,
    register_quantizer,
)
from hate_compress.compress.quantization.packing import pack_state, unpack_state
from hate_compress.compress.quantization.torchao_int8 import (
    activation_scales,
    calibrate_activation_scales,
)

__all__: list[str] = [
    "QUANTIZERS", "STEP_PREFIX", "QuantizationUnavailable", "Quantizer", "activation_scales",
    "calibrate_activation_scales", "checked_options", "get_quantizer", "register_quantizer",
    "linear_targets", "pack_state", "quantize_model", "unpack_state",
]

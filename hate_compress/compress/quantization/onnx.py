"""ONNX export and ONNX Runtime quantization: `quant=onnx`, `quant=onnx_int8`, `quant=onnx_static_int8`.

For tiny encoders on a CPU, PyTorch eager's per-op overhead dominates at batch 1; ONNX Runtime
removes most of it. So these methods do not change a torch module in place like the other
quantizers — they *export* the model and ship an ONNX Runtime artifact (`model.onnx` +
tokenizer + `hate_compress.json`), measured through `OnnxClassifier`, an adapter with the same
`model(input_ids, attention_mask).logits` interface every measurement uses.

Choices, each measured on this machine (README "Serving with ONNX Runtime"):

* Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript). The TorchScript
  exporter (``dynamo=False``) traces transformers 5's attention-mask code into a graph whose
  logits differ by ~0.2 from torch for BERT, DistilBERT and XLM-R alike — silently wrong. The
  dynamo exporter matches to ~1e-7 on all three. Batch and sequence axes are dynamic.
* ONNX Runtime's session-level graph optimizations (`ORT_ENABLE_ALL`) always run. The offline
  transformer optimizer (`onnxruntime.transformers.optimizer`) is the `optimize` option, off
  by default: on dynamo graphs it fuses LayerNorm/GELU but not attention, and the result was
  slower (2x128 BERT: 0.82 vs 0.71 ms at batch 1). optimum-onnx is not used: it would add a
  dependency to do the same export, and its BERT export path is the TorchScript one.
* INT8: ``quantize_dynamic`` (int8 weights incl. the embedding Gather, activations quantized
  per call) and ``quantize_static`` in QDQ format with per-channel weights and uint8
  activations calibrated on training batches through a ``CalibrationDataReader`` (int8
  activations were 2x slower here: no VNNI u8s8 fast path for s8s8).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from hate_compress.compress.quantization.base import Quantizer, batch_inputs, register_quantizer
from hate_compress.compression_steps import compression_log
from hate_compress.errors import ConfigError, HateCompressError
from hate_compress.models.outputs import ModelOutputs
from hate_compress.onnx_runtime import INPUT_NAMES, ONNX_FILE, make_session, run_logits
from hate_compress.storage import replacing

log = logging.getLogger(__name__)

EXPORTER = "torch.onnx.export(dynamo=True)"

# compression steps whose modules have no ONNX export, and why (checked before exporting)
NOT_EXPORTABLE = {
    "quant_nf4": "bitsandbytes 4-bit Linear4bit layers have no ONNX operator",
    "quant_dynamic_int8": "torchao int8 tensor subclasses do not export to ONNX",
    "quant_static_int8": "torchao int8 tensor subclasses do not export to ONNX",
    "quant_fp16": "half-precision torch weights; export the fp32 model instead",
    "quant_bf16": "half-precision torch weights; export the fp32 model instead",
}


class OnnxExportError(HateCompressError):
    """This model cannot be exported to ONNX (the message names the reason)."""


def export_refusal(model: nn.Module) -> str | None:
    """Why `model` cannot be exported (one line), or None."""
    for step in compression_log(model):
        reason = NOT_EXPORTABLE.get(step["kind"])
        if reason is not None:
            return (f"cannot export a {step['kind'].removeprefix('quant_')} model to ONNX: {reason}; "
                    "use quant=onnx_int8 or quant=onnx_static_int8 on the unquantized model")
    return None


class _LogitsOnly(nn.Module):
    """The exported graph: two int64 inputs, one float32 `logits` output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask).logits


def export_onnx(model: nn.Module, path: str | Path, example: Mapping[str, torch.Tensor]) -> Path:
    """Export `model` (eval mode, fp32) to `path` with dynamic batch and sequence axes."""
    import onnx

    reason = export_refusal(model)
    if reason is not None:
        raise OnnxExportError(reason)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # two rows: a batch of 1 would let torch.export specialise the batch axis to a constant
    args = tuple(example[name][:2] for name in INPUT_NAMES)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    was_training = model.training
    model.eval()
    try:
        # onnxscript's optimizer logs every rewrite at INFO (~100 lines per export)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                quiet_logs("onnxscript", "onnx_ir", level=logging.WARNING):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                _LogitsOnly(model).eval(), args, dynamo=True, input_names=list(INPUT_NAMES),
                output_names=["logits"], external_data=False,
                dynamic_shapes={name: {0: batch, 1: seq} for name in INPUT_NAMES},
            )
    except Exception as exc:  # torch.export raises many types; the first line names the op
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxExportError(f"ONNX export failed ({type(exc).__name__}: {first})") from None
    finally:
        model.train(was_training)
    proto = program.model_proto
    # the exporter's intermediate shape annotations conflict with ORT quantization's own shape
    # inference ("Inferred shape and existing shape differ"); ORT re-infers them anyway
    del proto.graph.value_info[:]
    onnx.save(proto, str(path))
    return path


def optimize_for_transformers(src: Path, dst: Path, model: nn.Module) -> dict[str, int]:
    """ORT's offline transformer fusions; returns the fused-operator counts."""
    from onnxruntime.transformers import optimizer

    config = model.encoder.config
    heads = int(getattr(config, "num_attention_heads", getattr(config, "n_heads", 0)))
    with contextlib.redirect_stdout(io.StringIO()):
        optimized = optimizer.optimize_model(str(src), model_type="bert", num_heads=heads,
                                             hidden_size=int(config.hidden_size), opt_level=0)
    optimized.save_model_to_file(str(dst))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


@contextlib.contextmanager
def quiet_logs(*names: str, level: int = logging.ERROR):
    """Raise the level of the named loggers ("" = root) for the duration of one call."""
    loggers = [logging.getLogger(name or None) for name in names]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, previous):
            logger.setLevel(old)


def quiet_quantizer():
    """ORT's quantizer logs advice and per-LayerNorm notes on the root logger at WARNING."""
    return quiet_logs("")


def _quant_extra_options() -> dict:
    import onnx

    # contrib ops (after `optimize`) have no ONNX type inference; their outputs are float32
    return {"DefaultTensorType": onnx.TensorProto.FLOAT}


def quantize_dynamic_int8(src: Path, dst: Path, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantizer():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         extra_options=_quant_extra_options())


def calibration_reader(batches: Iterable[Mapping], input_key: str):
    """A `CalibrationDataReader` feeding training batches (this model's tokenization)."""
    from onnxruntime.quantization import CalibrationDataReader

    feeds = []
    for batch in batches:
        ids, mask = batch_inputs(batch, input_key)
        feeds.append({"input_ids": ids.numpy().astype("int64"),
                      "attention_mask": mask.numpy().astype("int64")})

    class TrainingBatches(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(feeds)

        def get_next(self):
            return next(self.remaining, None)

    return TrainingBatches(), len(feeds)


def quantize_static_int8(src: Path, dst: Path, batches: list, input_key: str,
                         per_channel: bool) -> int:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    reader, count = calibration_reader(batches, input_key)
    if not count:
        raise ConfigError("quant.method=onnx_static_int8 needs calibration batches; none were given")
    with quiet_quantizer():
        quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, extra_options=_quant_extra_options())
    return count


# ---------------------------------------------------------------------------------------------
# the measured object: an ONNX file behind the classifier interface


class OnnxClassifier(nn.Module):
    """An ONNX Runtime session that answers `model(input_ids, attention_mask).logits`.

    An `nn.Module` only so the measurement code (`predict_logits`, `measure_latency`) can call
    `.eval()` / `.train()` on it like on any model; it has no parameters. `parameter_counts` are
    the source model's logical counts (an int8 file has as many weights as its fp32 source)."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, parameter_counts: dict | None = None, threads: int = 1):
        super().__init__()
        self.path = Path(path)
        self.parameter_counts = parameter_counts
        self._sessions: dict[int, Any] = {}
        self.threads = int(threads)
        self.use_threads(threads)

    def use_threads(self, threads: int) -> int:
        """Switch to a session with `threads` intra-op threads; returns the previous count."""
        previous, self.threads = self.threads, int(threads)
        if self.threads not in self._sessions:
            self._sessions[self.threads] = make_session(self.path, self.threads)
        return previous

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> ModelOutputs:
        logits = run_logits(self._sessions[self.threads], input_ids.numpy(), attention_mask.numpy())
        return ModelOutputs(logits=torch.from_numpy(logits), attention_mask=attention_mask)


# ---------------------------------------------------------------------------------------------
# the quant methods


class OnnxQuantizer(Quantizer):
    """Export to ONNX, then (optionally) quantize the ONNX graph with ONNX Runtime."""

    runtime = "onnxruntime"
    selects_linears = False
    options: ClassVar[dict[str, Any]] = {"optimize": False, "per_channel": True}

    def unavailable(self):
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as exc:
            return f"ONNX export needs onnx, onnxruntime and onnxscript ({exc})"
        return None

    def apply(self, model, targets, opts, calibration, input_key):
        raise ConfigError(f"quant.method={self.name} produces an ONNX Runtime model, not a torch "
                          "module: use hate_compress.artifacts.export_classifier")

    def convert(self, fp32: Path, dst: Path, opts: dict, calibration: list, input_key: str) -> dict:
        """Write the shipped graph to `dst` from the fp32 export; returns details to record."""
        raise NotImplementedError


class OnnxFP32(OnnxQuantizer):
    name = "onnx"

    def convert(self, fp32, dst, opts, calibration, input_key):
        shutil.copyfile(fp32, dst)
        return {}


class OnnxDynamicInt8(OnnxQuantizer):
    name = "onnx_int8"

    def convert(self, fp32, dst, opts, calibration, input_key):
        quantize_dynamic_int8(fp32, dst, bool(opts["per_channel"]))
        return {}


class OnnxStaticInt8(OnnxQuantizer):
    name = "onnx_static_int8"
    options = {**OnnxQuantizer.options, "num_batches": None}

    def convert(self, fp32, dst, opts, calibration, input_key):
        if opts["num_batches"] is not None:
            calibration = calibration[: int(opts["num_batches"])]
        count = quantize_static_int8(fp32, dst, calibration, input_key, bool(opts["per_channel"]))
        return {"calibration_batches": count}


for _q in (OnnxFP32(), OnnxDynamicInt8(), OnnxStaticInt8()):
    register_quantizer(_q)


# ---------------------------------------------------------------------------------------------
# the teacher in ONNX Runtime: the reference that separates runtime gains from compression


def weights_digest(model: nn.Module, artifact: str | Path | None) -> str:
    """Content hash of the teacher's weights (its safetensors file when saved)."""
    digest = hashlib.sha256()
    weights = Path(artifact) / "model.safetensors" if artifact else None
    if weights is not None and weights.is_file():
        with open(weights, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    else:
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:20]


def teacher_reference(model: nn.Module, artifact: str | Path | None, cache_dir: str | Path,
                      example: Mapping[str, torch.Tensor]) -> OnnxClassifier:
    """The teacher exported to ONNX Runtime fp32, cached by teacher weights and exporter."""
    key = f"{weights_digest(model, artifact)}-torch{torch.__version__}"
    path = Path(cache_dir) / "onnx_teacher" / key / ONNX_FILE
    if not path.is_file():
        with replacing(path) as tmp:
            export_onnx(model, tmp, example)
        (path.parent / "source.json").write_text(json.dumps({"artifact": str(artifact)}))
    else:
        log.info("teacher ONNX reference from cache %s", path)
    return OnnxClassifier(path)

"""Latency at realistic sizes: which runtime and quantization a GBERT/DistilBERT user should pick.

    python bench/latency_realistic.py                  # BERT-base and DistilBERT shapes
    python bench/latency_realistic.py --runs 10 --models bert_base

Shapes: BERT-base (12 layers x 768, 30k vocabulary) and DistilBERT (6 x 768, 30k), built from
config with RANDOM weights — latency does not depend on the weights' values, and the machine has
no model hub. Sequence 64, batch 1 and 32, 1 and 2 threads; per model: torch fp32 (eager),
torchao dynamic INT8 (`quant=dynamic_int8`), ONNX Runtime fp32, ONNX Runtime dynamic INT8 and
static QDQ INT8 (`quant=onnx`, `onnx_int8`, `onnx_static_int8`, the same package functions the
pipeline uses), plus the file sizes. Also (issue 15 item 7): 50% unstructured magnitude
sparsity + ORT INT8, and 50% structured pruning (heads + FFN neurons) + ORT INT8 — does either
make ONNX Runtime faster? Static calibration uses random token ids (scales only; no accuracy is
reported here). Writes bench/results/latency_realistic.json (bench/results_io.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import AutoConfig, AutoModel  # noqa: E402

from bench import results_io, tables  # noqa: E402
from hate_compress.artifacts import ModelCard, save_classifier  # noqa: E402
from hate_compress.compress import pruning  # noqa: E402
from hate_compress.compress.quantization import quantize_model  # noqa: E402
from hate_compress.compress.quantization.onnx import (  # noqa: E402
    OnnxClassifier,
    export_onnx,
    quantize_dynamic_int8,
    quantize_static_int8,
)
from hate_compress.measure.footprint import MB, batch_of  # noqa: E402
from hate_compress.models.classifier import HateClassifier  # noqa: E402

SHAPES = {
    "bert_base": ("bert", dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                               intermediate_size=3072, vocab_size=30000)),
    "distilbert": ("distilbert", dict(n_layers=6, dim=768, n_heads=12, hidden_dim=3072,
                                      vocab_size=30000)),
}
SEQ = 64


def build(shape: str) -> HateClassifier:
    family, arch = SHAPES[shape]
    torch.manual_seed(0)
    encoder = AutoModel.from_config(AutoConfig.for_model(family, **arch))
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    return HateClassifier(encoder, 2).eval()


def inputs(n: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 30000, (n, SEQ), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def median_ms(model, feed, threads: int, runs: int, warmup: int) -> float:
    use = getattr(model, "use_threads", None)
    if use:
        use(threads)
    torch.set_num_threads(threads)
    with torch.inference_mode():
        for _ in range(warmup):
            model(**feed)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(**feed)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def torch_size_mb(model, work: Path) -> float:
    directory = work / "torch"
    save_classifier(model, directory, None, ModelCard(task="binary", label_names=["a", "b"]))
    size = (directory / "model.safetensors").stat().st_size / MB
    shutil.rmtree(directory)
    return size


def variants(shape: str, work: Path, example) -> dict[str, tuple]:
    """name -> (model to time, size in MB); ONNX files written under `work`."""
    model = build(shape)
    out = {"torch fp32": (model, torch_size_mb(model, work))}
    int8 = quantize_model(build(shape), "dynamic_int8", include_embeddings=True)
    out["torchao dynamic INT8"] = (int8, torch_size_mb(int8, work))
    fp32 = export_onnx(model, work / "fp32.onnx", example)
    quantize_dynamic_int8(fp32, work / "int8.onnx", per_channel=True)
    calibration = [{"inputs": {"student": batch_of(example, 8)}}] * 4
    quantize_static_int8(fp32, work / "static.onnx", calibration, "student", per_channel=True)
    for name, file in (("ORT fp32", fp32), ("ORT INT8 dynamic", work / "int8.onnx"),
                       ("ORT INT8 static QDQ", work / "static.onnx")):
        out[name] = (OnnxClassifier(file), file.stat().st_size / MB)
    sparse = build(shape)
    pruning.prune_model(sparse, "magnitude", 0.5, permanent=True)
    quantize_dynamic_int8(export_onnx(sparse, work / "sparse.onnx", example), work / "sparse8.onnx", True)
    out["50% unstructured + ORT fp32"] = (OnnxClassifier(work / "sparse.onnx"),
                                          (work / "sparse.onnx").stat().st_size / MB)
    out["50% unstructured + ORT INT8"] = (OnnxClassifier(work / "sparse8.onnx"),
                                          (work / "sparse8.onnx").stat().st_size / MB)
    structured = build(shape)
    pruning.prune_model(structured, "structured", 0.5)
    quantize_dynamic_int8(export_onnx(structured, work / "struct.onnx", example),
                          work / "struct8.onnx", True)
    out["50% structured + ORT INT8"] = (OnnxClassifier(work / "struct8.onnx"),
                                        (work / "struct8.onnx").stat().st_size / MB)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 32])
    args = parser.parse_args()
    record = results_io.Recorder("latency_realistic")
    example = inputs()
    rows = []
    cols = [f"b{b} t{t} ms" for b in args.batches for t in args.threads]
    for shape in args.models:
        work = Path(tempfile.mkdtemp(prefix="latency_realistic_"))
        try:
            for name, (model, size) in variants(shape, work, example).items():
                row = {"model": shape, "variant": name, "size_mb": round(size, 1)}
                for b in args.batches:
                    feed = batch_of(example, b)
                    for t in args.threads:
                        row[f"b{b} t{t} ms"] = round(median_ms(model, feed, t, args.runs, args.warmup), 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    path = record.write({
        "settings": {"runs": args.runs, "warmup": args.warmup, "seq": SEQ, "threads": args.threads,
                     "batches": args.batches, "models": args.models,
                     "weights": "random (latency does not depend on the values)"},
        "columns": cols, "rows": rows,
    })
    print("\n" + tables.render_record("latency_realistic", results_io.read("latency_realistic")))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

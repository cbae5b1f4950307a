"""Compression on real data: teacher -> KD student -> + pruning -> + quantization, per stage.

    python bench/compression.py                       # GermEval (binary) and Bengali hate v2
    python bench/compression.py --data germeval_coarse -- prune=wanda

Each dataset is one ordinary pipeline run (`experiment=full_pipeline`: KD alpha 0.7, 50%
magnitude pruning, dynamic INT8), so the table is exactly what `python -m hate_compress ...`
prints; latency is measured on this machine with 1 thread (median of 20 runs after warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("germeval_coarse", "bengali_hate_v2")


def run(data: str, extra: list[str]) -> Path:
    name = f"bench_compression_{data}"
    cmd = ["-m", "hate_compress", "experiment=full_pipeline", f"data={data}", f"run_name={name}",
           "resume=false", "trainer.enable_progress_bar=false", *extra]
    print("$ python " + " ".join(cmd), flush=True)
    subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True)
    return ROOT / "outputs" / "runs" / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="*", default=list(DATASETS))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    args = parser.parse_args()
    out = [f"{date.today()}, {os.cpu_count()} cores"]
    for data in args.data:
        run_dir = run(data, args.overrides)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        out += ["", f"### {data}", "", (run_dir / "summary.md").read_text().strip()]
        out.append(f"\nstage seconds: {metrics['run']['stage_seconds']}")
    text = "\n".join(out)
    print("\n" + text)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "compression.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""`make bench`: every benchmark table of BENCHMARKS.md, one after the other.

Runs serially on purpose: the timing tables (throughput, latency) are only meaningful on an
otherwise idle machine. Quality-only sweeps come first, latency-sensitive runs last.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

STEPS = [
    [PY, "bench/kd_table.py", "--data", "germeval_coarse"],
    [PY, "bench/kd_table.py", "--data", "bengali_hate_v2"],
    [PY, "bench/seed_stability.py", "--data", "bengali_hate_v2"],
    [PY, "bench/seed_stability.py", "--data", "germeval_coarse"],
    [PY, "-m", "hate_compress", "experiment=kd_matrix_tiny", "hydra.sweep.dir=bench/results/kd_matrix_tiny"],
    [PY, "-m", "hate_compress.temperature", "run_name=bench_temperature"],
    [PY, "bench/compression.py"],
    [PY, "bench/kd_throughput.py"],
    [PY, "bench/memory.py"],
    [PY, "bench/latency_realistic.py"],
]


def main() -> None:
    for step in STEPS:
        print("\n$ " + " ".join(["python", *step[1:]]), flush=True)
        subprocess.run(step, cwd=ROOT, check=True)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    main()

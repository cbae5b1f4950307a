"""`make bench`: run the benchmarks, then regenerate BENCHMARKS.md's tables from their results.

Runs serially on purpose: the timing tables (throughput, latency) are only meaningful on an
otherwise idle machine. Quality-only sweeps come first, latency-sensitive runs last. Every step
writes `bench/results/<name>.json` (bench/results_io.py); `bench/tables.py` then renders the doc.

    python bench/run_all.py                          # everything (hours on 2 cores)
    python bench/run_all.py --list                   # steps, their commands and result files
    python bench/run_all.py --only kd_throughput,memory
    python bench/run_all.py --tables-only            # = make bench-tables
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results_io  # noqa: E402
from bench.kd_variant_list import ENSEMBLE_COMPRESSION_ARGS  # noqa: E402


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]  # after `python`
    results: tuple[str, ...]  # bench/results/<name>.json it writes

    @property
    def command(self) -> str:
        return shlex.join(["python", *self.args])


STEPS = [
    Step("kd_table_germeval", ("bench/kd_table.py", "--data", "germeval_coarse"),
         ("kd_table_germeval_coarse",)),
    Step("kd_table_bengali", ("bench/kd_table.py", "--data", "bengali_hate_v2"),
         ("kd_table_bengali_hate_v2",)),
    Step("seed_stability_bengali", ("bench/seed_stability.py", "--data", "bengali_hate_v2"),
         ("seed_stability_bengali_hate_v2",)),
    Step("seed_stability_germeval", ("bench/seed_stability.py", "--data", "germeval_coarse"),
         ("seed_stability_germeval_coarse",)),
    Step("kd_variants_germeval", ("bench/kd_variants.py", "--data", "germeval_coarse", "--seeds", "1,2,3"),
         ("kd_variants_germeval_coarse",)),
    Step("kd_variants_bengali", ("bench/kd_variants.py", "--data", "bengali_hate_v2", "--seeds", "1,2,3"),
         ("kd_variants_bengali_hate_v2",)),
    # after kd_variants: the members come from its teacher store
    Step("ensemble_teacher_germeval", ("bench/ensemble_teacher.py", "--data", "germeval_coarse"),
         ("ensemble_teacher_germeval_coarse",)),
    Step("ensemble_teacher_bengali", ("bench/ensemble_teacher.py", "--data", "bengali_hate_v2"),
         ("ensemble_teacher_bengali_hate_v2",)),
    # the issue-16 student through pruning + INT8 (teachers from the kd_variants store)
    Step("compression_ensemble", ("bench/compression.py", *ENSEMBLE_COMPRESSION_ARGS),
         ("full_pipeline_germeval_coarse_ensemble",)),
    Step("kd_matrix_tiny", ("bench/kd_matrix.py",), ("kd_matrix_tiny",)),
    Step("temperature", ("bench/temperature.py",), ("temperature",)),
    Step("compression", ("bench/compression.py",),
         ("full_pipeline_germeval_coarse", "full_pipeline_bengali_hate_v2")),
    Step("demo", ("bench/compression.py", "--experiment", "demo", "--data", "germeval_coarse",
                  "--", "teacher.retrain=true"), ("demo_germeval_coarse",)),
    Step("onnx_threads", ("bench/compression.py", "--data", "germeval_coarse", "--tag", "threads",
                          "--", "measure.threads=[1,2]"), ("full_pipeline_germeval_coarse_threads",)),
    Step("plain_kd_loop", ("bench/plain_kd_loop.py",), ("plain_kd_loop",)),
    Step("kd_throughput", ("bench/kd_throughput.py",), ("kd_throughput",)),
    Step("kd_throughput_full", ("bench/kd_throughput.py", "--skip-live", "--epoch-examples", "0",
                                "--runs", "2", "--out", "kd_throughput_full"),
         ("kd_throughput_full",)),
    Step("profile_kd", ("bench/profile_kd.py",), ("profile_kd",)),
    Step("memory", ("bench/memory.py",), ("memory",)),
    Step("latency_realistic", ("bench/latency_realistic.py", "--runs", "3", "--warmup", "1"),
         ("latency_realistic",)),
]
BY_NAME = {step.name: step for step in STEPS}


def select(only: str | None) -> list[Step]:
    if not only:
        return list(STEPS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"error: --only: unknown step(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def listing(results: Path = results_io.RESULTS) -> str:
    lines = []
    for step in STEPS:
        states = []
        for name in step.results:
            try:
                doc = results_io.read(name, results)
                state = f"({doc['date'][:16]})" if doc else "(not run)"
            except ValueError:  # written by a script that does not use results_io
                state = "(present)"
            states.append(f"{name}.json {state}")
        lines.append(f"{step.name:24} {step.command}\n{'':24} -> {', '.join(states)}")
    return "\n".join(lines)


def render_tables(check: bool = False) -> int:
    cmd = [sys.executable, "bench/tables.py", *(["--check"] if check else [])]
    return subprocess.run(cmd, cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated step names (see --list)")
    parser.add_argument("--list", action="store_true", help="list the steps and exit")
    parser.add_argument("--tables-only", action="store_true",
                        help="run no benchmark; only regenerate BENCHMARKS.md's tables")
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    if not args.tables_only:
        for step in select(args.only):
            print(f"\n[{step.name}] $ {step.command}", flush=True)
            subprocess.run([sys.executable, *step.args], cwd=ROOT, check=True)
    return render_tables()


if __name__ == "__main__":
    sys.exit(main())

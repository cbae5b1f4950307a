"""Teacher x student matrix on real data: the offline twin of `experiment=kd_matrix`.

    python bench/kd_matrix.py                       # 2 tiny teachers x 2 tiny students, GermEval

Runs the package's own sweep, `python -m hate_compress experiment=kd_matrix_tiny
hydra.sweep.dir=bench/results/kd_matrix_tiny` (4 cells; the sweep writes its report.md, report.csv
and plots into that directory), then copies report.csv's rows into
`bench/results/kd_matrix_tiny.json` (bench/results_io.py), from which bench/tables.py renders
BENCHMARKS.md's table. `--from-dir DIR` tabulates a finished sweep instead.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results_io, tables  # noqa: E402

NAME = "kd_matrix_tiny"


def number(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from-dir", type=Path, help="a finished sweep directory")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    args = parser.parse_args()
    record = results_io.Recorder(NAME)
    sweep_dir, sweep = args.from_dir, None
    if sweep_dir is None:
        sweep_dir = ROOT / "bench" / "results" / NAME
        cmd = ["-m", "hate_compress", f"experiment={NAME}",
               f"hydra.sweep.dir={sweep_dir.relative_to(ROOT)}", "resume=false",
               "trainer.enable_progress_bar=false", *args.overrides]
        sweep = shlex.join(["python", *cmd])
        print("$ " + sweep, flush=True)
        subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True)
    report = sweep_dir / "report.csv"
    if not report.exists():
        sys.exit(f"error: {report} not found (did the sweep's report callback run?)")
    with open(report, newline="") as fh:
        rows = [{k: number(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    path = record.write({"sweep_command": sweep, "sweep_dir": str(sweep_dir), "rows": rows})
    print("\n" + tables.render_record(NAME, results_io.read(NAME)))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

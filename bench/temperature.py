"""Temperature study on real data: the trained teacher's soft-label entropy at several T.

    python bench/temperature.py                     # data=germeval_coarse, tiny_teacher
    python bench/temperature.py -- data=bengali_hate_v2

Runs the package's own command, `python -m hate_compress.temperature run_name=bench_temperature`
(the teacher comes from the teacher store, trained first if it is not there), and copies its
`temperature_study.json` into `bench/results/temperature.json` (bench/results_io.py), from which
bench/tables.py renders BENCHMARKS.md's table. The plot stays in the run directory.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results_io, tables  # noqa: E402

RUN_NAME = "bench_temperature"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    args = parser.parse_args()
    record = results_io.Recorder("temperature")
    cmd = ["-m", "hate_compress.temperature", f"run_name={RUN_NAME}", "resume=false",
           "trainer.enable_progress_bar=false", *args.overrides]
    print("$ python " + shlex.join(cmd), flush=True)
    subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True)
    run_dir = ROOT / "outputs" / "runs" / RUN_NAME
    study = json.loads((run_dir / "temperature_study.json").read_text())
    from omegaconf import OmegaConf  # the run's composed config, as Hydra saved it

    teacher_name = OmegaConf.load(run_dir / ".hydra" / "config.yaml").teacher.name
    path = record.write({
        "teacher_name": teacher_name, "teacher": study.get("teacher"), "data": study["data"], "split": study["split"],
        "rows": study["rows"], "pipeline_command": shlex.join(["python", *cmd]),
        "plot": str((run_dir / "temperature_study.png").relative_to(ROOT)),
    }, note=None)  # entropies of a stored teacher: deterministic, load does not matter
    print("\n" + tables.render_record("temperature", results_io.read("temperature")))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()

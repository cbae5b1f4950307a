"""Compression on real data: teacher -> KD student -> + pruning -> + quantization, per stage.

    python bench/compression.py                       # GermEval (binary) and Bengali hate v2
    python bench/compression.py --data germeval_coarse -- prune=wanda
    python bench/compression.py --experiment demo --data germeval_coarse -- teacher.retrain=true

Each dataset is one ordinary pipeline run (default `experiment=full_pipeline`: KD alpha 0.7, 50%
magnitude pruning, ONNX Runtime INT8), so the table is exactly the `summary.md` that
`python -m hate_compress ...` writes; latency is measured on this machine by the pipeline's own
measurement (1 thread unless `measure.threads` says otherwise).

Writes `bench/results/<experiment>_<data>[_<tag>].json` per dataset (bench/results_io.py): the
summary table's header and rows as the pipeline printed them, the targets, stage seconds and the
pipeline command. BENCHMARKS.md's tables are rendered from it by bench/tables.py.
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

from bench import results_io, table_renderers, tables  # noqa: E402

DATASETS = ("germeval_coarse", "bengali_hate_v2")


def markdown_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first markdown table in `text` (the pipeline's summary.md)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        raise SystemExit("error: summary.md has no table")
    split = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return split[0], [row for row in split[2:]]


def run(experiment: str, data: str, tag: str | None, extra: list[str]) -> tuple[Path, list[str]]:
    name = "_".join(["bench", experiment, data, *([tag] if tag else [])])
    cmd = ["-m", "hate_compress", f"experiment={experiment}", f"data={data}", f"run_name={name}",
           "resume=false", "trainer.enable_progress_bar=false", *extra]
    print("$ python " + shlex.join(cmd), flush=True)
    subprocess.run([sys.executable, *cmd], cwd=ROOT, check=True)
    return ROOT / "outputs" / "runs" / name, ["python", *cmd]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="full_pipeline")
    parser.add_argument("--data", nargs="*", default=list(DATASETS))
    parser.add_argument("--tag", default=None, help="suffix of the result name (a variant)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (after --)")
    args = parser.parse_args()
    for data in args.data:
        name = "_".join([args.experiment, data, *([args.tag] if args.tag else [])])
        record = results_io.Recorder(name)
        run_dir, cmd = run(args.experiment, data, args.tag, args.overrides)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        summary = (run_dir / "summary.md").read_text()
        headers, rows = markdown_rows(summary)
        first = summary.splitlines()[0]  # summary_table starts with "quality on <split>"
        split = first.removeprefix("quality on ").strip() if first.startswith("quality on ") else None
        record.write({
            "experiment": args.experiment, "data": data, "pipeline_command": shlex.join(cmd),
            "run_dir": str(run_dir.relative_to(ROOT)), "split": split, "headers": headers,
            "rows": rows, "targets": metrics.get("targets") or {},
            "stage_seconds": metrics.get("run", {}).get("stage_seconds") or {},
        })
        print(f"\n### {data}\n\n" + tables.render_record(table_renderers.pipeline_run,
                                                          results_io.read(name)))


if __name__ == "__main__":
    main()

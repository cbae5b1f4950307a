"""KD ablation table: kd=none vs logit vs multi_level, same student, several seeds.

Runs (or reads) a Hydra multirun and aggregates mean and spread per KD preset into
`bench/results/kd_table_<data>.json` (BENCHMARKS.md's table is rendered from it):

    python bench/kd_table.py --data germeval_coarse                # runs the sweep, then the table
    python bench/kd_table.py --from-dir multirun/<date>/<time>     # table of a finished sweep

The sweep it runs is printed and is an ordinary command:

    python -m hate_compress -m pipeline=teacher_kd data=<data> teacher.seed=42 \
        kd=none,logit,multi_level seed=1,2,3 measure.latency=false measure.explain=true

Beside F1 and agreement it reports, per KD preset, how alike the student's reasons are to the
teacher's (issue 14: does matching hidden states make the student reason more like the
teacher?): the Integrated-Gradients word-attribution cosine and top-5 overlap against the
teacher on `measure.explain_n` dev examples, and the flip rate (test examples the teacher gets
right and the student wrong). The label-only row is the reference: a student that never saw
the teacher.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results_io, tables  # noqa: E402
from bench.table_renderers import kd_ablation  # noqa: E402

KDS = ("none", "logit", "multi_level")


def sweep_command(data: str, seeds: str, extra: list[str], sweep_dir: Path) -> list[str]:
    return [sys.executable, "-m", "hate_compress", "-m", "pipeline=teacher_kd", f"data={data}",
            "teacher.seed=42", f"kd={','.join(KDS)}", f"seed={seeds}", "measure.latency=false",
            "measure.explain=true",
            f"hydra.sweep.dir={sweep_dir}", "trainer.enable_progress_bar=false", *extra]


def collect(sweep_dirs: list[Path]) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for path in sorted(p for d in sweep_dirs for p in d.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("run", {}).get("status") != "ok":
            raise SystemExit(f"{path}: cell failed: {metrics.get('run', {}).get('error')}")
        rows.setdefault(metrics["run"]["kd"], []).append(metrics)
    return rows


def stats(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def optional_stats(values: list[float | None]) -> dict | None:
    """Stats over the seeds that have the value (an old sweep without `measure.explain`: None)."""
    present = [v for v in values if v is not None]
    return stats(present) if present else None


def reasons(stage: dict) -> dict[str, float | None]:
    """One run's explanation similarity to the teacher and its flip rate."""
    explain = stage.get("explain") or {}
    ok = explain.get("status") == "ok"
    return {"explain_cosine": explain.get("cosine_mean") if ok else None,
            "explain_top5": explain.get("top5_overlap_mean") if ok else None,
            "flip_rate_lost": (stage.get("forgetting") or {}).get("flip_rate_lost")}


def aggregate(rows: dict[str, list[dict]]) -> dict:
    """Mean and standard deviation over seeds per KD preset: what the table shows."""
    any_run = next(iter(rows.values()))[0]
    split = "test" if "test" in any_run["kd"] else "dev"
    out_rows = []
    hate = "hate_f1" in any_run["kd"][split]
    for kd in KDS:
        runs = rows.get(kd, [])
        if not runs:
            continue
        stage = [r["kd"] for r in runs]
        minority = [s[split]["hate_f1"] if hate else min(
            v for k, v in s[split].items() if k.startswith("f1_")) for s in stage]
        out_rows.append({
            "kd": kd, "seeds": len(runs), "seed_values": sorted(r["run"].get("seed") for r in runs),
            "macro_f1": stats([s[split]["macro_f1"] for s in stage]),
            "minority_f1": stats(minority),
            "dev_macro_f1": stats([s["dev"]["macro_f1"] for s in stage]),
            "agreement": stats([s[split]["agreement"] for s in stage]),
            **{key: optional_stats([reasons(s)[key] for s in stage])
               for key in ("explain_cosine", "explain_top5", "flip_rate_lost")},
        })
    return {"split": split, "minority_label": "hate F1" if hate else "lowest per-class F1",
            "teacher": {"name": any_run["run"]["teacher"],
                        "macro_f1": any_run["teacher"][split]["macro_f1"]},
            "rows": out_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="germeval_coarse")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--from-dir", type=Path, nargs="+", help="finished sweep dir(s)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every cell")
    args = parser.parse_args()
    name = f"kd_table_{args.data}"
    record = results_io.Recorder(name)
    sweep_dirs = args.from_dir
    sweep = None
    if sweep_dirs is None:
        sweep_dirs = [ROOT / "bench" / "results" / name]
        cmd = sweep_command(args.data, args.seeds, args.overrides, sweep_dirs[0])
        sweep = shlex.join(["python", *cmd[1:]])
        print("$ " + sweep, flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    result = aggregate(collect(sweep_dirs))
    result.update({"data": args.data, "sweep_command": sweep,
                   "sweep_dirs": [str(d) for d in sweep_dirs]})
    record.write(result, note=None)  # quality only: deterministic, load does not matter
    print("\n" + tables.render_record(kd_ablation, results_io.read(name)))


if __name__ == "__main__":
    main()

"""KD ablation table: kd=none vs logit vs multi_level, same student, several seeds.

Runs (or reads) a Hydra multirun and aggregates mean and spread per KD preset:

    python bench/kd_table.py --data germeval_coarse                # runs the sweep, then the table
    python bench/kd_table.py --from-dir multirun/<date>/<time>     # table of a finished sweep

The sweep it runs is printed and is an ordinary command:

    python -m hate_compress -m pipeline=teacher_kd data=<data> teacher.seed=42 \
        kd=none,logit,multi_level seed=1,2,3 measure.latency=false
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KDS = ("none", "logit", "multi_level")


def sweep_command(data: str, seeds: str, extra: list[str], sweep_dir: Path) -> list[str]:
    return [sys.executable, "-m", "hate_compress", "-m", "pipeline=teacher_kd", f"data={data}",
            "teacher.seed=42", f"kd={','.join(KDS)}", f"seed={seeds}", "measure.latency=false",
            f"hydra.sweep.dir={sweep_dir}", "trainer.enable_progress_bar=false", *extra]


def collect(sweep_dirs: list[Path]) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for path in sorted(p for d in sweep_dirs for p in d.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("run", {}).get("status") != "ok":
            raise SystemExit(f"{path}: cell failed: {metrics.get('run', {}).get('error')}")
        rows.setdefault(metrics["run"]["kd"], []).append(metrics)
    return rows


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def table(rows: dict[str, list[dict]]) -> str:
    any_run = next(iter(rows.values()))[0]
    split = "test" if "test" in any_run["kd"] else "dev"
    teacher = any_run["teacher"][split]
    lines = [
        f"teacher {any_run['run']['teacher']} ({split}): macro F1 {teacher['macro_f1']:.4f}",
        "",
        f"| kd | seeds | {split} macro F1 | {split} hate/min-class F1 | dev macro F1 | agreement |",
        "|---|---|---|---|---|---|",
    ]
    for kd in KDS:
        runs = rows.get(kd, [])
        if not runs:
            continue
        stage = [r["kd"] for r in runs]
        second = "hate_f1" if "hate_f1" in stage[0][split] else None
        minority = [s[split].get(second) if second else min(
            v for k, v in s[split].items() if k.startswith("f1_")) for s in stage]
        lines.append(
            f"| {kd} | {len(runs)} | {mean_sd([s[split]['macro_f1'] for s in stage])} | "
            f"{mean_sd(minority)} | {mean_sd([s['dev']['macro_f1'] for s in stage])} | "
            f"{mean_sd([s[split]['agreement'] for s in stage])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="germeval_coarse")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--from-dir", type=Path, nargs="+", help="finished sweep dir(s)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every cell")
    args = parser.parse_args()
    sweep_dirs = args.from_dir
    if sweep_dirs is None:
        sweep_dirs = [ROOT / "bench" / "results" / f"kd_table_{args.data}"]
        cmd = sweep_command(args.data, args.seeds, args.overrides, sweep_dirs[0])
        print("$ python " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    out = table(collect(sweep_dirs))
    print(f"\n{date.today()} — {', '.join(map(str, sweep_dirs))}\n\n{out}")
    (sweep_dirs[0] / "kd_table.md").write_text(out + "\n")


if __name__ == "__main__":
    main()

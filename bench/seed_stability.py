"""Seed stability: the same teacher, the same student recipe, N student seeds; how far can one fall?

A recipe is only trustworthy if its result does not depend on the seed a user happens to pick
(issue 17: with the old 4-epoch student recipe the default seed 42 fell 7 points below the other
seeds on Bengali hate v2). This runs one Hydra multirun over the student seed with a fixed,
stored teacher, and tabulates test and dev macro F1 per seed, their median, and how far each
seed falls below the median:

    python bench/seed_stability.py --data bengali_hate_v2                # runs, then the table
    python bench/seed_stability.py --data germeval_coarse --seeds 1-10
    python bench/seed_stability.py --from-dir bench/results/seed_stability_bengali_hate_v2
    python bench/seed_stability.py --data bengali_hate_v2 --store /work/wt/seeds_store  # shared teachers

The sweep it runs is printed and is an ordinary command:

    python -m hate_compress -m pipeline=teacher_kd data=<data> teacher.seed=42 kd=logit \
        seed=1,2,...,10,42 measure.latency=false

The median is over `--seeds`; `--check-seed` (the default seed 42) is also run and compared with
that median, so "does the default command land where the other seeds do" is answered directly.
Writes `bench/results/seed_stability_<data>[_<tag>].json` (per seed: test/dev macro F1, per-class
test F1, per-epoch dev curve; the median, min, mean ± std, largest fall below the median; the
command; the student recipe the cells ran with, which tests/test_student_recipe.py compares
with conf/student) and prints the markdown table. `--store DIR` sets `paths.cache_dir`, so the
teacher (and its cached logits) is trained once and shared by every seed and later reruns.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def parse_seeds(text: str) -> list[int]:
    """`1-10`, `1,2,3` or a mix (`1-5,42`)."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    return seeds


def sweep_command(data: str, kd: str, seeds: list[int], extra: list[str],
                  sweep_dir: Path) -> list[str]:
    return [sys.executable, "-m", "hate_compress", "-m", "pipeline=teacher_kd", f"data={data}",
            "teacher.seed=42", f"kd={kd}", "seed=" + ",".join(map(str, seeds)),
            "measure.latency=false", f"hydra.sweep.dir={sweep_dir}",
            "trainer.enable_progress_bar=false", *extra]


def dev_curve(run_dir: Path) -> list[float]:
    """Dev macro F1 after each KD epoch, from the stage's Lightning CSV log (empty without it)."""
    path = run_dir / "kd" / "logs" / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [round(float(row["val/macro_f1"]), 4) for row in csv.DictReader(fh)
                if row.get("val/macro_f1")]


RECIPE_KEYS = (("train", "epochs"), ("train", "lr"), ("train", "warmup_ratio"),
               ("head", "pooling"))


def recipe(cell: Path) -> dict:
    """The student recipe a cell ran with (student name, epochs, lr, warm-up, pooling), read from
    Hydra's saved config; {} when the cell has none (hand-made cells in tests)."""
    path = cell / ".hydra" / "config.yaml"
    if not path.exists():
        return {}
    student = (yaml.safe_load(path.read_text()) or {}).get("student") or {}
    out = {"student": student.get("name")}
    for group, key in RECIPE_KEYS:
        out[f"{group}.{key}"] = (student.get(group) or {}).get(key)
    return out


def collect(sweep_dirs: list[Path]) -> dict[int, dict]:
    """Per seed: test/dev macro F1, per-class test F1 and the dev curve of the KD stage."""
    rows: dict[int, dict] = {}
    for path in sorted(p for d in sweep_dirs for p in d.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if metrics.get("run", {}).get("status") == "running":  # unfinished or killed: not a result
            print(f"skipped unfinished cell {path.parent}", file=sys.stderr)
            continue
        if metrics.get("run", {}).get("status") != "ok":
            raise SystemExit(f"{path}: cell failed: {metrics.get('run', {}).get('error')}")
        kd = metrics["kd"]
        split = "test" if "test" in kd else "dev"
        rows[int(metrics["run"]["seed"])] = {
            "split": split,
            "test_macro_f1": kd[split]["macro_f1"],
            "dev_macro_f1": kd["dev"]["macro_f1"],
            "test_class_f1": {k: v for k, v in kd[split].items() if k.startswith("f1_")},
            "dev_curve": dev_curve(path.parent),
            "teacher_test_macro_f1": metrics["teacher"][split]["macro_f1"],
            "recipe": recipe(path.parent),
        }
    return rows


def stability(rows: dict[int, dict], seeds: list[int], check_seed: int | None,
              tolerance: float) -> dict:
    """Median over `seeds` and each seed's gap below it (positive = worse than the median)."""
    missing = [s for s in seeds if s not in rows]
    if missing:
        raise SystemExit(f"no finished run for seed(s) {missing}")
    values = [rows[s]["test_macro_f1"] for s in seeds]
    median = statistics.median(values)
    gaps = {s: median - rows[s]["test_macro_f1"] for s in rows}
    summary = {
        "seeds": seeds, "n": len(seeds), "median": median, "min": min(values),
        "max": max(values), "mean": statistics.mean(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "max_gap_below_median": max(gaps[s] for s in seeds), "tolerance": tolerance,
        "dev_median": statistics.median(rows[s]["dev_macro_f1"] for s in seeds),
    }
    summary["stable"] = summary["max_gap_below_median"] <= tolerance
    if check_seed is not None and check_seed in rows:
        summary["check_seed"] = check_seed
        summary["check_seed_gap"] = gaps[check_seed]
        summary["check_seed_ok"] = gaps[check_seed] <= tolerance
    return summary


def table(rows: dict[int, dict], summary: dict) -> str:
    split = next(iter(rows.values()))["split"]
    check = summary.get("check_seed")
    lines = [f"| seed | {split} macro F1 | dev macro F1 | below median | dev F1 per epoch |",
             "|---|---|---|---|---|"]
    for seed in [*summary["seeds"], *([check] if check not in summary["seeds"] else [])]:
        if seed not in rows:
            continue
        row = rows[seed]
        gap = summary["median"] - row["test_macro_f1"]
        name = f"{seed} (default)" if seed == check else str(seed)
        curve = " ".join(f"{v:.3f}" for v in row["dev_curve"])
        lines.append(f"| {name} | {row['test_macro_f1']:.4f} | {row['dev_macro_f1']:.4f} | "
                     f"{gap * 100:+.1f} | {curve} |")
    tol = summary["tolerance"] * 100
    lines += [
        "",
        f"{summary['n']} seeds: median {summary['median']:.4f}, min {summary['min']:.4f}, "
        f"max {summary['max']:.4f}, mean {summary['mean']:.4f} ± {summary['stdev']:.4f}; "
        f"largest fall below the median **{summary['max_gap_below_median'] * 100:.1f} points** "
        f"({'within' if summary['stable'] else 'OVER'} the {tol:.0f}-point bar)",
    ]
    if "check_seed" in summary:
        lines.append(
            f"default seed {check}: {summary['check_seed_gap'] * 100:+.1f} points below the "
            f"median ({'within' if summary['check_seed_ok'] else 'OVER'} the {tol:.0f}-point bar)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="bengali_hate_v2")
    parser.add_argument("--kd", default="logit")
    parser.add_argument("--seeds", default="1-10", help="e.g. 1-10 or 1,2,3 (median over these)")
    parser.add_argument("--check-seed", type=int, default=42,
                        help="also run this seed and compare it with the median (-1: none)")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="largest acceptable fall below the median (macro F1)")
    parser.add_argument("--tag", default="", help="suffix of the sweep dir and results file")
    parser.add_argument("--from-dir", type=Path, nargs="+", help="finished sweep dir(s)")
    parser.add_argument("--store", type=Path,
                        help="paths.cache_dir: teacher store shared by the seeds and reruns")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every seed")
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    check = None if args.check_seed < 0 else args.check_seed
    name = f"seed_stability_{args.data}" + (f"_{args.tag}" if args.tag else "")
    sweep_dirs = args.from_dir
    extra = [*args.overrides, *([f"paths.cache_dir={args.store}"] if args.store else [])]
    run_seeds = seeds + ([check] if check is not None and check not in seeds else [])
    cmd = sweep_command(args.data, args.kd, run_seeds, extra, (RESULTS / name).relative_to(ROOT))
    command = "python " + shlex.join(cmd[1:])
    if sweep_dirs is None:
        sweep_dirs = [RESULTS / name]
        print("$ " + command, flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    rows = collect(sweep_dirs)
    summary = stability(rows, seeds, check, args.tolerance)
    out = table(rows, summary)
    print(f"\n{date.today()} — {', '.join(map(str, sweep_dirs))}\n\n{out}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    recipes = {json.dumps(r["recipe"], sort_keys=True) for r in rows.values()}
    if len(recipes) > 1:
        raise SystemExit(f"the cells ran different student recipes: {sorted(recipes)}")
    payload = {"data": args.data, "kd": args.kd, "overrides": args.overrides,
               "command": command, "bench_command": "python bench/seed_stability.py "
               + shlex.join(sys.argv[1:]), "recipe": json.loads(recipes.pop()),
               "summary": summary, "seeds": {str(k): v for k, v in sorted(rows.items())}}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()

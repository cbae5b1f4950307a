"""KD variants with stronger teachers (issue 16): which teacher makes the 2x128 student best?

For one dataset and a list of student seeds this runs the real CLI (`python -m hate_compress`,
one subprocess per variant and seed) for:

    none          labels only (`kd=none`), the reference every KD variant must beat
    tiny_teacher  logit KD from the 4x256 `tiny_teacher`
    char_ngram    logit KD from the TF-IDF + logistic regression teacher (`teacher=char_ngram`)
    char_ngram_cf5  the same with cross-fitted soft targets (`teacher.cross_fit=5`; opt-in)
    ensemble      logit KD from `teacher=ensemble` (tiny_teacher + char_ngram, equal weights)
    assistant     the assistant chain `pipeline=assistant_kd` (4x256 -> 3x192 -> 2x128)
    mutual        Deep Mutual Learning `kd=mutual` (two 2x128 peers, the better one by dev F1)
    ensemble_aug  the ensemble with teacher-labelled augmentation (`kd.augment.copies=2`; opt-in)
    char_ngram_aug  the same from char_ngram alone (the best teacher on GermEval dev; opt-in)
    none_aug      labels only on the same augmented data: is it the teacher or the noise? (opt-in)
    ensemble_alpha09, ensemble_4x256   what limits the ensemble student: alpha, capacity (opt-in)

Every cell uses `teacher.seed=42` (and the same seed for each ensemble member), one shared
`paths.cache_dir` (`--store`), so each teacher is trained once and every seed and variant reuses
it, and `measure.latency=false` (quality only). It records per variant and seed the student's
test macro F1, dev macro F1 and agreement with its own teacher, their mean ± std over seeds, the
teacher's test F1 and the char_ngram baseline's test F1 (`measure.baseline`, on for real data),
and rewrites `bench/results/kd_variants_<data>.json` after every cell, so a run cut short still
leaves its finished cells. A rerun skips cells whose `metrics.json` says `ok`, and cells the
committed JSON already records (run directories are scratch); `--fresh` reruns the
invocation's cells and keeps every other recorded one (e.g. after a teacher was retrained).

    python bench/kd_variants.py --data germeval_coarse --seeds 1,2,3
    python bench/kd_variants.py --data bengali_hate_v2 --variants none,ensemble
    python bench/kd_variants.py --data synthetic --seeds 1 --tag smoke -- debug=tiny  # plumbing
    python bench/kd_variants.py --data germeval_coarse --dry-run       # print the commands only

One cell is an ordinary command, e.g. the ensemble with seed 1:

    python -m hate_compress pipeline=teacher_kd data=germeval_coarse kd=logit teacher=ensemble \
        +teacher.member_overrides.tiny_teacher.seed=42 +teacher.member_overrides.char_ngram.seed=42 \
        teacher.seed=42 seed=1 measure.latency=false paths.cache_dir=<store> ...
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results_io, tables  # noqa: E402
from bench.kd_variant_list import (  # noqa: E402
    DEFAULT_VARIANTS,
    TEACHER_SEED,
    VARIANTS,
    Variant,
)
from bench.table_renderers import kd_variants  # noqa: E402


def parse_seeds(text: str) -> list[int]:
    """`1-5`, `1,2,3` or a mix (`1-3,42`)."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        seeds.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    return seeds


def parse_variants(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: --variants: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(VARIANTS)}")
    return names


def cell_command(variant: Variant, data: str, seed: int, store: Path, out_root: Path,
                 extra: list[str]) -> list[str]:
    """One cell: an ordinary `python -m hate_compress` run, its own run directory."""
    return [sys.executable, "-m", "hate_compress", *variant.overrides, f"data={data}",
            f"teacher.seed={TEACHER_SEED}", f"seed={seed}", "measure.latency=false",
            f"paths.cache_dir={store}", f"paths.output_root={out_root}",
            f"run_name={variant.name}/seed_{seed}", "resume=false",
            "trainer.enable_progress_bar=false", *extra]


def display(cmd: list[str]) -> str:
    """The command as a user types it (`python`, paths relative to the repository)."""
    def rel(arg: str) -> str:
        key, sep, value = arg.partition("=")
        if sep and value.startswith(str(ROOT) + "/"):
            return f"{key}={Path(value).relative_to(ROOT)}"
        return arg
    return shlex.join(["python", *(rel(a) for a in cmd[1:])])


def run_dir(out_root: Path, variant: str, seed: int) -> Path:
    return out_root / "runs" / variant / f"seed_{seed}"


def read_cell(path: Path) -> dict | None:
    """What the table needs from one finished cell's metrics.json (None: not finished)."""
    metrics_path = path / "metrics.json"
    if not metrics_path.exists():
        return None
    metrics = json.loads(metrics_path.read_text())
    status = metrics.get("run", {}).get("status")
    if status != "ok":
        return {"status": status or "unknown", "error": metrics.get("run", {}).get("error")}
    kd = metrics["kd"]
    split = "test" if "test" in kd else "dev"
    cell = {"status": "ok", "split": split, "test_macro_f1": kd[split]["macro_f1"],
            "dev_macro_f1": kd["dev"]["macro_f1"], "agreement": kd[split].get("agreement"),
            "teacher": metrics["run"].get("teacher"),
            "teacher_test_macro_f1": metrics["teacher"][split]["macro_f1"]}
    if "assistant" in metrics:
        cell["assistant_test_macro_f1"] = metrics["assistant"][split]["macro_f1"]
    peers = sorted(k for k in metrics if k.startswith("kd_peer"))
    if peers:
        cell["peer_test_macro_f1"] = [metrics[p][split]["macro_f1"] for p in peers]
    baseline = metrics.get("baseline")
    if baseline and split in baseline:
        cell["baseline_test_macro_f1"] = baseline[split]["macro_f1"]
    return cell


def stats(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values), "values": values}


def aggregate(cells: dict[str, dict[int, dict]], order: list[str]) -> dict:
    """Per variant: mean ± std over the finished seeds; the baseline and the split they share."""
    rows, baseline, split = [], [], None
    for name in order:
        runs = {s: c for s, c in sorted(cells.get(name, {}).items()) if c and c["status"] == "ok"}
        failed = {s: c.get("error") for s, c in cells.get(name, {}).items()
                  if c and c["status"] not in ("ok", "running")}
        row = {"variant": name, "label": VARIANTS[name].label, "seeds": list(runs),
               "runs": {str(s): c for s, c in runs.items()}, "failed": {str(s): e for s, e in failed.items()}}
        if runs:
            split = split or next(iter(runs.values()))["split"]
            ok = list(runs.values())
            row["macro_f1"] = stats([c["test_macro_f1"] for c in ok])
            row["dev_macro_f1"] = stats([c["dev_macro_f1"] for c in ok])
            if all(c.get("agreement") is not None for c in ok):
                row["agreement"] = stats([c["agreement"] for c in ok])
            row["teacher"] = ok[0]["teacher"]
            row["teacher_macro_f1"] = ok[0]["teacher_test_macro_f1"]
            # one teacher per variant, unless it was retrained on another machine (a fresh
            # store: same seed and config, not bit-identical floats): then the table says so
            row["teacher_macro_f1_values"] = sorted({round(c["teacher_test_macro_f1"], 4) for c in ok})
            baseline += [c["baseline_test_macro_f1"] for c in ok if "baseline_test_macro_f1" in c]
        rows.append(row)
    return {"split": split or "test", "rows": rows,
            "baseline_macro_f1": baseline[0] if baseline else None,
            "baseline_values_agree": len({round(b, 6) for b in baseline}) <= 1}


def collect(out_root: Path, order: list[str], seeds: list[int]) -> dict[str, dict[int, dict]]:
    """Every cell under `out_root`: the planned variants and seeds, plus any other finished by
    another invocation into the same directory (two runs filling one table write the same view)."""
    found = {(p.parent.name, int(p.name.split("_", 1)[1]))
             for p in (out_root / "runs").glob("*/seed_*")
             if p.is_dir() and p.parent.name in VARIANTS}  # not a killed run's seed_N.lock
    names = [v for v in VARIANTS if v in order or any(f[0] == v for f in found)]  # fixed order
    all_seeds = sorted({*seeds, *(s for _, s in found)})
    return {name: {s: read_cell(run_dir(out_root, name, s)) for s in all_seeds} for name in names}


def read_record(name: str) -> dict:
    """This table's committed JSON ({} when there is none or it cannot be read)."""
    try:
        return results_io.read(name) or {}
    except (OSError, ValueError, KeyError):
        return {}


def same_experiment(doc: dict, overrides: list[str]) -> bool:
    """A record made with the same extra overrides (else its cells are another experiment)."""
    return bool(doc) and list(doc.get("results", {}).get("overrides") or []) == list(overrides)


def recorded_cells(doc: dict, overrides: list[str]) -> dict[str, dict[int, dict]]:
    """The finished cells of this table's committed JSON `doc`. Run directories are scratch (not
    committed, lost with the checkout), the JSON is not: a later invocation that adds seeds or
    variants keeps the cells it cannot re-read from disk instead of dropping them."""
    if not same_experiment(doc, overrides):
        return {}
    results = doc["results"]
    return {row["variant"]: {int(s): cell for s, cell in row.get("runs", {}).items()}
            for row in results.get("rows", []) if row.get("variant") in VARIANTS}


def merge_invocations(docs: list[dict], command: str) -> list[str]:
    """Every command that filled this table, oldest first: those of the records `docs` (a record
    made before the `invocations` list has only `command`), then `command`."""
    merged: list[str] = []
    for doc in docs:
        for c in doc.get("results", {}).get("invocations") or ([doc["command"]] if doc.get("command") else []):
            if c not in merged:
                merged.append(c)
    return merged + ([] if command in merged else [command])


def finished_where(on_disk: dict | None, recorded: dict | None, path: Path, name: str) -> str | None:
    """Where a cell's finished result already is (its run directory, else the committed JSON),
    or None when it has to run."""
    if on_disk and on_disk["status"] == "ok":
        return str(path)
    if (recorded or {}).get("status") == "ok":
        return f"recorded in bench/results/{name}.json"
    return None


def merge_recorded(cells: dict[str, dict[int, dict]], recorded: dict[str, dict[int, dict]]
                   ) -> tuple[dict[str, dict[int, dict]], list[str]]:
    """`cells` (read from run directories) wins; a recorded cell fills only a missing one.
    Returns the merged cells and which ones came from the record (`variant/seed`)."""
    merged = {name: dict(runs) for name, runs in cells.items()}
    carried = []
    for name in VARIANTS:  # fixed order
        for seed, cell in sorted(recorded.get(name, {}).items()):
            if merged.get(name, {}).get(seed) is None and cell.get("status") == "ok":
                merged.setdefault(name, {})[seed] = cell
                carried.append(f"{name}/{seed}")
    return {name: merged[name] for name in VARIANTS if name in merged}, carried


def claim(path: Path) -> Path | None:
    """A lock beside the cell's run directory, so two invocations never run one cell at once;
    None when a live process holds it (a stale lock of a dead process is taken over)."""
    lock = path.parent / f"{path.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or 0), 0)
                return None  # held by a live process
            except (ProcessLookupError, ValueError):
                lock.unlink(missing_ok=True)
                continue
            except PermissionError:
                return None
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return lock
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Anything after `--` is passed to every cell as Hydra overrides.")
    parser.add_argument("--data", default="germeval_coarse")
    parser.add_argument("--seeds", default="1,2,3", help="student seeds, e.g. 1,2,3 or 1-5")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--store", type=Path, default=None,
                        help="paths.cache_dir shared by every cell (teacher store + output cache); "
                             "default bench/results/work/kd_variants_store")
    parser.add_argument("--tag", default="", help="suffix of the result name and run directory")
    parser.add_argument("--from-dir", action="store_true",
                        help="run nothing; only collect the finished cells into the JSON")
    parser.add_argument("--fresh", action="store_true",
                        help="rerun this invocation's cells (--variants x --seeds) even when "
                             "finished or recorded; every other recorded cell is kept")
    parser.add_argument("--dry-run", action="store_true", help="print the cell commands and exit")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every cell")
    args = parser.parse_args(argv)
    seeds, order = parse_seeds(args.seeds), parse_variants(args.variants)
    name = f"kd_variants_{args.data}" + (f"_{args.tag}" if args.tag else "")
    out_root = ROOT / "bench" / "results" / name  # run directories (scratch, not committed)
    store = (args.store or ROOT / "bench" / "results" / "work" / "kd_variants_store").resolve()
    record = results_io.Recorder(name, argv=None if argv is None else [__file__, *argv])
    commands = {v: display(cell_command(VARIANTS[v], args.data, seeds[0], store, out_root,
                                        args.overrides)) for v in order}
    if args.dry_run:
        for seed in seeds:
            for v in order:
                print(display(cell_command(VARIANTS[v], args.data, seed, store, out_root, args.overrides)))
        return 0

    previous = read_record(name)
    if not same_experiment(previous, args.overrides):
        previous = {}
    recorded = recorded_cells(previous, args.overrides)
    # one table, filled by several invocations (more seeds, opt-in variants): keep them all
    def write() -> None:
        # re-read: invocations running at the same time write this record too (keep theirs)
        latest = read_record(name)
        latest = latest if same_experiment(latest, args.overrides) else {}
        invocations = merge_invocations([previous, latest], record.command)
        cell_commands = {**previous.get("results", {}).get("cell_commands", {}),
                         **latest.get("results", {}).get("cell_commands", {}), **commands}
        cells, carried = merge_recorded(collect(out_root, order, seeds), recorded)
        result = aggregate(cells, list(cells))
        result["carried_from_record"] = carried  # cells whose run directories are gone
        result.update({"data": args.data, "planned_seeds": seeds, "teacher_seed": TEACHER_SEED,
                       "overrides": args.overrides, "store": str(store.relative_to(ROOT) if store.is_relative_to(ROOT) else store),
                       "cell_commands": cell_commands, "invocations": invocations})
        record.write(result, note=None)  # quality only: deterministic, load does not matter

    # the package of this checkout, also when the venv has another one installed editable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    failures = 0
    if not args.from_dir:
        for seed in seeds:  # seed-major: after the first seed every variant has a number
            for v in order:
                path = run_dir(out_root, v, seed)
                reason = finished_where(read_cell(path), recorded.get(v, {}).get(seed), path, name)
                if reason and not args.fresh:
                    print(f"[{v} seed {seed}] done already ({reason}; --fresh reruns it)",
                          flush=True)
                    continue
                lock = claim(path)
                if lock is None:
                    print(f"[{v} seed {seed}] running in another process; skipped", flush=True)
                    continue
                cmd = cell_command(VARIANTS[v], args.data, seed, store, out_root, args.overrides)
                print(f"\n[{v} seed {seed}] $ {display(cmd)}", flush=True)
                start = time.perf_counter()
                try:
                    proc = subprocess.run(cmd, cwd=ROOT, env=env)
                finally:
                    lock.unlink(missing_ok=True)
                print(f"[{v} seed {seed}] exit {proc.returncode} after "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
                failures += proc.returncode != 0
                write()  # partial results after every cell
    write()
    print("\n" + tables.render_record(kd_variants, results_io.read(name)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

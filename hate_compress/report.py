"""One report over a whole sweep: which teacher -> student cell to ship, and what it costs.

`python -m hate_compress.report <multirun dir> [--f1-floor 0.6] [--out DIR]` reads every cell's
`metrics.json` below the directory and writes `report.md`, `report.csv` and PNG plots. The same
code runs automatically when a Hydra sweep ends (`MultirunReportCallback`, registered in
`conf/hydra/default.yaml`), so a matrix always leaves its comparison behind.

Each cell contributes the row of its *final* stage (the model the cell produced), plus one row
per distinct teacher artifact as the reference point. Failed cells stay in the table as failed
rows with their error: a matrix whose missing corners are silent gaps reads as "all fine".

This module imports only the standard library at import time because Hydra instantiates the
callback at the start of every run, single runs included; matplotlib loads only when plotting.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hate_compress.errors import HateCompressError
from hate_compress.summary import (
    SEED_METRICS,
    eval_split,
    final_stage,
    fmt,
    mean_pm_std,
    spread,
    stage_order,
)

log = logging.getLogger(__name__)

ARROW = "→"

# CSV columns, in order. Latency/speedup columns for batch sizes other than 1 and 32
# (e.g. `measure.batch_sizes=[1,4]`) are appended after latency_ms_b32 when present.
CSV_COLUMNS = [
    "kind", "cell", "label", "teacher", "student", "kd", "prune", "quant", "data", "seed",
    "stage", "status", "split", "macro_f1", "hate_f1", "agreement", "f1_retention",
    "speedup_b1", "speedup_b32", "size_mb", "size_reduction", "latency_ms_b1", "latency_ms_b32",
    "params_total", "params_nonzero", "sparsity", "dev_macro_f1", "degenerate", "error",
    "overrides", "artifact",
]
QUALITY_KEYS = ("macro_f1", "hate_f1", "agreement")
FOOTPRINT_KEYS = ("size_mb", "size_reduction", "params_total", "params_nonzero", "sparsity")

# the markdown table: what a reader compares across cells
TABLE = [
    ("model", "label"), ("kd", "kd"), ("stage", "stage"), ("status", "status"),
    ("degenerate", "degenerate"), ("macro F1", "macro_f1"), ("dev macro F1", "dev_macro_f1"), ("hate F1", "hate_f1"), ("speedup b1", "speedup_b1"),
    ("size MB", "size_mb"), ("agreement", "agreement"), ("latency b1 ms", "latency_ms_b1"),
    ("latency b32 ms", "latency_ms_b32"), ("F1 retention", "f1_retention"),
    ("expl. cosine", "explain_cosine"), ("flip rate", "flip_rate_lost"), ("cell", "cell"),
    ("error", "error"),
]

# what compression changed (hate_compress/analysis): explanation similarity vs the teacher
# (mean/std over the explained dev examples) and the share of teacher-right examples lost
ANALYSIS_KEYS = ["explain_cosine", "explain_cosine_std", "explain_top5", "explain_top5_std",
                 "explain_via", "flip_rate_lost", "flip_rate_gained"]
CSV_COLUMNS += ANALYSIS_KEYS

PLOTS = {
    "pareto_size": "pareto_f1_vs_size.png",
    "pareto_latency": "pareto_f1_vs_latency_b1.png",
    "heatmap_f1": "heatmap_macro_f1.png",
    "heatmap_speedup": "heatmap_speedup_b1.png",
}


class ReportError(HateCompressError):
    """Nothing to report on: a wrong directory, or a sweep that wrote no metrics.json."""


# ---------------------------------------------------------------------------------------------
# reading the cells


def _natural(path: Path) -> list:
    """Cell 10 sorts after cell 9, as Hydra numbered them."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def find_cells(root: Path) -> list[Path]:
    """Every directory below `root` holding a metrics.json, in sweep order.

    Searching recursively lets one report cover `multirun/` (several sweeps) as well as one
    sweep directory or a single run directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root}: no such directory")
    cells = sorted((p.parent for p in root.rglob("metrics.json") if p.is_file()),
                   key=lambda p: _natural(p.relative_to(root)))
    if not cells:
        raise ReportError(f"{root}: no metrics.json found below it (is this a multirun directory?)")
    return cells


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # a half-written file must not hide the rest of the sweep
        return None


def _config_names(cell: Path) -> dict[str, Any]:
    """Teacher/student/... names from the cell's config, for cells that failed before the app
    recorded them in metrics.json (e.g. a config error)."""
    cfg = _read_yaml(cell / "config_resolved.yaml") or _read_yaml(cell / ".hydra" / "config.yaml")
    if not isinstance(cfg, dict):
        return {}
    names: dict[str, Any] = {}
    for group in ("teacher", "student", "kd", "prune", "quant", "data"):
        node = cfg.get(group)
        if isinstance(node, dict) and isinstance(node.get("name"), str) and "${" not in node["name"]:
            names[group] = node["name"]
    if isinstance(cfg.get("stages"), list):
        names["stages"] = cfg["stages"]
    if isinstance(cfg.get("seed"), int):
        names["seed"] = cfg["seed"]
    return names


def load_cell(cell: Path, root: Path) -> dict[str, Any]:
    """metrics.json plus what the cell directory says about itself."""
    name = cell.relative_to(root).as_posix() if cell != root else cell.name
    overrides = _read_yaml(cell / ".hydra" / "overrides.yaml")
    try:
        metrics = json.loads((cell / "metrics.json").read_text())
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
        error = None
    except (OSError, ValueError) as exc:
        metrics, error = {}, f"unreadable metrics.json: {exc}"
    run = dict(_config_names(cell))
    run.update({k: v for k, v in (metrics.get("run") or {}).items() if v is not None})
    if error:
        run.update(status="failed", error=error)
    return {"cell": name, "path": cell, "metrics": metrics, "run": run,
            "overrides": " ".join(map(str, overrides)) if isinstance(overrides, list) else None}


# ---------------------------------------------------------------------------------------------
# rows


def _pick_split(values: dict, split: str) -> str | None:
    if split == "auto":
        return eval_split(values) if ("test" in values or "dev" in values) else None
    return split if split in values else None


def stage_values(values: dict, split: str, teacher: dict | None) -> dict[str, Any]:
    """One stage's numbers: quality on `split`, footprint, and the ratios to the cell's teacher."""
    used = _pick_split(values, split)
    quality = values.get(used, {}) if used else {}
    row: dict[str, Any] = {"split": used}
    for key in QUALITY_KEYS:
        row[key] = quality.get(key)
    row["dev_macro_f1"] = values.get("dev", {}).get("macro_f1")
    row["degenerate"] = values.get("degenerate")  # None: written before the flag existed
    row["top_prediction_share"] = values.get("dev", {}).get("top_prediction_share")
    for key in FOOTPRINT_KEYS:
        row[key] = values.get(key)
    for key, value in values.items():
        if re.fullmatch(r"(latency_ms|speedup)_b\d+", key):
            row[key] = value
    row["f1_retention"] = values.get("f1_retention")
    if teacher is not None and used != eval_split(values):
        # stored retention is on the default split; recompute it on the one asked for
        t_f1 = teacher.get(used, {}).get("macro_f1")
        row["f1_retention"] = row["macro_f1"] / t_f1 if t_f1 and row["macro_f1"] is not None else None
    row["artifact"] = values.get("artifact")
    row.update(analysis_values(values))
    return row


def analysis_values(values: dict) -> dict[str, Any]:
    explain = values.get("explain") or {}
    forgot = values.get("forgetting") or {}
    ok = explain.get("status") == "ok"
    return {"explain_cosine": explain.get("cosine_mean") if ok else None,
            "explain_cosine_std": explain.get("cosine_std") if ok else None,
            "explain_top5": explain.get("top5_overlap_mean") if ok else None,
            "explain_top5_std": explain.get("top5_overlap_std") if ok else None,
            "explain_via": explain.get("explained_via") if ok else explain.get("reason"),
            "flip_rate_lost": forgot.get("flip_rate_lost"),
            "flip_rate_gained": forgot.get("flip_rate_gained")}


def _done(metrics: dict, stage: str) -> bool:
    return isinstance(metrics.get(stage), dict) and not metrics[stage].get("skipped")


def cell_row(cell: dict, split: str = "auto") -> dict[str, Any]:
    """The cell's final model. A cell that did not finish gets no numbers, only its error: the
    numbers of its earlier stages describe a different model than the cell was asked for."""
    metrics, run = cell["metrics"], cell["run"]
    stages = list(run.get("stages") or stage_order(metrics))
    status = run.get("status") or "unknown"
    last = final_stage(metrics)
    row: dict[str, Any] = {
        "kind": "cell", "cell": cell["cell"], "teacher": run.get("teacher"),
        "student": run.get("student") if "kd" in stages else None,
        "kd": run.get("kd") if "kd" in stages else None,
        "prune": run.get("prune") if "prune" in stages else None,
        "quant": run.get("quant") if "quant" in stages else None,
        "data": run.get("data"), "seed": run.get("seed"), "stage": last, "status": status,
        "error": run.get("error"), "overrides": cell["overrides"],
    }
    if status == "ok" and last is not None:
        teacher = metrics.get("teacher") if _done(metrics, "teacher") else None
        row.update(stage_values(metrics[last], split, teacher))
    elif status == "ok":
        row.update(status="failed", error=row["error"] or "no stage produced a model")
    else:
        row["error"] = row["error"] or f"status {status}: the run did not finish"
    parts = [row["teacher"] or "?"]
    if row["student"]:
        parts.append(f"{ARROW}{row['student']}")
    for stage in ("prune", "quant"):
        if _done(metrics, stage) and status == "ok":
            parts.append(f"+{row[stage]}")
    row["label"] = row["base_label"] = "".join(parts)
    return row


def teacher_row(cell: dict, split: str = "auto") -> dict[str, Any] | None:
    metrics, run = cell["metrics"], cell["run"]
    if not _done(metrics, "teacher"):
        return None
    row = {"kind": "teacher", "cell": cell["cell"], "teacher": run.get("teacher"),
           "label": f"{run.get('teacher') or '?'} (teacher)", "data": run.get("data"),
           "seed": run.get("seed"), "stage": "teacher", "status": "ok", "speedup_b1": 1.0,
           "size_reduction": 1.0, "f1_retention": 1.0, "overrides": cell["overrides"]}
    row.update({k: v for k, v in stage_values(metrics["teacher"], split, None).items()
                if v is not None or k not in row})
    for key in list(row):
        if key.startswith("latency_ms_b"):
            # the teacher is the reference every speedup is measured against
            row["speedup_b" + key.rsplit("_b", 1)[1]] = 1.0
    return row


def _teacher_identity(row: dict) -> tuple:
    """Same artifact = same teacher: a matrix reuses one stored teacher across its students."""
    if row.get("artifact"):
        return ("artifact", str(row["artifact"]))
    return ("cell", row["cell"])


def _unique_labels(rows: list[dict]) -> None:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    for row in rows:
        if counts[row["label"]] > 1:
            extra = row.get("kd") if row["kind"] == "cell" else None
            row["label"] = f"{row['label']} [{extra + ' ' if extra else ''}#{row['cell']}]"


def collect_rows(root: Path, split: str = "auto") -> list[dict[str, Any]]:
    """Teacher rows first (one per distinct teacher artifact), then one row per cell."""
    root = Path(root)
    # a `seeds=[...]` run's own aggregate: its seed runs are cells below it, aggregated here
    cells = [cell for cell in (load_cell(c, root) for c in find_cells(root))
             if cell["run"].get("kind") != "seeds"]
    teachers: dict[tuple, dict] = {}
    for cell in cells:
        row = teacher_row(cell, split)
        if row is not None:
            teachers.setdefault(_teacher_identity(row), row)
    rows = list(teachers.values()) + [cell_row(cell, split) for cell in cells]
    _unique_labels(rows)
    return rows


# ---------------------------------------------------------------------------------------------
# cells that differ only by seed

SEED_DIR = re.compile(r"seed_\d+")
# the `seed=` override of a `-m seed=1,2,3` sweep (not `teacher.seed=`: another teacher)
SEED_OVERRIDE = re.compile(r"\+{0,2}seed=\S*")


def seed_free_identity(row: dict) -> tuple:
    """What a cell is apart from its seed: its names and the overrides other than `seed=` (not
    its final stage: a failed seed stopped earlier but belongs to the group); the seed runs of
    one `seeds=[...]` run (`<dir>/seed_<s>`) share their parent."""
    if row.get("overrides") is not None:
        where = " ".join(t for t in row["overrides"].split() if not SEED_OVERRIDE.fullmatch(t))
    else:
        parent, _, name = row["cell"].rpartition("/")
        where = f"seeds of {parent or '.'}" if SEED_DIR.fullmatch(name) else f"cell {row['cell']}"
    names = tuple(row.get(k) for k in ("data", "teacher", "student", "kd", "prune", "quant"))
    return (where, *names)


def seed_groups(rows: list[dict]) -> list[dict[str, Any]]:
    """One aggregate per group of cells that differ only by seed (>= 2 seeds finished): mean,
    sample std and min of macro F1, dev macro F1, agreement and F1 retention. Failed seeds are
    counted, not averaged."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["kind"] == "cell" and row.get("seed") is not None:
            groups.setdefault(seed_free_identity(row), []).append(row)
    out = []
    for key, members in groups.items():
        ok = [r for r in members if r.get("status") == "ok"]
        if len({r["seed"] for r in ok}) < 2:
            continue
        first = ok[0]
        label = first.get("base_label") or first["label"]
        agg: dict[str, Any] = {
            "label": f"{label} [{first['kd']}]" if first.get("kd") else label,
            "stage": first.get("stage"), "where": key[0],
            "seeds": sorted(r["seed"] for r in ok), "failed": len(members) - len(ok),
            "degenerate": sum(bool(r.get("degenerate")) for r in ok),
            "cells": [r["cell"] for r in members]}
        for _, metric in SEED_METRICS:
            agg[metric] = spread([r[metric] for r in ok if _ok(r, metric)])
        out.append(agg)
    return out


SEED_TABLE = ["model", "stage", "seeds", "macro F1 mean ± std", "macro F1 min",
              "dev macro F1 mean ± std", "agreement mean ± std", "agreement min",
              "F1 retention mean ± std", "F1 retention min", "cells"]


def seed_markdown(groups: list[dict]) -> list[str]:
    if not groups:
        return []
    lines = ["", "## Across seeds", "",
             "Cells that differ only by their seed, aggregated (std: sample std across seeds). A "
             "difference between two models smaller than these stds is within what the seed "
             "alone changes.", "",
             "| " + " | ".join(SEED_TABLE) + " |", "|" + "---|" * len(SEED_TABLE)]
    for g in groups:
        seeds = f"{len(g['seeds'])} ({', '.join(map(str, g['seeds']))})"
        if g["failed"]:
            seeds += f", {g['failed']} failed"
        if g["degenerate"]:
            seeds += f", {g['degenerate']} degenerate"
        cells = [g["label"], g["stage"], seeds, mean_pm_std(g["macro_f1"]),
                 fmt(g["macro_f1"]["min"]), mean_pm_std(g["dev_macro_f1"]),
                 mean_pm_std(g["agreement"]), fmt(g["agreement"]["min"]),
                 mean_pm_std(g["f1_retention"]), fmt(g["f1_retention"]["min"]),
                 ", ".join(g["cells"])]
        lines.append("| " + " | ".join(_cell_text(c) for c in cells) + " |")
    return lines


def write_seed_csv(groups: list[dict], path: Path) -> None:
    """report_seeds.csv: one row per seed group, n/mean/std/min/max of each aggregated metric."""
    stats = ("n", "mean", "std", "min", "max")
    columns = ["label", "stage", "where", "seeds", "failed", "degenerate",
               *(f"{m}_{s}" for _, m in SEED_METRICS for s in stats)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for g in groups:
            flat = {k: g[k] for k in columns[:6]}
            flat["seeds"] = " ".join(map(str, g["seeds"]))
            flat.update({f"{m}_{s}": g[m][s] for _, m in SEED_METRICS for s in stats})
            writer.writerow({k: "" if v is None else v for k, v in flat.items()})


def columns_for(rows: Iterable[dict]) -> list[str]:
    extra = sorted({k for row in rows for k in row
                    if re.fullmatch(r"(latency_ms|speedup)_b\d+", k) and k not in CSV_COLUMNS},
                   key=lambda k: (k.split("_b")[0], int(k.rsplit("_b", 1)[1])))
    at = CSV_COLUMNS.index("latency_ms_b32") + 1
    return CSV_COLUMNS[:at] + extra + CSV_COLUMNS[at:]


# ---------------------------------------------------------------------------------------------
# recommendations


def _ok(row: dict, key: str) -> bool:
    value = row.get(key)
    return row.get("status") == "ok" and isinstance(value, (int, float)) and math.isfinite(value)


def _describe(row: dict) -> str:
    bits = [f"dev macro F1 {fmt(row.get('dev_macro_f1'))}"]
    if row.get("split") not in (None, "dev"):
        bits.append(f"{row['split']} macro F1 {fmt(row.get('macro_f1'))}")
    if row.get("speedup_b1") is not None and row["kind"] == "cell":
        bits.append(f"{row['speedup_b1']:.2f}x faster than its teacher (b1)")
    if row.get("latency_ms_b1") is not None:
        bits.append(f"{row['latency_ms_b1']:.2f} ms at b1")
    if row.get("size_mb") is not None:
        bits.append(f"{row['size_mb']:.1f} MB")
    return f"**{row['label']}** (cell {row['cell']}): " + ", ".join(bits)


def candidate(row: dict) -> bool:
    """A finished, non-degenerate model with a dev macro F1: what may be recommended."""
    return _ok(row, "dev_macro_f1") and not row.get("degenerate")


def recommend(rows: list[dict], f1_floor: float | None = None) -> list[dict[str, Any]]:
    """Best F1, fastest, smallest, and the fastest model that keeps macro F1 >= `f1_floor`.

    Selection is on **dev** macro F1 whatever split the table shows: choosing on test would make
    the test number an optimistic, selected score. Degenerate models (one class for almost
    everything, see `metrics.DEGENERATE_SHARE`) are never candidates. Candidates are the cells'
    finished models; teachers are candidates only when no cell produced a compressed model (a
    teacher-only sweep), since the question a matrix answers is which *compressed* model to
    ship. Ties go to the higher dev F1, then the earlier cell.
    """
    cells = [r for r in rows if r["kind"] == "cell" and candidate(r)]
    compressed = [r for r in cells if r.get("stage") != "teacher"]
    pool = compressed or cells or [r for r in rows if r["kind"] == "teacher" and candidate(r)]
    order = {id(r): i for i, r in enumerate(rows)}

    def best(candidates: list[dict], key) -> dict | None:
        return min(candidates, key=lambda r: (key(r), -r["dev_macro_f1"], order[id(r)]),
                   default=None)

    timed = [r for r in pool if _ok(r, "latency_ms_b1")]
    sized = [r for r in pool if _ok(r, "size_mb")]
    out = [
        {"rule": "best_f1", "title": "Best dev macro F1",
         "row": best(pool, lambda r: (-r["dev_macro_f1"], r.get("latency_ms_b1") or math.inf)),
         "missing": "no finished model"},
        {"rule": "fastest", "title": "Fastest (latency b1)",
         "row": best(timed, lambda r: r["latency_ms_b1"]),
         "missing": "no latency measured (measure.latency=false)"},
        {"rule": "smallest", "title": "Smallest (size MB)",
         "row": best(sized, lambda r: r["size_mb"]), "missing": "no size recorded"},
    ]
    floor = {"rule": "floor", "title": "Fastest with dev macro F1 >= floor", "floor": f1_floor}
    if f1_floor is None:
        floor.update(row=None, missing="no F1 floor given (--f1-floor)")
    else:
        floor["title"] = f"Fastest with dev macro F1 >= {f1_floor:g}"
        meets = [r for r in pool if r["dev_macro_f1"] >= f1_floor]
        # rank by latency; models without a latency number go last, smallest first among them
        floor["row"] = best(meets, lambda r: (r.get("latency_ms_b1") if _ok(r, "latency_ms_b1")
                                              else math.inf, r.get("size_mb") or math.inf))
        top = max((r["dev_macro_f1"] for r in pool), default=None)
        floor["missing"] = (f"none meets the floor (best dev macro F1 is {fmt(top)})"
                            if top is not None
                            else "none meets the floor (no finished model)")
    out.append(floor)
    for rec in out:
        if not pool:
            rec["missing"] = "no finished model"
        rec["text"] = _describe(rec["row"]) if rec["row"] is not None else rec["missing"]
    return out


# ---------------------------------------------------------------------------------------------
# writing


def _cell_text(value: Any) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[dict], recs: list[dict], root: Path, plots: dict[str, str],
             f1_floor: float | None, groups: list[dict] | None = None) -> str:
    cells = [r for r in rows if r["kind"] == "cell"]
    failed = [r for r in cells if r["status"] != "ok"]
    splits = sorted({r["split"] for r in rows if r.get("split")})
    lines = [
        f"# Sweep report: {root}", "",
        f"{len(cells)} cells ({len(cells) - len(failed)} ok, {len(failed)} not ok), "
        f"{sum(r['kind'] == 'teacher' for r in rows)} distinct teachers. Quality on "
        f"{'/'.join(splits) or '-'}; models are selected on dev macro F1 (test is only "
        "reported); speedup is vs the cell's own teacher at batch size 1; each cell shows its "
        "final stage.", "",
        "## Recommendations", "",
    ]
    lines += [f"- {rec['title']}: {rec['text']}" for rec in recs]
    teachers = [r for r in rows if r["kind"] == "teacher" and candidate(r)]
    if teachers:
        top = max(teachers, key=lambda r: r["dev_macro_f1"])
        lines.append(f"- Reference: best teacher {top['label']} has dev macro F1 "
                     f"{fmt(top['dev_macro_f1'])}")
    degenerate = [r for r in rows if r.get("degenerate")]
    if degenerate:
        lines.append(f"- Not recommended: {len(degenerate)} degenerate model(s) (one class for "
                     "almost every dev text), listed below")
    lines += seed_markdown(groups or [])
    lines += ["", "## Results", "",
              "| " + " | ".join(name for name, _ in TABLE) + " |", "|" + "---|" * len(TABLE)]
    for row in rows:
        lines.append("| " + " | ".join(_cell_text(row.get(key)) for _, key in TABLE) + " |")
    if degenerate:
        lines += ["", "## Degenerate models", "",
                  "These predict one class (one label set) for almost every dev text while the gold "
                  "labels are not that skewed: they learnt the label prior, not the task. Their "
                  "macro F1 and agreement are no evidence of quality; they are never recommended.",
                  ""]
        lines += [f"- {r['label']} (cell {r['cell']}, {r['stage']}): "
                  f"{fmt(r.get('top_prediction_share'))} of dev predictions are one class; dev "
                  f"macro F1 {fmt(r.get('dev_macro_f1'))}" for r in degenerate]
    if failed:
        lines += ["", "## Failed cells", ""]
        lines += [f"- cell {r['cell']} ({r['label']}): {r['status']}: {r.get('error') or '-'}"
                  for r in failed]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({file})" for name, file in plots.items()]
    lines += ["", f"Data: report.csv (one row per model; F1 floor {fmt(f1_floor)})."]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    columns = columns_for(rows)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


TEXT_COLUMNS = {"kind", "cell", "label", "teacher", "student", "kd", "prune", "quant", "data",
                "stage", "status", "split", "error", "overrides", "artifact"}
INT_COLUMNS = {"seed", "params_total", "params_nonzero"}
BOOL_COLUMNS = {"degenerate"}


def rows_from_csv(path: str | Path) -> list[dict[str, Any]]:
    """report.csv back into the rows `recommend` and the plots take (the notebook's entry point):
    empty cells become None, numbers become numbers again."""
    rows = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for key, text in raw.items():
                if text is None or text == "":
                    row[key] = None
                elif key in TEXT_COLUMNS:
                    row[key] = text
                elif key in BOOL_COLUMNS:
                    row[key] = text == "True"
                elif key in INT_COLUMNS:
                    row[key] = int(float(text))
                else:
                    try:
                        row[key] = float(text)
                    except ValueError:
                        row[key] = text
            rows.append(row)
    return rows


def write_report(root: str | Path, out: str | Path | None = None, f1_floor: float | None = None,
                 split: str = "auto", plots: bool = True) -> dict[str, Any]:
    """Write report.md, report.csv and the plots; returns rows, recommendations and paths."""
    root = Path(root)
    rows = collect_rows(root, split)
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "report.csv")
    written: dict[str, str] = {}
    if plots:
        from hate_compress.report_plots import draw_all

        written = draw_all(rows, out, PLOTS)
    recs = recommend(rows, f1_floor)
    groups = seed_groups(rows)
    if groups:
        write_seed_csv(groups, out / "report_seeds.csv")
    (out / "report.md").write_text(markdown(rows, recs, root, written, f1_floor, groups))
    html_path = None
    if plots:
        from hate_compress.analysis.html_report import sweep_report_html

        cells = {c["cell"]: c["metrics"] for c in (load_cell(p, root) for p in find_cells(root))}
        html_path = sweep_report_html(out, rows, recs, TABLE, written, cells)
    return {"rows": rows, "recommendations": recs, "report": out / "report.md",
            "seed_groups": groups,
            "html": html_path,
            "csv": out / "report.csv", "plots": {k: out / v for k, v in written.items()}}


# ---------------------------------------------------------------------------------------------
# entry points


def _floor(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a macro F1 floor is between 0 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hate_compress.report",
        description="Report over a Hydra sweep: report.md, report.csv and Pareto/heatmap plots.")
    parser.add_argument("root", type=Path, help="multirun directory (e.g. multirun/<date>/<time>)")
    parser.add_argument("--f1-floor", type=_floor, default=None,
                        help="recommend the fastest model with macro F1 >= this (0..1)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: root)")
    parser.add_argument("--split", choices=("auto", "dev", "test"), default="auto",
                        help="quality split (auto: test when the data has one, else dev)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    try:
        result = write_report(args.root, args.out, args.f1_floor, args.split, not args.no_plots)
    except HateCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for rec in result["recommendations"]:
        print(f"{rec['title']}: {rec['text'].replace('**', '')}")
    print(f"report: {result['report']}")
    return 0


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency; keep the CLI usable without it
    _HydraCallback = object


class MultirunReportCallback(_HydraCallback):
    """Write the report into the sweep directory when a multirun ends.

    A report is a by-product: any error here is logged and swallowed, because failing the
    sweep after hours of training over a plotting problem would be the worse outcome.
    """

    def __init__(self, f1_floor: float | None = None, split: str = "auto",
                 enabled: bool = True) -> None:
        self.f1_floor = f1_floor
        self.split = split
        self.enabled = enabled

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        if not self.enabled or config.get("hparams_search"):  # a study writes its own outputs
            return
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            floor = None if self.f1_floor is None else float(self.f1_floor)
            result = write_report(sweep_dir, f1_floor=floor, split=self.split)
            log.info("sweep report: %s", result["report"])
            for rec in result["recommendations"]:
                log.info("%s: %s", rec["title"], rec["text"].replace("**", ""))
        except Exception as exc:  # noqa: BLE001 - never crash a finished sweep
            log.warning("sweep report not written: %s: %s", type(exc).__name__, exc)


if __name__ == "__main__":
    sys.exit(main())

"""The report's rows: one per cell (its final model) and one per distinct teacher, and the
report.csv file they are written to and read back from (the notebook's entry point).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hate_compress.measure.outcome import eval_split, final_stage, stage_order
from hate_compress.report.cells import find_cells, load_cell

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

# what compression changed (hate_compress/measure/analysis.py): explanation similarity vs the teacher
# (mean/std over the explained dev examples) and the share of teacher-right examples lost
ANALYSIS_KEYS = ["explain_cosine", "explain_cosine_std", "explain_top5", "explain_top5_std",
                 "explain_via", "flip_rate_lost", "flip_rate_gained"]
CSV_COLUMNS += ANALYSIS_KEYS


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
    if run.get("assistant") and "assistant" in stages:  # pipeline=assistant_kd
        parts.append(f"{ARROW}{run['assistant']}")
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


def baseline_row(cell: dict, split: str = "auto") -> dict[str, Any] | None:
    """The cell's char_ngram reference row (`measure.baseline`), if it measured one."""
    values = cell["metrics"].get("baseline")
    if not isinstance(values, dict):
        return None
    run = cell["run"]
    row = {"kind": "baseline", "cell": cell["cell"], "data": run.get("data"),
           "label": f"{values.get('model') or 'char_ngram'} baseline (reference)",
           "stage": "baseline", "status": "ok", "overrides": cell["overrides"]}
    row.update(stage_values(values, split, None))
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
    """Teacher rows first (one per distinct teacher artifact), the char_ngram baseline rows
    (one per distinct baseline artifact), then one row per cell."""
    root = Path(root)
    # a `seeds=[...]` run's own aggregate: its seed runs are cells below it, aggregated here
    cells = [cell for cell in (load_cell(c, root) for c in find_cells(root))
             if cell["run"].get("kind") != "seeds"]
    teachers: dict[tuple, dict] = {}
    baselines: dict[tuple, dict] = {}
    for cell in cells:
        row = teacher_row(cell, split)
        if row is not None:
            teachers.setdefault(_teacher_identity(row), row)
        row = baseline_row(cell, split)
        if row is not None:  # one per stored baseline (one per data set)
            baselines.setdefault(_teacher_identity(row), row)
    rows = [*teachers.values(), *baselines.values(), *(cell_row(cell, split) for cell in cells)]
    _unique_labels(rows)
    return rows


def columns_for(rows: Iterable[dict]) -> list[str]:
    extra = sorted({k for row in rows for k in row
                    if re.fullmatch(r"(latency_ms|speedup)_b\d+", k) and k not in CSV_COLUMNS},
                   key=lambda k: (k.split("_b")[0], int(k.rsplit("_b", 1)[1])))
    at = CSV_COLUMNS.index("latency_ms_b32") + 1
    return CSV_COLUMNS[:at] + extra + CSV_COLUMNS[at:]


def has_number(row: dict, key: str) -> bool:
    """A finished row with a finite number under `key`: what may be ranked or averaged."""
    value = row.get(key)
    return row.get("status") == "ok" and isinstance(value, (int, float)) and math.isfinite(value)


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

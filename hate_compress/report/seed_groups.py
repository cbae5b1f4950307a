"""Cells that differ only by their seed, aggregated: mean ± sample std and the worst seed.

A difference between two models smaller than these stds is within what the seed alone changes;
the report shows it next to the per-cell table (report.md "Across seeds", report_seeds.csv).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from hate_compress.measure.outcome import SEED_METRICS, spread
from hate_compress.report.format import cell_text, fmt, mean_pm_std
from hate_compress.report.rows import has_number

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
            agg[metric] = spread([r[metric] for r in ok if has_number(r, metric)])
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
        lines.append("| " + " | ".join(cell_text(c) for c in cells) + " |")
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

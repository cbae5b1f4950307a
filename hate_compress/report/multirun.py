"""One report over a whole sweep: which teacher -> student cell to ship, and what it costs.

`python -m hate_compress.report <multirun dir> [--f1-floor 0.6] [--out DIR]` reads every cell's
`metrics.json` below the directory and writes `report.md`, `report.csv` and PNG plots. The same
code runs automatically when a Hydra sweep ends (`MultirunReportCallback`, registered in
`conf/hydra/default.yaml`), so a matrix always leaves its comparison behind.

Each cell contributes the row of its *final* stage (the model the cell produced), plus one row
per distinct teacher artifact as the reference point. Failed cells stay in the table as failed
rows with their error: a matrix whose missing corners are silent gaps reads as "all fine".

This module puts the report together: `cells` reads the directory, `rows` turns cells into rows
and report.csv, `seed_groups` aggregates cells that differ only by seed, `recommend` picks the
models to ship, `plots` and `html` draw. None of them imports more than the standard library at
import time (Hydra loads the callback at the start of every run); matplotlib loads only when
plotting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hate_compress.report.cells import find_cells, load_cell
from hate_compress.report.format import cell_text, fmt
from hate_compress.report.recommend import candidate, recommend
from hate_compress.report.rows import collect_rows, has_number, write_csv
from hate_compress.report.seed_groups import seed_groups, seed_markdown, write_seed_csv

# the markdown table: what a reader compares across cells
TABLE = [
    ("model", "label"), ("kd", "kd"), ("stage", "stage"), ("status", "status"),
    ("degenerate", "degenerate"), ("macro F1", "macro_f1"), ("dev macro F1", "dev_macro_f1"), ("hate F1", "hate_f1"), ("speedup b1", "speedup_b1"),
    ("size MB", "size_mb"), ("agreement", "agreement"), ("latency b1 ms", "latency_ms_b1"),
    ("latency b32 ms", "latency_ms_b32"), ("F1 retention", "f1_retention"),
    ("expl. cosine", "explain_cosine"), ("flip rate", "flip_rate_lost"), ("cell", "cell"),
    ("error", "error"),
]

PLOTS = {
    "pareto_size": "pareto_f1_vs_size.png",
    "pareto_latency": "pareto_f1_vs_latency_b1.png",
    "heatmap_f1": "heatmap_macro_f1.png",
    "heatmap_speedup": "heatmap_speedup_b1.png",
}


def baseline_lines(rows: list[dict]) -> list[str]:
    """Per baseline row: its macro F1 and how many finished cells on its data beat it on dev."""
    lines = []
    for base in (r for r in rows if r["kind"] == "baseline" and has_number(r, "dev_macro_f1")):
        cells = [r for r in rows if r["kind"] == "cell" and candidate(r)
                 and r.get("data") == base.get("data")]
        beat = sum(r["dev_macro_f1"] >= base["dev_macro_f1"] for r in cells)
        shown = f", {base['split']} macro F1 {fmt(base.get('macro_f1'))}" \
            if base.get("split") not in (None, "dev") else ""
        verdict = (f"{beat} of {len(cells)} finished cell(s) reach it on dev"
                   + ("" if beat == len(cells) else " (the others: ship the baseline instead)")
                   if cells else "no finished, non-degenerate cell to compare with it")
        lines.append(f"- Reference: {base['label']} on {base.get('data') or '?'} has dev macro "
                     f"F1 {fmt(base['dev_macro_f1'])}{shown}; {verdict}")
    return lines


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
    lines += baseline_lines(rows)
    degenerate = [r for r in rows if r.get("degenerate")]
    if degenerate:
        lines.append(f"- Not recommended: {len(degenerate)} degenerate model(s) (one class for "
                     "almost every dev text), listed below")
    lines += seed_markdown(groups or [])
    lines += ["", "## Results", "",
              "| " + " | ".join(name for name, _ in TABLE) + " |", "|" + "---|" * len(TABLE)]
    for row in rows:
        lines.append("| " + " | ".join(cell_text(row.get(key)) for _, key in TABLE) + " |")
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
        from hate_compress.report.plots import draw_all

        written = draw_all(rows, out, PLOTS)
    recs = recommend(rows, f1_floor)
    groups = seed_groups(rows)
    if groups:
        write_seed_csv(groups, out / "report_seeds.csv")
    (out / "report.md").write_text(markdown(rows, recs, root, written, f1_floor, groups))
    html_path = None
    if plots:
        from hate_compress.report.html import sweep_report_html

        cells = {c["cell"]: c["metrics"] for c in (load_cell(p, root) for p in find_cells(root))}
        html_path = sweep_report_html(out, rows, recs, TABLE, written, cells)
    return {"rows": rows, "recommendations": recs, "report": out / "report.md",
            "seed_groups": groups,
            "html": html_path,
            "csv": out / "report.csv", "plots": {k: out / v for k, v in written.items()}}

"""One self-contained `report.html` per run (next to summary.md) and per sweep (next to report.md).

Self-contained means one file to mail or attach to a ticket: images are embedded as base64
PNGs, styles are inline, nothing is fetched. Every text that comes from data (posts, labels,
errors, paths) goes through `html.escape` — the posts are hate speech from the internet and may
hold markup of their own.

A run report has the per-stage table (quality, footprint, explanation similarity, flip rate),
F1 vs size / latency over the stages, the per-class F1 change chart, per-target-group retention
(`data.meta_columns`), and a few posts with words shaded by the teacher's and the final model's
attributions side by side (the least and the most similar explanations).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hate_compress.measure.outcome import eval_split, final_stage, stage_order
from hate_compress.report.format import fmt
from hate_compress.report.summary import baseline_verdict, stage_row, table_columns

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
EXPLANATIONS_FILE = "explanations.json"
N_EXAMPLES = 3  # least and most similar explanations each

STYLE = """
body{font-family:sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #bbb;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#eee}td.t{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}
.post{display:flex;gap:1em;margin:1em 0}.post>div{flex:1;border:1px solid #ccc;padding:.5em}
.w{padding:1px 2px;border-radius:3px}.note{color:#555;font-size:13px}
"""


def esc(value: Any) -> str:
    return html.escape(fmt(value) if not isinstance(value, str) else value, quote=True)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: int = 1) -> str:
    """An HTML table; the first `text_columns` columns are left-aligned text."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f"<td class='t'>{esc(v)}</td>" if i < text_columns else f"<td>{esc(v)}</td>"
                        for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def png_tag(figure, alt: str) -> str:
    """A matplotlib Figure as an inline base64 <img>."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>"


def file_png_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>"


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}"
            f"</title><style>{STYLE}</style></head><body><h1>{esc(title)}</h1>{body}</body></html>")


# ---------------------------------------------------------------------------------------------
# figures


def class_change_figure(changes: Mapping[str, Mapping[str, float]]):
    """Grouped bars: per class, the F1 change vs the teacher of each stage (or cell)."""
    from matplotlib.figure import Figure

    from hate_compress.report.plots import plot_class_change

    fig = Figure(figsize=(8, 4.5))
    plot_class_change(fig.subplots(), changes)
    return fig


def stage_pareto_figures(metrics: Mapping) -> list[tuple[str, Any]]:
    """F1 vs size and vs latency over the stages of one run (the sweep's Pareto plots, with the
    stages as the models)."""
    from matplotlib.figure import Figure

    from hate_compress.report.plots import plot_pareto

    rows = []
    for stage in stage_order(metrics):
        values = metrics.get(stage)
        if not isinstance(values, dict) or values.get("skipped"):
            continue
        quality = values.get(eval_split(values), {})
        rows.append({"label": stage, "status": "ok", "macro_f1": quality.get("macro_f1"),
                     "size_mb": values.get("size_mb"), "latency_ms_b1": values.get("latency_ms_b1"),
                     "kind": "teacher" if stage == "teacher" else "cell"})
    baseline = metrics.get("baseline")
    if isinstance(baseline, dict):  # the char_ngram reference: a dashed line on both plots
        rows.append({"label": f"{baseline.get('model', '')} baseline", "status": "ok",
                     "kind": "baseline",
                     "macro_f1": baseline.get(eval_split(baseline), {}).get("macro_f1")})
    figures = []
    for key, xlabel, title in (("size_mb", "size on disk (MB)", "macro F1 vs size"),
                               ("latency_ms_b1", "CPU latency, batch 1 (ms)",
                                "macro F1 vs latency (b1)")):
        if not any(r.get(key) for r in rows):
            continue
        fig = Figure(figsize=(6.5, 4.5))
        ax = fig.subplots()
        plot_pareto(ax, rows, key, xlabel)
        ax.set_title(title)
        figures.append((title, fig))
    return figures


# ---------------------------------------------------------------------------------------------
# explanation examples


def shade(words: Sequence[str], scores: Sequence[float]) -> str:
    """Words on a red (for the class) / blue (against) background scaled by |score|."""
    top = max((abs(s) for s in scores), default=0.0) or 1.0
    spans = []
    for word, score in zip(words, scores):
        alpha = min(abs(score) / top, 1.0) * 0.8
        color = "220,40,40" if score > 0 else "40,90,220"
        spans.append(f"<span class='w' title='{score:+.4f}' style='background:rgba({color},"
                     f"{alpha:.2f})'>{html.escape(word)}</span>")
    return " ".join(spans)


def pick_examples(examples: list[dict], n: int = N_EXAMPLES) -> list[dict]:
    """The n least and n most similar explanations (by cosine), least similar first."""
    ranked = sorted((e for e in examples if e.get("cosine") is not None),
                    key=lambda e: e["cosine"])
    if len(ranked) <= 2 * n:
        return ranked
    return ranked[:n] + ranked[-n:]


def examples_html(run_dir: Path, metrics: Mapping) -> str:
    stage = final_stage(metrics)
    path = run_dir / str(stage) / EXPLANATIONS_FILE
    if stage in (None, "teacher") or not path.is_file():
        return ""
    payload = json.loads(path.read_text(encoding="utf-8"))
    parts = [f"<h2>Explanation examples: teacher vs {esc(stage)}</h2>",
             "<p class='note'>Integrated Gradients word attributions for the teacher's predicted "
             "class; red pushes towards it, blue against; hover for the value. Explained via "
             f"{esc(payload.get('explained_via'))}. The least and the most similar posts.</p>"]
    for ex in pick_examples(payload.get("examples", [])):
        parts.append(
            f"<p class='note'>row {esc(ex.get('row'))}, class {esc(ex['target'])}: cosine "
            f"{esc(ex.get('cosine'))}, top-5 overlap {esc(ex.get('top5_overlap'))}</p>"
            f"<div class='post'><div><b>teacher</b><br>{shade(ex['words'], ex['teacher'])}</div>"
            f"<div><b>{esc(stage)}</b><br>{shade(ex['words'], ex['model'])}</div></div>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# the run report


def forgetting_html(metrics: Mapping) -> str:
    stages = [s for s in stage_order(metrics) if metrics[s].get("forgetting")]
    if not stages:
        return ""
    parts = ["<h2>What was forgotten</h2>"]
    rows = []
    for s in stages:
        f = metrics[s]["forgetting"]
        rows.append([s, f["split"], f.get("flip_rate_lost"), f.get("flip_rate_gained"),
                     f.get("n_disagreements"), f"{s}/disagreements.csv"])
    parts.append(table(["stage", "split", "flip rate: teacher right -> wrong",
                        "flip rate: teacher wrong -> right", "disagreements", "file"], rows))
    changes = {s: metrics[s]["forgetting"]["f1_change"] for s in stages}
    parts.append(png_tag(class_change_figure(changes), "per-class F1 change vs teacher"))
    for s in stages:
        for column, groups in (metrics[s]["forgetting"].get("groups") or {}).items():
            parts.append(f"<h3>{esc(s)}: F1 retention per {esc(column)}</h3>")
            parts.append(table([column, "n", "teacher macro F1", "model macro F1", "retention"],
                               [[g, v["n"], v["teacher_macro_f1"], v["model_macro_f1"],
                                 v["retention"]] for g, v in groups.items()]))
    return "".join(parts)


def run_report_html(run_dir: str | Path, metrics: Mapping | None = None) -> Path:
    """Write `<run_dir>/report.html` from metrics.json (and the stages' explanations.json)."""
    run_dir = Path(run_dir)
    if metrics is None:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = [stage_row(s, metrics[s]) for s in stage_order(metrics)]
    baseline = metrics.get("baseline")
    if isinstance(baseline, dict):  # the char_ngram reference row (hate_compress/stages/baseline.py)
        rows.append({**stage_row("baseline", baseline),
                     "stage": f"baseline {baseline.get('model', '')} (reference)"})
    columns = table_columns(rows)
    split = next((eval_split(metrics[s]) for s in stage_order(metrics)), "dev")
    info = metrics.get("run") or {}
    body = [f"<p class='note'>data {esc(info.get('data'))}, teacher {esc(info.get('teacher'))}, "
            f"student {esc(info.get('student'))}, kd {esc(info.get('kd'))}, prune "
            f"{esc(info.get('prune'))}, quant {esc(info.get('quant'))}, seed "
            f"{esc(info.get('seed'))}. Quality on {esc(split)}.</p>",
            "<h2>Stages</h2>",
            table([name for name, _ in columns], [[r.get(k) for _, k in columns] for r in rows])]
    if isinstance(baseline, dict):
        body.append(f"<p>{esc(baseline_verdict(metrics))}</p>")
    for name, check in (metrics.get("targets") or {}).items():
        body.append(f"<p>target {esc(name)}: {esc(check['value'])} vs {esc(check['target'])} -> "
                    f"{'met' if check['met'] else 'MISSED'}</p>")
    figures = stage_pareto_figures(metrics)
    if figures:
        body.append("<h2>Trade-off over the stages</h2>")
        body += [png_tag(fig, title) for title, fig in figures]
    body.append(forgetting_html(metrics))
    body.append(examples_html(run_dir, metrics))
    out = run_dir / REPORT_FILE
    out.write_text(page(f"Run report: {run_dir.name}", "".join(body)), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------------
# the sweep report


def sweep_report_html(out: Path, rows: list[dict], recs: list[dict], table_spec: Sequence,
                      plots: Mapping[str, str], cell_metrics: Mapping[str, Mapping]) -> Path:
    """`report.html` of a sweep: recommendations, the results table, the PNG plots written by
    `plots.draw_all` (embedded), the per-class change of each cell's final model and a
    link to each cell's own report.html."""
    body = ["<h2>Recommendations</h2><ul>"]
    body += [f"<li>{esc(rec['title'])}: {esc(rec['text'].replace('**', ''))}</li>" for rec in recs]
    body.append("</ul><h2>Results</h2>")
    body.append(table([n for n, _ in table_spec], [[r.get(k) for _, k in table_spec] for r in rows],
                      text_columns=4))
    if plots:
        body.append("<h2>Plots</h2>")
        body += [file_png_tag(Path(out) / file, name) for name, file in plots.items()
                 if (Path(out) / file).is_file()]
    changes = {}
    for cell, metrics in cell_metrics.items():
        last = final_stage(metrics)
        forgot = (metrics.get(last) or {}).get("forgetting") if last else None
        if forgot:
            changes[f"{cell} ({last})"] = forgot["f1_change"]
    if changes:
        body.append("<h2>Per-class F1 change vs teacher (each cell's final model)</h2>")
        body.append(png_tag(class_change_figure(changes), "per-class F1 change"))
    links = [f"<li><a href='{html.escape(cell, quote=True)}/{REPORT_FILE}'>{esc(cell)}</a></li>"
             for cell in cell_metrics if (Path(out) / cell / REPORT_FILE).is_file()]
    if links:
        body.append("<h2>Cell reports</h2><ul>" + "".join(links) + "</ul>")
    path = Path(out) / REPORT_FILE
    path.write_text(page(f"Sweep report: {Path(out).name}", "".join(body)), encoding="utf-8")
    return path

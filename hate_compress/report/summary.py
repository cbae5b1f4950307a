"""The human summary of a run: one row per stage, and the plan's targets checked.

Reads only `metrics.json`-shaped dicts, so the same table is printed at the end of a run and
rebuilt later by the report over many runs. What the numbers mean (final stage, degenerate,
targets, seed spread) is decided in `hate_compress.measure.outcome`; this module only lays
them out.
"""

from __future__ import annotations

import re
from typing import Any

from hate_compress.measure.outcome import BASELINE, SEED_METRICS, eval_split, final_stage, stage_order
from hate_compress.report.format import fmt, mean_pm_std

COLUMNS = (
    ("stage", "stage"),
    ("runtime", "runtime"),
    ("macro F1", "macro_f1"),
    ("hate F1", "hate_f1"),
    ("agreement", "agreement"),
    ("F1 retention", "f1_retention"),
    ("params", "params_total"),
    # zeros among the weights pruning touches (what prune.sparsity sets), and among all params
    ("sparsity (prunable weights)", "sparsity_prunable_weights"),
    ("sparsity (all params)", "sparsity_all_params"),
    ("size MB", "size_mb"),
    ("size reduction", "size_reduction"),
    ("latency b1 ms", "latency_ms_b1"),
    ("latency b32 ms", "latency_ms_b32"),
    ("speedup b1", "speedup_b1"),
    ("speedup b32", "speedup_b32"),
    # ONNX stages: against the teacher exported to ONNX Runtime fp32 (compression alone)
    ("speedup b1 vs teacher ORT", "speedup_vs_teacher_ort_b1"),
)

# what compression changed (hate_compress/measure/analysis.py): shown when a stage has the numbers
ANALYSIS_COLUMNS = (
    ("expl. cosine", "explain_cosine"),
    ("expl. top-5 overlap", "explain_top5"),
    ("flip rate (teacher right -> wrong)", "flip_rate_lost"),
)


def mean_std(explain: dict, key: str) -> str | None:
    """"0.8123 ± 0.0400" for a compared stage, "n/a (reason)" when it could not be explained,
    "(reference)" for the teacher, None when explanation was off; "via ..." when the numbers
    come from the fp32 model a quantized one was made from."""
    status = explain.get("status")
    if status == "reference":
        return "(reference)"
    if status == "n/a":
        return f"n/a ({explain.get('reason', 'not explainable')})"
    if explain.get(f"{key}_mean") is None:
        return "n/a (no comparable example)" if status == "ok" else None
    text = f"{explain[f'{key}_mean']:.4f} ± {explain[f'{key}_std']:.4f}"
    via = explain.get("explained_via")
    return f"{text} (via {via})" if via and status == "ok" and "fp32 source" in via else text


# `measure.threads=[1,2]`: latency with more threads lands as latency_ms_b<B>_t<T>
THREADED_LATENCY = re.compile(r"latency_ms_b(\d+)_t(\d+)$")


def threaded_latency_columns(rows: list[dict]) -> tuple:
    """("latency b1 ms (2 threads)", "latency_ms_b1_t2"), ... for the keys some row has, by
    thread count then batch size; only the batch sizes the 1-thread columns show."""
    shown = {key for _, key in COLUMNS}
    found = set()
    for key in {k for row in rows for k in row}:
        match = THREADED_LATENCY.match(key)
        if match and f"latency_ms_b{match[1]}" in shown:
            found.add((int(match[2]), int(match[1]), key))
    return tuple((f"latency b{batch} ms ({threads} threads)", key)
                 for threads, batch, key in sorted(found))


def analysis_cells(values: dict) -> dict[str, Any]:
    explain = values.get("explain") or {}
    return {"explain_cosine": mean_std(explain, "cosine") if explain else None,
            "explain_top5": mean_std(explain, "top5_overlap") if explain else None,
            "flip_rate_lost": (values.get("forgetting") or {}).get("flip_rate_lost")}


def stage_row(stage: str, values: dict) -> dict[str, Any]:
    """Flatten one stage's metrics into the summary columns (quality on test, else dev)."""
    if values.get("skipped"):
        return {"stage": f"{stage} (skipped: {values['skipped']})"}
    quality = values.get(eval_split(values), {})
    name = f"{stage} (= {values['chosen_peer']})" if values.get("chosen_peer") else stage
    row = {"stage": f"{name} (DEGENERATE)" if values.get("degenerate") else name}
    for _, key in COLUMNS[1:]:
        row[key] = quality.get(key, values.get(key))
    if row["sparsity_all_params"] is None:  # metrics.json written before the rename
        row["sparsity_all_params"] = values.get("sparsity")
    row.update(analysis_cells(values))
    row.update({k: v for k, v in values.items() if THREADED_LATENCY.match(k)})
    return row


def table_columns(rows: list[dict]) -> tuple:
    """COLUMNS (with the latencies at more threads after the 1-thread ones, when measured),
    plus the analysis columns some stage has a value for."""
    extra = tuple(c for c in ANALYSIS_COLUMNS if any(r.get(c[1]) is not None for r in rows))
    at = [key for _, key in COLUMNS].index("latency_ms_b32") + 1
    return COLUMNS[:at] + threaded_latency_columns(rows) + COLUMNS[at:] + extra


def summary_table(metrics: dict) -> str:
    rows = [stage_row(s, metrics[s]) for s in stage_order(metrics)]
    split = next((eval_split(metrics[s]) for s in stage_order(metrics)), "dev")
    columns = table_columns(rows)
    header = "| " + " | ".join(name for name, _ in columns) + " |"
    lines = [f"quality on {split}", seeds_line(metrics), "", header, "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(key)) for _, key in columns) + " |")
    baseline = metrics.get(BASELINE)
    if isinstance(baseline, dict):
        row = stage_row(BASELINE, baseline)
        row["stage"] = f"baseline {baseline.get('model', '')} (reference)"
        lines.append("| " + " | ".join(fmt(row.get(key)) for _, key in columns) + " |")
        lines.append("\n" + baseline_verdict(metrics))
    for stage in stage_order(metrics):
        values = metrics.get(stage)
        if isinstance(values, dict) and values.get("degenerate"):
            share = values.get("dev", {}).get("top_prediction_share")
            lines.append(f"\nDEGENERATE {stage}: predicts one class for {fmt(share)} of dev (gold "
                         "is not that skewed): not a usable model, never recommended; train "
                         "longer, check the data or the learning rate")
    targets = metrics.get("targets") or {}
    for name, check in targets.items():
        verdict = "met" if check["met"] else "MISSED"
        lines.append(f"\ntarget {name}: {fmt(check['value'])} vs {check['target']} -> {verdict}")
    return "\n".join(lines)


def baseline_verdict(metrics: dict) -> str:
    """One line: the baseline's macro F1 and whether the run's final model beats it."""
    baseline = metrics[BASELINE]
    split = eval_split(baseline)
    ref = baseline.get(split, {}).get("macro_f1")
    text = (f"baseline: {baseline.get('model', '')} (TF-IDF n-grams + logistic regression, "
            f"seconds on a CPU) has {split} macro F1 {fmt(ref)}")
    last = final_stage(metrics)
    mine = (metrics.get(last) or {}).get(split, {}).get("macro_f1") if last else None
    if ref is None or mine is None:
        return text
    if mine >= ref:
        return text + f"; the final model ({last}) beats it by {mine - ref:.4f}"
    return text + (f"; the final model ({last}) is {ref - mine:.4f} BELOW it: ship the baseline, "
                   "or improve the model before shipping it")


# ---------------------------------------------------------------------------------------------
# several seeds behind one number (issue 17: one seed can be 9 points off the median)


def seed_table(aggregate: dict, seeds: list[int], failed: dict[int, str] | None = None) -> str:
    """The summary of a `seeds=[...]` run: per stage mean ± std (sample std) and the worst seed."""
    split = next((b["split"] for b in aggregate.values()), "dev")
    header = ["stage", "seeds"]
    for name, _ in SEED_METRICS:
        header += [f"{name} mean ± std", f"{name} min"]
    lines = [f"quality on {split}, over seeds {seeds} (std: sample std across seeds)", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage, block in aggregate.items():
        cells = [stage, str(len(block["seeds"]))]
        for _, key in SEED_METRICS:
            stats = block.get(key)
            cells += [mean_pm_std(stats), fmt(stats["min"]) if stats else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    for stage, block in aggregate.items():
        if block["degenerate_seeds"]:
            lines.append(f"\nDEGENERATE {stage} for seed(s) {block['degenerate_seeds']} of "
                         f"{block['seeds']}: one class for almost every dev text; their numbers "
                         "are in the mean but are no evidence of quality")
    for seed, error in (failed or {}).items():
        lines.append(f"\nseed {seed} FAILED: {error} (not in the numbers above)")
    return "\n".join(lines)


def seeds_line(metrics: dict) -> str:
    """Says how many seeds stand behind a single run's numbers."""
    seed = (metrics.get("run") or {}).get("seed")
    where = f" (seed={seed})" if seed is not None else ""
    return (f"seeds: 1{where}; one seed can sit several points from the median, run "
            "`seeds=[1,2,3,4,5]` for mean ± std per stage")

"""The human summary of a run: one row per stage, and the plan's targets checked.

Reads only `metrics.json`-shaped dicts, so the same table is printed at the end of a run and
rebuilt later by the report over many runs.
"""

from __future__ import annotations

from typing import Any

# the entries of metrics.json that are not a stage's (`baseline`: the char_ngram reference row,
# hate_compress/stages/baseline.py)
NOT_STAGES = ("run", "targets", "baseline")
BASELINE = "baseline"


def stage_order(metrics: dict) -> list[str]:
    """The stages in `metrics`, in the order the pipeline ran them: `run.stages` (put in order
    by the stage registry, `hate_compress.run.STAGES`), else the order they were recorded.
    Extra rows a stage measured (`row_of: <stage>`, e.g. kd=mutual's peers) come before it."""
    listed = (metrics.get("run") or {}).get("stages")
    extra = [k for k, v in metrics.items() if isinstance(v, dict) and v.get("row_of")]
    names = list(listed) if listed else [k for k in metrics if k not in NOT_STAGES
                                         and k not in extra]
    ordered = []
    for name in names:
        ordered += [k for k in extra if metrics[k]["row_of"] == name]
        ordered.append(name)
    return [s for s in ordered if isinstance(metrics.get(s), dict)]

COLUMNS = (
    ("stage", "stage"),
    ("runtime", "runtime"),
    ("macro F1", "macro_f1"),
    ("hate F1", "hate_f1"),
    ("agreement", "agreement"),
    ("F1 retention", "f1_retention"),
    ("params", "params_total"),
    ("sparsity", "sparsity"),
    ("size MB", "size_mb"),
    ("size reduction", "size_reduction"),
    ("latency b1 ms", "latency_ms_b1"),
    ("latency b32 ms", "latency_ms_b32"),
    ("speedup b1", "speedup_b1"),
    ("speedup b32", "speedup_b32"),
    # ONNX stages: against the teacher exported to ONNX Runtime fp32 (compression alone)
    ("speedup b1 vs teacher ORT", "speedup_vs_teacher_ort_b1"),
)

# what compression changed (hate_compress/analysis): shown when a stage has the numbers
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


def analysis_cells(values: dict) -> dict[str, Any]:
    explain = values.get("explain") or {}
    return {"explain_cosine": mean_std(explain, "cosine") if explain else None,
            "explain_top5": mean_std(explain, "top5_overlap") if explain else None,
            "flip_rate_lost": (values.get("forgetting") or {}).get("flip_rate_lost")}


def eval_split(values: dict) -> str:
    return "test" if "test" in values else "dev"


def stage_row(stage: str, values: dict) -> dict[str, Any]:
    """Flatten one stage's metrics into the summary columns (quality on test, else dev)."""
    if values.get("skipped"):
        return {"stage": f"{stage} (skipped: {values['skipped']})"}
    quality = values.get(eval_split(values), {})
    name = f"{stage} (= {values['chosen_peer']})" if values.get("chosen_peer") else stage
    row = {"stage": f"{name} (DEGENERATE)" if values.get("degenerate") else name}
    for _, key in COLUMNS[1:]:
        row[key] = quality.get(key, values.get(key))
    row.update(analysis_cells(values))
    return row


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table_columns(rows: list[dict]) -> tuple:
    """COLUMNS, plus the analysis columns some stage has a value for."""
    extra = tuple(c for c in ANALYSIS_COLUMNS if any(r.get(c[1]) is not None for r in rows))
    return COLUMNS + extra


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


def final_stage(metrics: dict) -> str | None:
    done = [s for s in stage_order(metrics) if not metrics[s].get("skipped")]
    return done[-1] if done else None


def check_targets(run) -> dict[str, dict]:
    """`targets`: the final model's macro F1 as a fraction of the teacher's (e.g. >= 0.95) and its
    size reduction factor (e.g. >= 10x), each checked only when the config sets it."""
    cfg = run.cfg.get("targets") or {}
    last = final_stage(run.metrics)
    if last is None or last == "teacher":
        return {}
    values = run.metrics[last]
    out = {}
    for name, key in (("min_f1_retention", "f1_retention"), ("min_size_reduction", "size_reduction")):
        target = cfg.get(name)
        if target is not None and values.get(key) is not None:
            out[name] = {"stage": last, "value": values[key], "target": float(target),
                         "met": values[key] >= float(target)}
    return out


def objective(metrics: dict | None) -> float | None:
    """Dev macro F1 of the last stage: what a sweep maximises (None for failed runs)."""
    if not metrics:
        return None
    last = final_stage(metrics)
    return None if last is None else float(metrics[last]["dev"]["macro_f1"])


def degenerate(metrics: dict | None) -> bool:
    """Whether the run's final model is degenerate (flagged on dev by `measure_stage`)."""
    last = final_stage(metrics) if metrics else None
    return bool(last and metrics[last].get("degenerate"))


# ---------------------------------------------------------------------------------------------
# several seeds behind one number (issue 17: one seed can be 9 points off the median)

# what is aggregated across seeds, per stage: (label, metrics key on the eval split)
SEED_METRICS = (("macro F1", "macro_f1"), ("dev macro F1", "dev_macro_f1"),
                ("agreement", "agreement"), ("F1 retention", "f1_retention"))


def spread(values: list[float]) -> dict[str, Any]:
    """n, mean, sample std (None for one value: one seed says nothing about the spread), min and
    max of `values`; the one statistic every seed aggregate (summary, report, sweep) uses."""
    import statistics

    values = [float(v) for v in values]
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def stage_quality(values: dict) -> dict[str, Any]:
    """The numbers `SEED_METRICS` aggregates, from one stage of one run's metrics."""
    quality = values.get(eval_split(values), {})
    return {"macro_f1": quality.get("macro_f1"),
            "dev_macro_f1": values.get("dev", {}).get("macro_f1"),
            "agreement": quality.get("agreement", values.get("agreement")),
            "f1_retention": quality.get("f1_retention", values.get("f1_retention"))}


def aggregate_seeds(per_seed: dict[int, dict]) -> dict[str, Any]:
    """`{seed: metrics}` of finished runs -> `{stage: {key: spread, "seeds": [...],
    "degenerate_seeds": [...]}}` for every stage some seed finished."""
    out: dict[str, Any] = {}
    stages = list(dict.fromkeys(s for m in per_seed.values() for s in stage_order(m)))
    if any(isinstance(m.get(BASELINE), dict) for m in per_seed.values()):
        stages.append(BASELINE)  # the reference row (one fixed-seed model, so no spread)
    for stage in stages:
        done = {seed: m[stage] for seed, m in per_seed.items()
                if isinstance(m.get(stage), dict) and not m[stage].get("skipped")}
        if not done:
            continue
        block: dict[str, Any] = {"seeds": sorted(done), "split": eval_split(next(iter(
            done.values()))), "degenerate_seeds": sorted(s for s, v in done.items()
                                                         if v.get("degenerate"))}
        for _, key in SEED_METRICS:
            numbers = [q[key] for q in map(stage_quality, done.values()) if q[key] is not None]
            if numbers:
                block[key] = spread(numbers)
        out[stage] = block
    return out


def mean_pm_std(stats: dict | None) -> str:
    """"0.7921 ± 0.0127" ("0.7921 (1 seed)" when there is no spread to show)."""
    if not stats or stats.get("mean") is None:
        return "-"
    if stats.get("std") is None:
        return f"{stats['mean']:.4f} (1 seed)"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


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

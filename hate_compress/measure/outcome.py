"""What a run's metrics say: the stages it finished, the final model, the sweep objective,
whether that model is degenerate, whether the config's targets were met, and the spread of a
number over seeds.

Reads only `metrics.json`-shaped dicts (and, for the targets, `run.cfg`/`run.metrics`), imports
nothing but the standard library, so the run summary, the multirun report, the seed axis and the
Optuna sweep all judge a run by the same rules — and the Hydra callback that loads the report at
the start of every run stays cheap.
"""

from __future__ import annotations

import statistics
from typing import Any

# the entries of metrics.json that are not a stage's (`baseline`: the char_ngram reference row,
# hate_compress/stages/baseline.py)
NOT_STAGES = ("run", "targets", "baseline")
BASELINE = "baseline"


def stage_order(metrics: dict) -> list[str]:
    """The stages in `metrics`, in the order the pipeline ran them: `run.stages` (put in order
    by the stage registry, `hate_compress.stages.state.STAGES`), else the order they were recorded.
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


def eval_split(values: dict) -> str:
    return "test" if "test" in values else "dev"


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
# several seeds behind one number (one seed can sit several points from the median)

# what is aggregated across seeds, per stage: (label, metrics key on the eval split)
SEED_METRICS = (("macro F1", "macro_f1"), ("dev macro F1", "dev_macro_f1"),
                ("agreement", "agreement"), ("F1 retention", "f1_retention"))


def spread(values: list[float]) -> dict[str, Any]:
    """n, mean, sample std (None for one value: one seed says nothing about the spread), min and
    max of `values`; the one statistic every seed aggregate (summary, report, sweep) uses."""
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

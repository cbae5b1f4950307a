"""`seeds=[1,2,3]`: one command runs the pipeline once per seed and reports mean ± std and min.

Why: on Bengali hate v2 one student seed of ten sat 9 points of macro F1 below the median
(BENCHMARKS.md section 7), so a single-seed number, or a single-seed comparison between two
recipes, can be luck. Each seed is an ordinary run in its own directory `<run_dir>/seed_<s>`
(resumable like any run); the run directory itself gets `metrics.json` with an `aggregate` block
and a `summary.md` with one row per stage.

The teacher follows `teacher.seed`: left at its default `${seed}`, every seed trains (and
stores) its own teacher, so the spread covers the whole pipeline; fixed (`teacher.seed=42`), the
store hands every seed the same teacher and only the student's seed varies.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from hate_compress.errors import ConfigError
from hate_compress.measure.outcome import aggregate_seeds, final_stage
from hate_compress.report.summary import seed_table
from hate_compress.storage import OUTPUT_KEY, write_text_atomically, writing

log = logging.getLogger("hate_compress")

KIND = "seeds"  # metrics.json `run.kind` of the aggregate (the report skips it: it reads the seeds)


def parse_seeds(cfg: DictConfig) -> list[int] | None:
    """`cfg.seeds` as a list of distinct integers; None when unset (one run with `seed`)."""
    seeds = cfg.get("seeds")
    if seeds is None:
        return None
    values = list(seeds) if isinstance(seeds, ListConfig | list) else None
    if (not values or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in values)
            or len(set(values)) != len(values)):
        raise ConfigError(f"seeds={seeds!r}: expected a list of distinct non-negative integers, "
                          "e.g. seeds=[1,2,3] (null: one run with the single seed)")
    return [int(s) for s in values]


def teacher_seed_mode(cfg: DictConfig) -> str:
    """"per seed" when `teacher.seed` follows `seed`, else the fixed teacher seed."""
    if OmegaConf.is_interpolation(cfg.teacher, "seed"):
        node = OmegaConf.to_container(cfg.teacher, resolve=False).get("seed")
        if str(node).strip() == "${seed}":
            return "per seed"
    return str(cfg.teacher.seed)


def seed_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The config of one seed's run: exactly what `seed=<s>` alone would compose."""
    sub = copy.deepcopy(cfg)
    OmegaConf.update(sub, "seed", seed, merge=False)
    OmegaConf.update(sub, "seeds", None, merge=False)
    return sub


def write_aggregate(run_dir: Path, metrics: dict) -> None:
    path = run_dir / "metrics.json"
    with writing(path, OUTPUT_KEY):
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(metrics, indent=2, default=str))


def run_seeds(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Run the pipeline for every seed in `cfg.seeds`; returns the aggregate metrics dict.

    A user error (a bad config, a missing file) stops at the first seed that hits it: the next
    seeds would hit it too. What finished is aggregated and written either way."""
    from hate_compress.pipeline.runner import run_pipeline

    run_dir = Path(run_dir)
    seeds = parse_seeds(cfg)
    teacher = teacher_seed_mode(cfg)
    log.info("seeds %s: teacher.seed %s%s", seeds, teacher,
             " (one teacher per seed; teacher.seed=<n> shares one)" if teacher == "per seed"
             else " (one stored teacher for every seed)")
    metrics: dict = {"run": {"kind": KIND, "seeds": seeds, "teacher_seed": teacher,
                             "status": "running"}, "seeds": {}, "aggregate": {}}
    finished: dict[int, dict] = {}
    try:
        for seed in seeds:
            sub_dir = run_dir / f"seed_{seed}"
            log.info("=== seed %d (%d/%d) -> %s ===", seed, seeds.index(seed) + 1, len(seeds),
                     sub_dir)
            metrics["seeds"][str(seed)] = {"run_dir": str(sub_dir), "status": "running"}
            finished[seed] = run_pipeline(seed_config(cfg, seed), sub_dir)
            metrics["seeds"][str(seed)]["status"] = "ok"
            metrics["aggregate"] = aggregate_seeds(finished)
            write_aggregate(run_dir, metrics)
    except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised
        metrics["seeds"][str(seed)].update(status="failed", error=str(exc).splitlines()[0]
                                           if str(exc) else type(exc).__name__)
        metrics["run"]["status"] = "failed"
        write_aggregate(run_dir, metrics)
        raise
    metrics["run"]["status"] = "ok"
    last = final_stage(next(iter(finished.values())))
    if last is not None:
        metrics["run"]["final_stage"] = last
    write_aggregate(run_dir, metrics)
    table = seed_table(metrics["aggregate"], seeds)
    with writing(run_dir / "summary.md", OUTPUT_KEY):
        (run_dir / "summary.md").write_text(table + "\n")
    print("\n" + table + "\n", flush=True)
    print(f"metrics: {run_dir / 'metrics.json'} (seeds in {run_dir}/seed_<s>)", flush=True)
    return metrics


def objective(metrics: dict | None) -> float | None:
    """Mean dev macro F1 of the last stage over the seeds (what a Hydra sweep maximises)."""
    if not metrics:
        return None
    stage = (metrics.get("run") or {}).get("final_stage")
    stats = (metrics.get("aggregate") or {}).get(stage, {}).get("dev_macro_f1")
    return None if not stats else stats["mean"]

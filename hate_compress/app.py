"""Run the configured pipeline: compose data, loop over `stages`, write metrics and a summary.

Kept free of Hydra's decorator so tests and the Optuna sweep can call `run_pipeline(cfg)` with a
composed config directly; `__main__` is only the thin Hydra entry point.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import hate_compress.resolvers  # noqa: F401  (registers ${data_file:...} and friends)
from hate_compress import stages as _stages  # noqa: F401  (registers the stages)
from hate_compress.errors import ConfigError, HateCompressError
from hate_compress.run import STAGES, Run
from hate_compress.summary import check_targets, summary_table

log = logging.getLogger("hate_compress")


def validate_stages(stages) -> list[str]:
    names = list(stages)
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {unknown}; choose from {sorted(STAGES)}")
    order = ["teacher", "kd", "prune", "quant"]
    ranks = [order.index(s) for s in names if s in order]
    if ranks != sorted(ranks):
        raise ConfigError(f"stages={names}: stages run in the order {order}")
    if names and names[0] != "teacher":
        raise ConfigError(f"stages={names}: every pipeline starts with the teacher stage")
    return names


def make_data(cfg: DictConfig):
    try:
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, HateCompressError) else None
        raise cause or ConfigError(f"data: {exc}".splitlines()[0]) from None
    data = instantiate(data_cfg, _convert_="all")
    data.setup()
    return data


def run_pipeline(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Run every stage in `cfg.stages`; returns the metrics dict also written to metrics.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stages = validate_stages(cfg.stages)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    data = make_data(cfg)
    log.info("data %s: %s (%s, %d labels)", data.name, data.split_sizes, data.task,
             data.num_labels)
    run = Run(cfg, run_dir, data)
    run.metrics["run"] = {"stages": stages, "data": data.name, "split_sizes": data.split_sizes,
                          "teacher": cfg.teacher.name, "student": cfg.student.name,
                          "kd": cfg.kd.name, "prune": cfg.prune.name, "quant": cfg.quant.name,
                          "seed": int(cfg.seed), "status": "running"}
    for stage in stages:
        log.info("=== stage %s ===", stage)
        start = time.perf_counter()
        STAGES[stage](run)
        run.stage_seconds[stage] = round(time.perf_counter() - start, 1)
        run.metrics["run"]["stage_seconds"] = run.stage_seconds
    run.metrics["run"]["status"] = "ok"
    run.metrics["targets"] = check_targets(run)
    run.write_metrics()
    table = summary_table(run.metrics)
    (run_dir / "summary.md").write_text(table + "\n")
    print("\n" + table + "\n", flush=True)
    print(f"metrics: {run_dir / 'metrics.json'}", flush=True)
    return run.metrics


def fail(message: str, run_dir: Path | None, multirun: bool) -> None:
    """One line on stderr; in a sweep the cell is recorded as failed and the sweep goes on."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    if run_dir is not None:
        import json

        path = run_dir / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics.setdefault("run", {}).update({"status": "failed", "error": message})
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2, default=str))
    if not multirun:
        sys.exit(HateCompressError.exit_code)


def guarded_run(cfg: DictConfig, run_dir: Path, multirun: bool = False) -> dict | None:
    try:
        return run_pipeline(cfg, run_dir)
    except HateCompressError as exc:
        fail(str(exc), run_dir, multirun)
    except OmegaConfBaseException as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, HateCompressError) else exc
        fail(str(cause).splitlines()[0], run_dir, multirun)
    return None

"""Run the configured pipeline: compose data, loop over `stages`, write metrics and a summary.

Kept free of Hydra's decorator so tests and the Optuna sweep can call `run_pipeline(cfg)` with a
composed config directly; `__main__` is only the thin Hydra entry point. What escapes a run is
handled by `guard`, what a finished run writes by `outputs`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning.pytorch as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import hate_compress.resolvers  # noqa: F401  (registers ${data_file:...} and friends)
from hate_compress import distributed
from hate_compress import stages as _stages  # noqa: F401  (registers the stages)
from hate_compress.errors import ConfigError, HateCompressError
from hate_compress.extras import apply_extras
from hate_compress.measure.outcome import check_targets
from hate_compress.pipeline.console import quiet_lightning
from hate_compress.pipeline.guard import guarded_call, user_error
from hate_compress.pipeline.outputs import export_final, write_summary
from hate_compress.registry import import_plugins
from hate_compress.resume import prepare_run_dir
from hate_compress.stages.state import PREFLIGHT, STAGES, Run, stage_order
from hate_compress.storage import OUTPUT_KEY, writing
from hate_compress.validation import validate_config

log = logging.getLogger("hate_compress")


def validate_stages(stages) -> list[str]:
    """`stages` as a list, in the order the stage registry ranks them, starting with the first."""
    names = list(stages)
    for name in names:
        STAGES.get(name)
    order = stage_order()
    if [order.index(s) for s in names] != sorted(order.index(s) for s in names):
        raise ConfigError(f"stages={names}: stages run in the order {order}")
    if names and names[0] != order[0]:
        raise ConfigError(f"stages={names}: every pipeline starts with the {order[0]} stage")
    return names


def make_data(cfg: DictConfig):
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    try:
        data = instantiate(data_cfg, _convert_="all")
    except InstantiationException as exc:  # Hydra wraps what the constructor raised
        message = user_error(exc)
        raise ConfigError(message if message.startswith("data.") else f"data: {message}") from None
    data.setup()
    return data


def run_pipeline(cfg: DictConfig, run_dir: str | Path, callbacks: dict | None = None) -> dict:
    """Run every stage in `cfg.stages`; returns the metrics dict also written to metrics.json.

    `callbacks` adds Lightning callbacks to named training stages (the Optuna sweep uses it to
    prune trials on per-epoch dev F1)."""
    run_dir = Path(run_dir)
    quiet_lightning()
    import_plugins(cfg.get("plugins"))  # their names must be known to every check below
    apply_extras(cfg.get("extras"), cfg)
    stages = validate_stages(cfg.stages)
    validate_config(cfg)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    # under torchrun/srun every rank runs this function: one run directory (rank 0's: a
    # timestamped run_name may differ by a second between ranks), prepared once
    distributed.setup(distributed.backend_for(cfg.trainer))
    run_dir = Path(distributed.broadcast(str(run_dir)))
    distributed.on_rank_zero(lambda: prepare_output(cfg, run_dir), share=False)
    data = make_data(cfg)
    log.info("data %s: %s (%s, %d labels)", data.name, data.split_sizes, data.task,
             data.num_labels)
    run = Run(cfg, run_dir, data, callbacks=dict(callbacks or {}))
    run.metrics["run"] = {"stages": stages, "data": data.name, "split_sizes": data.split_sizes,
                          "teacher": cfg.teacher.name, "student": cfg.student.name,
                          "kd": cfg.kd.name, "prune": cfg.prune.name, "quant": cfg.quant.name,
                          "seed": int(cfg.seed), "status": "running"}
    try:
        for stage in stages:
            if stage in PREFLIGHT:
                PREFLIGHT[stage](run)
        for stage in stages:
            log.info("=== stage %s ===", stage)
            start = time.perf_counter()
            # each stage starts from the run seed, so a student's init does not depend on
            # whether the teacher was trained in this run or loaded from the store
            pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
            STAGES[stage](run)
            run.stage_seconds[stage] = round(time.perf_counter() - start, 1)
            run.metrics["run"]["stage_seconds"] = run.stage_seconds
    except Exception as exc:
        # whatever escapes (a user error or a bug), metrics.json must not claim "running"
        run.metrics["run"].update(status="failed", error=user_error(exc) if isinstance(
            exc, HateCompressError) else f"{type(exc).__name__}: {exc}")
        run.write_metrics()
        raise
    # metrics, summary and reports are rank 0's; every rank returns the same metrics
    return distributed.on_rank_zero(lambda: finish_run(run, run_dir))


def prepare_output(cfg: DictConfig, run_dir: Path) -> None:
    with writing(run_dir, OUTPUT_KEY):
        run_dir.mkdir(parents=True, exist_ok=True)
        prepare_run_dir(cfg, run_dir)  # refuses to resume under a changed config


def finish_run(run: Run, run_dir: Path) -> dict:
    export_final(run)
    run.metrics["run"]["status"] = "ok"
    run.metrics["targets"] = check_targets(run)
    run.write_metrics()
    write_summary(run_dir, run.metrics)
    return run.metrics


def guarded_run(cfg: DictConfig, run_dir: Path, multirun: bool = False) -> dict | None:
    """`run_pipeline` as the command line runs it: a user error is one line (see `guard`)."""
    return guarded_call(run_pipeline, cfg, run_dir, multirun)

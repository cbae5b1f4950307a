"""Run the configured pipeline: compose data, loop over `stages`, write metrics and a summary.

Kept free of Hydra's decorator so tests and the Optuna sweep can call `run_pipeline(cfg)` with a
composed config directly; `__main__` is only the thin Hydra entry point.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import hate_compress.resolvers  # noqa: F401  (registers ${data_file:...} and friends)
from hate_compress import distributed
from hate_compress import stages as _stages  # noqa: F401  (registers the stages)
from hate_compress.errors import ConfigError, HateCompressError
from hate_compress.extras import apply_extras
from hate_compress.registry import import_plugins
from hate_compress.resume import prepare_run_dir, run_label
from hate_compress.run import PREFLIGHT, STAGES, Run, stage_order
from hate_compress.storage import OUTPUT_KEY, storage_errno, storage_message, writing
from hate_compress.summary import check_targets, summary_table
from hate_compress.validation import validate_config

log = logging.getLogger("hate_compress")

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what shells report for Ctrl-C


class _DropTips(logging.Filter):
    """Lightning's advertising tip, and its Ctrl-C notice (we print our own one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "litlogger" not in message and "Detected KeyboardInterrupt" not in message


def quiet_lightning() -> None:
    """Lightning has its own console handler: stop its records reaching Hydra's root handler
    too (every line printed twice), and drop its advertising tip and Ctrl-C notice."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.propagate = False
        for handler in logger.handlers:
            handler.addFilter(_DropTips())
        logger.addFilter(_DropTips())


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


def user_error(exc: BaseException) -> str:
    """The HateCompressError an OmegaConf resolver raised, else the first line of `exc`."""
    seen = exc
    while seen is not None:
        if isinstance(seen, HateCompressError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return str(exc).splitlines()[0]


def make_data(cfg: DictConfig):
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    try:
        data = instantiate(data_cfg, _convert_="all")
    except InstantiationException as exc:  # Hydra wraps what the constructor raised
        message = user_error(exc)
        raise ConfigError(message if message.startswith("data.") else f"data: {message}") from None
    data.setup()
    return data


def export_final(run: Run) -> None:
    """`<run_dir>/final_model` points at the last stage's artifact: the model to ship."""
    if run.current is None or run.current.path is None:
        return
    link = run.run_dir / "final_model"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(run.current.path).resolve())
    run.metrics["run"]["final_model"] = str(run.current.path)


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
    table = summary_table(run.metrics)
    with writing(run_dir / "summary.md", OUTPUT_KEY):
        (run_dir / "summary.md").write_text(table + "\n")
    write_html_report(run_dir, run.metrics)
    print("\n" + table + "\n", flush=True)
    print(f"metrics: {run_dir / 'metrics.json'}", flush=True)
    return run.metrics


def record_status(run_dir: Path | None, status: str, **extra) -> None:
    """Mark metrics.json `failed`/`interrupted`; best effort (the disk may be what failed)."""
    if run_dir is None or not distributed.is_rank_zero():
        return
    path = run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text()) if path.exists() else {}
        metrics.setdefault("run", {}).update({"status": status, **extra})
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2, default=str))
    except (OSError, ValueError) as exc:
        log.warning("could not record status %s in %s: %s", status, path, exc)


def write_html_report(run_dir: Path, metrics: dict) -> None:
    """report.html beside summary.md; a by-product, so a plotting problem is a warning, not a
    failed run whose metrics are all written already."""
    from hate_compress.analysis.html_report import run_report_html

    try:
        log.info("report: %s", run_report_html(run_dir, metrics))
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded
        log.warning("report.html not written: %s: %s", type(exc).__name__, exc)


def fail(message: str, run_dir: Path | None, multirun: bool) -> None:
    """One line on stderr; in a sweep the cell is recorded as failed and the sweep goes on."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    record_status(run_dir, "failed", error=message)
    if not multirun:
        sys.exit(HateCompressError.exit_code)


def interrupted(cfg: DictConfig, run_dir: Path) -> None:
    """Ctrl-C: one line saying how to resume, status `interrupted`, exit 130 (128 + SIGINT) —
    also in a sweep, where the user meant to stop everything."""
    print(f"interrupted; rerun the same command ({run_label(cfg, run_dir)}) to resume",
          file=sys.stderr, flush=True)
    record_status(run_dir, "interrupted")
    sys.exit(INTERRUPTED_EXIT_CODE)


def guarded_call(fn, cfg: DictConfig, run_dir: Path, multirun: bool = False):
    """Call `fn(cfg, run_dir)`; a user error becomes one `error:` line (and exit 2)."""
    try:
        return fn(cfg, run_dir)
    except HateCompressError as exc:
        fail(str(exc), run_dir, multirun)
    except OmegaConfBaseException as exc:
        fail(user_error(exc), run_dir, multirun)
    except KeyboardInterrupt:
        interrupted(cfg, run_dir)
    except OSError as exc:  # a write no `writing(...)` block names: still one line, the file
        if storage_errno(exc) is None:
            raise
        fail(storage_message(exc, None), run_dir, multirun)
    return None


def guarded_run(cfg: DictConfig, run_dir: Path, multirun: bool = False) -> dict | None:
    return guarded_call(run_pipeline, cfg, run_dir, multirun)

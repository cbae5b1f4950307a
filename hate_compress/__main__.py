"""`python -m hate_compress [group=option ...]`: the Hydra entry point (kept thin on purpose)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import hate_compress.resolvers  # noqa: F401
from hate_compress.cli import CONF_DIR, check_args


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from hate_compress.extras import apply_extras

    apply_extras(cfg.get("extras"))  # before the imports below, whose libraries warn at import
    from hate_compress.measure.outcome import objective
    from hate_compress.pipeline.guard import guarded_call
    from hate_compress.pipeline.runner import guarded_run

    if cfg.get("hparams_search"):  # an Optuna study instead of one run (docs/sweep.md)
        from hate_compress.sweep.runner import main as sweep

        return sweep(cfg)
    hc = HydraConfig.get()
    run_dir, multirun = Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN
    if cfg.get("seeds") is not None:  # one run per seed, aggregated (hate_compress/seeds.py)
        from hate_compress import seeds

        return seeds.objective(guarded_call(seeds.run_seeds, cfg, run_dir, multirun))
    metrics = guarded_run(cfg, run_dir, multirun=multirun)
    return objective(metrics)


def run() -> None:
    """Console script `hate-compress` (same as `python -m hate_compress`)."""
    check_args()
    try:
        main()
    except KeyboardInterrupt:  # before a run directory exists (a run itself says how to resume)
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


if __name__ == "__main__":
    run()

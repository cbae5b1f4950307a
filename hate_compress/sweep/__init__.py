"""Optuna search over the pipeline, run in-process: `python -m hate_compress hparams_search=kd_optuna`.

In-process rather than Hydra's Optuna sweeper (docs/sweep.md): the sweeper for hydra-core 1.3
pins Optuna 2.10 and only sees each run's final value, so it cannot prune a trial from its
per-epoch dev F1. Here every trial calls `run_pipeline` with a pruning callback on the KD stage.

A study is identified by its storage and `hparams_search.study_name`; the same command run again
resumes it, and the same command started twice (same storage) adds a worker. Three mechanisms keep
the total exact and every trial run once:

* a worker only asks for a trial while `finished + running < n_trials`, and a trial that got a
  number anyway (two workers asking at the same instant) gives its slot up before sampling unless
  `finished + unfinished trials numbered below it < n_trials` (see `has_slot`); it ends FAIL
  with the user attr `surplus`, without params, and is not counted;
* a worker with nothing left to start waits for the trials still running elsewhere, so it can
  take over if one of them dies; it exits once the study has `n_trials` finished trials;
* a RUNNING trial whose worker is gone is failed and its params re-queued (`reap_stale`): at once
  when the worker was a process on this machine that no longer exists, else after
  `grace_period` seconds without a heartbeat (Optuna's own for RDB storages, a trial attribute
  for journal files, which have none).

The package, by job: `space` (the `hparams_search` config, checked before any trial runs),
`storage` (where a study lives, and whether a stored study is this one), `liveness` (which
worker owns a running trial, heartbeats, reaping the dead), `trials` (counting against the
budget, the best trial), `runner` (the study loop and one trial's pipeline), `outputs`
(best_params.yaml, trials.csv, plots) and `optuna_shim`, the only module that touches Optuna's
private API (tests/test_layering.py checks it).
"""

from hate_compress.sweep.liveness import (
    HEARTBEAT_ATTR,
    OWNER_ATTR,
    machine_id,
    owner_record,
    reap_stale,
    stale_reason,
)
from hate_compress.sweep.optuna_shim import TrialSeededTPESampler
from hate_compress.sweep.runner import main, run_study
from hate_compress.sweep.space import parse_search
from hate_compress.sweep.storage import check_study_config, make_storage, study_dir
from hate_compress.sweep.trials import best_trial, has_slot

__all__ = [
    "HEARTBEAT_ATTR", "OWNER_ATTR", "TrialSeededTPESampler", "best_trial", "check_study_config",
    "has_slot", "machine_id", "main", "make_storage", "owner_record", "parse_search",
    "reap_stale", "run_study", "stale_reason", "study_dir",
]

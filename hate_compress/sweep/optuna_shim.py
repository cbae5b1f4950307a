"""Every use of Optuna's private API, in one place (tests/test_layering.py fails on any other).

Optuna 4's public API has no way to do these, and each may break with an Optuna upgrade, so they
are kept here, each with the reason it is needed; the rest of the sweep uses public API only:

* the storage behind a study (`Study._storage`) and a trial's storage id (`_trial_id`): a worker
  records which process owns a trial, beats a heartbeat for journal files, and fails a trial
  whose worker died — trials it does not hold a `Trial` object for;
* whether a storage runs Optuna's own heartbeat (`optuna.storages._heartbeat`): RDB storages do,
  journal files need ours;
* the TPE sampler's random streams (`_rng`, `_random_sampler._rng`), reseeded per trial number so
  that workers started with the same seed do not sample the same params;
* the logger of Optuna's optimize loop (`optuna.study._optimize`), muted for per-trial lines:
  the sweep prints its own line per trial, without tracebacks for expected failures.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes."""
    return study._storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's id in its storage (not its number within the study)."""
    return trial._trial_id


def heartbeat_enabled(study: optuna.Study) -> bool:
    """Whether the study's storage has Optuna's heartbeat (RDB with `heartbeat_interval`)."""
    return is_heartbeat_enabled(storage_of(study))


def set_system_attr(study: optuna.Study, trial: optuna.Trial | FrozenTrial, key: str,
                    value: Any) -> None:
    """A system attribute on any trial of the study, also one this process does not run."""
    storage_of(study).set_trial_system_attr(trial_id(trial), key, value)


def fail_trial(study: optuna.Study, trial: FrozenTrial, error: str) -> FrozenTrial | None:
    """Mark another worker's RUNNING trial FAIL with the user attr `error`; the trial as stored
    now, or None when another worker finished or failed it first (only one reaper wins)."""
    storage = storage_of(study)
    try:
        storage.set_trial_user_attr(trial_id(trial), "error", error)
        if not storage.set_trial_state_values(trial_id(trial), optuna.trial.TrialState.FAIL):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None  # another worker got there first
    return storage.get_trial(trial_id(trial))


class _MuteTrialLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Trial ")


def mute_trial_logs() -> None:
    """Drop Optuna's "Trial N finished/failed ..." lines (idempotent)."""
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _MuteTrialLogs) for f in logger.filters):
        logger.addFilter(_MuteTrialLogs())


class TrialSeededTPESampler(optuna.samplers.TPESampler):
    """TPE whose random stream is reseeded from (seed, trial number) before every trial.

    A plain seeded TPE gives every worker the same stream, so two workers started with the same
    command would sample the same startup params; keyed by trial number, each trial gets its own
    stream and a resumed study samples what an uninterrupted one would have."""

    def __init__(self, seed: int | None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._base_seed is not None:
            stream = (self._base_seed * 1_000_003 + trial.number * 7_919) % (2**32 - 1)
            self._rng.rng.seed(stream)
            self._random_sampler._rng.rng.seed((stream + 1) % (2**32 - 1))
        super().before_trial(study, trial)

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
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
import re
import shutil
import socket
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from hate_compress.errors import ConfigError, HateCompressError
from hate_compress.seeds import seed_config

log = logging.getLogger("hate_compress.sweep")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
OWNER_ATTR = "hate_compress:owner"
HEARTBEAT_ATTR = "hate_compress:heartbeat"
SEARCH_KEYS = {
    "name", "study_name", "storage", "n_trials", "seed", "direction", "metric", "pruner", "params",
    "heartbeat_interval", "grace_period", "max_retry", "max_consecutive_failures", "poll_interval",
    "seeds_per_trial", "worker",
}
PRUNER_KEYS = {"type", "n_startup_trials", "n_warmup_steps", "lower", "upper"}
PARAM_KEYS = {"float": {"type", "low", "high", "log", "step"},
              "int": {"type", "low", "high", "log", "step"},
              "categorical": {"type", "choices"}}
# config keys that change where or how loudly a trial runs, not what it measures: a study may be
# resumed with different values (see `check_study_config`)
# (data files are named by `data.name`; their paths differ between machines)
NEUTRAL_KEYS = ("paths", "run_name", "resume", "logger", "trainer.enable_progress_bar",
                "trainer.enable_model_summary", "trainer.log_every_n_steps", "data.train_file",
                "data.dev_file", "data.test_file")
SEARCH_NEUTRAL = ("name", "study_name", "storage", "n_trials", "seed", "pruner", "metric",
                  "heartbeat_interval", "grace_period", "max_retry", "max_consecutive_failures",
                  "poll_interval", "worker")


# ---------------------------------------------------------------------------------------------
# the search config


@dataclass
class Param:
    name: str  # dotted config key, also the Optuna param name
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial):
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log,
                                     step=1 if self.step is None else self.step)
        return trial.suggest_categorical(self.name, list(self.choices))

    def extremes(self) -> list:
        return [self.low, self.high] if self.type != "categorical" else list(self.choices)


@dataclass
class Search:
    study_name: str
    storage: str | None
    n_trials: int
    seed: int | None
    direction: str
    metric: str
    pruner: dict
    params: list[Param]
    heartbeat_interval: int
    grace_period: int
    max_retry: int | None
    max_consecutive_failures: int
    poll_interval: float
    # k > 1: each trial runs the pipeline with seeds `seed`, `seed`+1, ..., `seed`+k-1 and is
    # scored on the mean dev macro F1 (docs/sweep.md "Seeds per trial")
    seeds_per_trial: int = 1

    @property
    def worst_value(self) -> float:
        """The worst dev macro F1 for the study's direction: what a degenerate trial reports."""
        return 0.0 if self.direction == "maximize" else 1.0


def _number(where: str, value, *, integer: bool = False) -> float | int:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or (integer and int(value) != value):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}={value!r} is not {kind}")
    return int(value) if integer else value


def _leaves(node: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Param specs are dicts with a `type`; everything above them is the config path, so both
    `kd: {alpha: {...}}` (overridable from the command line) and `kd.alpha: {...}` work."""
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and "type" not in value:
            if not value:
                raise ConfigError(f"hparams_search.params.{name}: empty; give a param spec with a type")
            yield from _leaves(value, name + ".")
        else:
            yield name, value


def parse_param(cfg: DictConfig, name: str, spec) -> Param:
    where = f"hparams_search.params.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}={spec!r}: expected a dict like {{type: float, low: 0, high: 1}}")
    kind = spec.get("type")
    if kind not in PARAM_KEYS:
        raise ConfigError(f"{where}.type={kind!r} is not one of {sorted(PARAM_KEYS)}")
    unknown = sorted(set(spec) - PARAM_KEYS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for type {kind}; "
                          f"allowed {sorted(PARAM_KEYS[kind])}")
    missing = object()
    target = OmegaConf.select(cfg, name, default=missing)
    if target is missing:
        raise ConfigError(f"{where}: {name} is not a key of the config")
    if isinstance(target, DictConfig | dict | list) or OmegaConf.is_list(target):
        raise ConfigError(f"{where}: {name} is a group of keys, not a value to search")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list | tuple) or not choices:
            raise ConfigError(f"{where}.choices={choices!r}: expected a non-empty list")
        bad = [c for c in choices if not (c is None or isinstance(c, bool | int | float | str))]
        if bad:
            raise ConfigError(f"{where}.choices: {bad[0]!r} is not a number, string, bool or null")
        return Param(name, kind, choices=tuple(choices))
    integer = kind == "int"
    for key in ("low", "high"):
        if spec.get(key) is None:
            raise ConfigError(f"{where}.{key} is missing")
    low = _number(f"{where}.low", spec["low"], integer=integer)
    high = _number(f"{where}.high", spec["high"], integer=integer)
    if low > high:
        raise ConfigError(f"{where}: low={low} > high={high}")
    log_scale = spec.get("log", False)
    if not isinstance(log_scale, bool):
        raise ConfigError(f"{where}.log={log_scale!r} must be true or false")
    step = spec.get("step")
    if step is not None:
        step = _number(f"{where}.step", step, integer=integer)
        if step <= 0:
            raise ConfigError(f"{where}.step={step} must be > 0")
        if log_scale:
            raise ConfigError(f"{where}: log=true and step={step} cannot be combined")
    if log_scale and low <= 0:
        raise ConfigError(f"{where}: log=true needs low > 0 (got low={low})")
    return Param(name, kind, low=low, high=high, log=log_scale, step=step)


def parse_search(cfg: DictConfig) -> Search:
    """The `hparams_search` group as a `Search`, with every mistake reported before any trial
    runs: a typo in a range must not surface as twenty failed trials."""
    node = cfg.get("hparams_search")
    if not isinstance(node, DictConfig):
        raise ConfigError(f"hparams_search={node!r}: choose a search, e.g. hparams_search=kd_optuna")
    raw = OmegaConf.to_container(node, resolve=True)
    unknown = sorted(set(raw) - SEARCH_KEYS)
    if unknown:
        raise ConfigError(f"hparams_search: unknown key(s) {unknown}; known: {sorted(SEARCH_KEYS)}")

    def integer(key: str, default, minimum: int) -> int:
        value = _number(f"hparams_search.{key}", raw.get(key, default), integer=True)
        if value < minimum:
            raise ConfigError(f"hparams_search.{key}={value} must be >= {minimum}")
        return value

    study_name = str(raw.get("study_name") or "")
    if not re.fullmatch(r"[\w.\-]+", study_name):
        raise ConfigError(f"hparams_search.study_name={study_name!r}: use letters, digits, "
                          "'.', '_' and '-' (it names files)")
    storage = raw.get("storage")
    if storage is not None and not (isinstance(storage, str) and storage.strip()):
        raise ConfigError(f"hparams_search.storage={storage!r}: expected null, a SQLAlchemy URL "
                          "or journal:<file>")
    direction = raw.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"hparams_search.direction={direction!r} is not maximize or minimize")
    seed = raw.get("seed")
    if seed is not None:
        seed = integer("seed", None, 0)
    metric = raw.get("metric") or "val/macro_f1"
    pruner = dict(raw.get("pruner") or {"type": "none"})
    unknown = sorted(set(pruner) - PRUNER_KEYS)
    if unknown:
        raise ConfigError(f"hparams_search.pruner: unknown key(s) {unknown}; known: {sorted(PRUNER_KEYS)}")
    if pruner.get("type") not in ("median", "threshold", "none"):
        raise ConfigError(f"hparams_search.pruner.type={pruner.get('type')!r} is not one of "
                          "['median', 'none', 'threshold']")
    for key in ("n_startup_trials", "n_warmup_steps"):
        if pruner.get(key) is not None and _number(f"hparams_search.pruner.{key}", pruner[key],
                                                   integer=True) < 0:
            raise ConfigError(f"hparams_search.pruner.{key}={pruner[key]} must be >= 0")
    for key in ("lower", "upper"):
        if pruner.get(key) is not None:
            _number(f"hparams_search.pruner.{key}", pruner[key])
    if pruner["type"] == "threshold" and pruner.get("lower") is None and pruner.get("upper") is None:
        raise ConfigError("hparams_search.pruner.type=threshold needs pruner.lower or pruner.upper")
    params_node = raw.get("params")
    if not isinstance(params_node, dict) or not params_node:
        raise ConfigError("hparams_search.params is empty: give at least one key to search")
    params = [parse_param(cfg, name, spec) for name, spec in _leaves(params_node)]
    max_retry = raw.get("max_retry", 2)
    heartbeat = integer("heartbeat_interval", 20, 1)
    grace = integer("grace_period", 120, 1)
    if grace <= heartbeat:
        raise ConfigError(f"hparams_search.grace_period={grace} must be > heartbeat_interval={heartbeat}")
    poll = _number("hparams_search.poll_interval", raw.get("poll_interval", 5))
    if poll <= 0:
        raise ConfigError(f"hparams_search.poll_interval={poll} must be > 0")
    search = Search(
        study_name=study_name, storage=storage, n_trials=integer("n_trials", 20, 1), seed=seed,
        direction=direction, metric=metric, pruner=pruner, params=params,
        heartbeat_interval=heartbeat, grace_period=grace,
        max_retry=None if max_retry is None else integer("max_retry", 2, 0),
        max_consecutive_failures=integer("max_consecutive_failures", 3, 1), poll_interval=poll,
        seeds_per_trial=integer("seeds_per_trial", 1, 1),
    )
    if cfg.get("seeds") is not None:
        raise ConfigError(f"seeds={cfg.get('seeds')} with hparams_search: score each trial over "
                          "several seeds with hparams_search.seeds_per_trial=<k> instead")
    check_space(cfg, search)
    return search


def trial_config(cfg: DictConfig, values: dict[str, Any]) -> DictConfig:
    tcfg = copy.deepcopy(cfg)
    for name, value in values.items():
        OmegaConf.update(tcfg, name, value, merge=False)
    # a trial directory is never resumed: its number is new, and a leftover directory with that
    # number belongs to a deleted study
    OmegaConf.update(tcfg, "resume", False, merge=False)
    return tcfg


def check_space(cfg: DictConfig, search: Search) -> None:
    """Run the app's own config checks on the corners of the space, so `kd.alpha: {high: 2}`
    fails now, naming the search key, instead of in whichever trial samples 1.7."""
    from hate_compress.app import validate_stages
    from hate_compress.registry import import_plugins
    from hate_compress.validation import validate_config

    import_plugins(cfg.get("plugins"))  # a searched plugin term must be known to the checks
    validate_stages(cfg.stages)
    if "kd" not in cfg.stages:
        raise ConfigError(f"hparams_search: stages={list(cfg.stages)} has no kd stage, whose "
                          "per-epoch dev F1 the pruner watches (use pipeline=teacher_kd or another "
                          "pipeline with kd)")
    # the base value of a searched key never runs: check every param at its ends instead
    lows = {p.name: p.extremes()[0] for p in search.params}
    corners = [lows] + [{**lows, p.name: v} for p in search.params for v in p.extremes()[1:]]
    for values in corners:
        try:
            validate_config(trial_config(cfg, values))
        except ConfigError as exc:
            culprit = next((p.name for p in search.params if str(exc).startswith(f"{p.name}=")), None)
            if culprit is None:
                raise
            raise ConfigError(f"hparams_search.params.{culprit}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# storage, sampler, pruner


def masked(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: nothing to hide
        return url


def study_dir(cfg: DictConfig, search: Search) -> Path:
    return Path(cfg.paths.output_root).expanduser().resolve() / "optuna" / search.study_name


def storage_url(cfg: DictConfig, search: Search) -> str:
    if search.storage is None:
        return f"sqlite:///{study_dir(cfg, search).parent / (search.study_name + '.db')}"
    return search.storage.strip()


def make_storage(cfg: DictConfig, search: Search) -> optuna.storages.BaseStorage:
    url = storage_url(cfg, search)
    where = f"hparams_search.storage={masked(url)}"
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):]).expanduser()
        if not url[len("journal:"):]:
            raise ConfigError(f"{where}: give the journal file, e.g. journal:outputs/optuna/study.log")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise ConfigError(f"{where}: cannot open the journal file ({exc})") from None
    if "://" not in url:
        raise ConfigError(f"{where}: expected null, a SQLAlchemy URL (sqlite:///study.db, "
                          "postgresql+psycopg2://user:password@host/db) or journal:<file>")
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # writers wait for each other instead of failing with "database is locked"
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return open_rdb(url, engine_kwargs, search)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{where}: cannot open the storage ({first})") from None


def open_rdb(url: str, engine_kwargs: dict, search: Search) -> optuna.storages.RDBStorage:
    """Workers started together on an empty database race to create Optuna's schema; the loser
    sees a duplicate type or table (IntegrityError) although the schema now exists: retry."""
    import sqlalchemy.exc

    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs,
                heartbeat_interval=search.heartbeat_interval, grace_period=search.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(search.max_retry),
            )
        except sqlalchemy.exc.IntegrityError:
            if attempt == 2:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


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


def make_pruner(search: Search) -> optuna.pruners.BasePruner:
    p = search.pruner
    if p["type"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(p.get("n_startup_trials") or 0),
                                           n_warmup_steps=int(p.get("n_warmup_steps") or 0))
    if p["type"] == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p.get("lower"), upper=p.get("upper"),
                                              n_warmup_steps=int(p.get("n_warmup_steps") or 0))
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------------------------
# liveness of the workers running trials


def machine_id() -> str | None:
    """Host, boot and PID namespace: two workers with the same value can check each other's
    PIDs (same host name alone is not enough: containers may share one)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{pid_ns}"


def process_start(pid: int) -> str | None:
    """Start time of a live process (None when it is gone or a zombie): with the PID it tells a
    dead worker from a new process that reused its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def owner_record(number: int) -> dict:
    return {"trial": number, "machine": machine_id(), "pid": os.getpid(),
            "start": process_start(os.getpid()), "host": socket.gethostname()}


def stale_reason(trial: FrozenTrial, search: Search, native_heartbeat: bool,
                 now: float | None = None) -> str | None:
    """Why a RUNNING trial's worker is known to be gone, or None while it may be alive.

    Attributes copied into a retried trial from the one it retries name another trial number
    and are ignored, so a retry is never judged by its dead predecessor."""
    owner = trial.system_attrs.get(OWNER_ATTR) or {}
    here = machine_id()
    if owner.get("trial") == trial.number and here is not None and owner.get("machine") == here:
        if process_start(int(owner["pid"])) != owner.get("start"):
            return f"its worker (pid {owner['pid']} on {owner.get('host')}) is gone"
        return None  # alive on this machine: never judged by heartbeat age
    if native_heartbeat:
        return None  # Optuna's heartbeat (fail_stale_trials) covers RDB storages
    beat = trial.system_attrs.get(HEARTBEAT_ATTR) or {}
    last = beat.get("time") if beat.get("trial") == trial.number else None
    if last is None and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()
    if last is None:
        return None
    age = (now or time.time()) - float(last)
    if age > search.grace_period:
        return f"no heartbeat for {age:.0f} s (grace_period={search.grace_period})"
    return None


def reap_stale(study: optuna.Study, search: Search) -> list[int]:
    """Fail the RUNNING trials whose worker is gone and re-queue their params; returns their
    numbers. Safe with several reapers: only the one whose FAIL lands re-queues."""
    storage = study._storage
    native = is_heartbeat_enabled(storage)
    if native:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(search.max_retry)
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(trial, search, native)
        if reason is None:
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "error", f"stale: {reason}")
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        log.warning("[sweep] trial %d was RUNNING but %s: marked FAIL, params re-queued",
                    trial.number, reason)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, storage.get_trial(trial._trial_id))
        reaped.append(trial.number)
    return reaped


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial, interval: int):
    """A heartbeat attribute for storages without Optuna's (journal files)."""
    if is_heartbeat_enabled(study._storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                study._storage.set_trial_system_attr(
                    trial._trial_id, HEARTBEAT_ATTR, {"trial": trial.number, "time": time.time()})
            except Exception:  # the trial finished meanwhile, or the file is busy: next beat
                pass
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# ---------------------------------------------------------------------------------------------
# counting


def counts(study: optuna.Study) -> dict[str, int]:
    out = {s.name.lower(): 0 for s in TrialState} | {"surplus": 0}
    for t in study.get_trials(deepcopy=False):
        surplus = t.state == TrialState.FAIL and t.user_attrs.get("surplus")
        out["surplus" if surplus else t.state.name.lower()] += 1  # a lost race is no failed run
    out["finished"] = out["complete"] + out["pruned"]
    return out


def has_slot(trials: list[FrozenTrial], number: int, n_trials: int) -> bool:
    """Whether trial `number` is within the budget: finished trials plus the unfinished ones with
    a lower number leave room for it. Numbers are assigned by the storage, so trials racing for
    the last slot agree on who gets it. WAITING trials count too: a re-queued trial created
    before this one is popped later (by whichever worker asks next) and must find its slot."""
    finished = sum(1 for t in trials if t.state in FINISHED)
    ahead = sum(1 for t in trials if t.number < number
                and t.state in (TrialState.RUNNING, TrialState.WAITING))
    return finished + ahead < n_trials


class _Surplus(Exception):
    """The trial lost the race for the last slot: FAIL it (not counted), before sampling."""


class _TrialFailed(Exception):
    """The pipeline failed for this trial's config: a FAIL trial, not a crashed sweep."""


# ---------------------------------------------------------------------------------------------
# the study


class Sweep:
    def __init__(self, cfg: DictConfig, search: Search, study: optuna.Study, out_dir: Path):
        self.cfg, self.search, self.study, self.out_dir = cfg, search, study, out_dir
        self.consecutive_failures = 0
        self.last_error = ""

    def objective(self, trial: optuna.Trial) -> float:
        from optuna_integration import PyTorchLightningPruningCallback

        from hate_compress.summary import degenerate, objective

        if not has_slot(self.study.get_trials(deepcopy=False), trial.number, self.search.n_trials):
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the last slot went to a trial with a lower number")
        self.study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR,
                                                  owner_record(trial.number))
        values = {p.name: p.suggest(trial) for p in self.search.params}
        run_dir = self.out_dir / f"trial_{trial.number}"
        if run_dir.exists():  # left by a deleted study with this name: keep it, out of the way
            shutil.move(str(run_dir), str(run_dir.with_name(f"{run_dir.name}.old-{int(time.time())}")))
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("error", None)
        log.info("[sweep] trial %d started: %s -> %s", trial.number, fmt_params(values), run_dir)
        tcfg = trial_config(self.cfg, values)
        with heartbeat(self.study, trial, self.search.heartbeat_interval):
            if self.search.seeds_per_trial > 1:
                return self.over_seeds(trial, tcfg, run_dir)
            callbacks = {"kd": [PyTorchLightningPruningCallback(trial, monitor=self.search.metric)]}
            metrics = self.run_trial_pipeline(trial, tcfg, run_dir, callbacks)
        value = objective(metrics)
        trial.set_user_attr("metrics", compact_metrics(metrics))
        if value is None:
            self._failed(trial, "the run finished without a dev macro F1")
        trial.set_user_attr("degenerate", degenerate(metrics))
        if degenerate(metrics):
            return self.degenerate_value(trial)
        return value

    def degenerate_value(self, trial: optuna.Trial) -> float:
        # its dev macro F1 is kept in `metrics`; the study sees the worst possible value, so
        # a model that predicts one class never wins nor steers the sampler towards it
        log.warning("[sweep] trial %d: degenerate model (one class for almost every dev "
                    "text): objective set to %s", trial.number, self.search.worst_value)
        return self.search.worst_value

    def run_trial_pipeline(self, trial: optuna.Trial, cfg: DictConfig, run_dir: Path,
                           callbacks: dict | None) -> dict:
        """`run_pipeline` for one trial (or one seed of it): a user error or a crash is a FAIL
        trial with its message, never a crashed sweep."""
        from hate_compress.app import run_pipeline, user_error

        try:
            return run_pipeline(cfg, run_dir, callbacks=callbacks)
        except optuna.TrialPruned:
            raise
        except (HateCompressError, OmegaConfBaseException) as exc:
            self._failed(trial, user_error(exc))
        except KeyboardInterrupt:
            # leave the trial RUNNING: like a killed worker it is failed and its params
            # re-queued by the next run (Optuna would mark it FAIL and drop its params)
            raise SystemExit(130) from None
        except Exception as exc:  # a bug or a crash for these params: keep the study going
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "traceback.txt").write_text(traceback.format_exc())
            self._failed(trial, f"{type(exc).__name__}: {exc} (traceback: {run_dir / 'traceback.txt'})")

    def over_seeds(self, trial: optuna.Trial, cfg: DictConfig, run_dir: Path) -> float:
        """Score the trial on the mean dev macro F1 over `seeds_per_trial` seeds.

        Every trial uses the same seeds (`trial_seeds`): two trials then differ by their
        params, not by which seeds they drew. After each seed the running mean is reported as
        intermediate value `i` (0-based seed index), so the pruner compares trials on the mean
        of their first i+1 seeds and a hopeless trial stops before its last seed. A degenerate
        seed makes the trial degenerate (a recipe that collapses for one seed in k is not one
        to ship) and its remaining seeds are not run."""
        from hate_compress.summary import degenerate, objective, spread

        seeds = trial_seeds(self.cfg, self.search.seeds_per_trial)
        trial.set_user_attr("seeds", seeds)
        per_seed: dict[int, float] = {}
        compact: list[dict] = []
        for step, seed in enumerate(seeds):
            sub = seed_config(cfg, seed)
            metrics = self.run_trial_pipeline(trial, sub, run_dir / f"seed_{seed}", None)
            value = objective(metrics)
            compact.append(compact_metrics(metrics))
            if value is None:
                self._failed(trial, f"seed {seed}: the run finished without a dev macro F1")
            per_seed[seed] = value
            trial.set_user_attr("seed_values", {str(k): v for k, v in per_seed.items()})
            trial.set_user_attr("metrics", seed_mean_metrics(compact, list(per_seed.values())))
            if degenerate(metrics):
                trial.set_user_attr("degenerate", True)
                log.warning("[sweep] trial %d: seed %d is degenerate; its other seeds are not run",
                            trial.number, seed)
                return self.degenerate_value(trial)
            running = spread(list(per_seed.values()))["mean"]
            trial.report(running, step)
            log.info("[sweep] trial %d seed %d: dev macro F1 %.4f, running mean %.4f (%d/%d)",
                     trial.number, seed, value, running, step + 1, len(seeds))
            if trial.should_prune():
                trial.set_user_attr("degenerate", False)
                raise optuna.TrialPruned(f"running mean {running:.4f} after {step + 1} seed(s)")
        trial.set_user_attr("degenerate", False)
        return spread(list(per_seed.values()))["mean"]

    @staticmethod
    def _failed(trial: optuna.Trial, message: str):
        message = " ".join(str(message).split())
        trial.set_user_attr("error", message)
        raise _TrialFailed(message)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """One progress line per trial (Optuna's own, tracebacks included, are muted)."""
        if trial.user_attrs.get("surplus"):
            log.info("[sweep] trial %d not run: every remaining trial is taken by other workers",
                     trial.number)
            study.stop()
            return
        now = counts(study)
        if trial.state == TrialState.FAIL:
            self.consecutive_failures += 1
            self.last_error = trial.user_attrs.get("error") or "unknown error"
        else:
            self.consecutive_failures = 0
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        outcome = {
            TrialState.COMPLETE: f"COMPLETE dev macro F1 {fmt_value(trial.value)}",
            TrialState.PRUNED: f"PRUNED at {'epoch' if self.search.seeds_per_trial == 1 else 'seed #'}"
                               f" {max(trial.intermediate_values, default='-')}",
            TrialState.FAIL: f"FAIL ({self.last_error})",
        }.get(trial.state, trial.state.name)
        best = best_trial(study)
        best_text = f"best {fmt_value(best.value)} (trial {best.number})" if best else "no best yet"
        log.info("[sweep] trial %d %s | %s | %.1f s | %d/%d finished, %s", trial.number, outcome,
                 fmt_params(trial.params), seconds, now["finished"], self.search.n_trials, best_text)
        if self.consecutive_failures >= self.search.max_consecutive_failures:
            study.stop()  # `run` reports it
        reap_stale(study, self.search)
        now = counts(study)
        if now["finished"] + now["running"] >= self.search.n_trials:
            study.stop()  # the rest is taken: `run` waits rather than asking for surplus trials

    def run(self) -> None:
        stop_at = optuna.study.MaxTrialsCallback(self.search.n_trials, states=FINISHED)
        waiting_logged = False
        while True:
            reap_stale(self.study, self.search)
            now = counts(self.study)
            if now["finished"] >= self.search.n_trials:
                return
            if self.consecutive_failures >= self.search.max_consecutive_failures:
                raise HateCompressError(
                    f"hparams_search: {self.consecutive_failures} trials in a row failed in this "
                    f"worker (max_consecutive_failures={self.search.max_consecutive_failures}); "
                    f"last error: {self.last_error}")
            if now["finished"] + now["running"] >= self.search.n_trials:
                if not waiting_logged:
                    log.info("[sweep] %d/%d finished; waiting for %d trial(s) running in other "
                             "workers (taking over if one dies)", now["finished"],
                             self.search.n_trials, now["running"])
                    waiting_logged = True
                time.sleep(self.search.poll_interval)
                continue
            waiting_logged = False
            self.study.optimize(
                self.objective, gc_after_trial=True,
                catch=(_Surplus, _TrialFailed), callbacks=[self.after_trial, stop_at],
            )


def trial_seeds(cfg: DictConfig, k: int) -> list[int]:
    """The k seeds every trial runs: `seed`, `seed`+1, ..., `seed`+k-1."""
    return [int(cfg.seed) + i for i in range(k)]


def seed_mean_metrics(per_seed: list[dict], values: list[float]) -> dict:
    """The seeds' `compact_metrics`, averaged key by key, plus the spread of the objective."""
    from hate_compress.summary import spread

    keys = sorted({k for m in per_seed for k in m})
    out = {k: spread([m[k] for m in per_seed if k in m])["mean"] for k in keys}
    stats = spread(values)
    out.update({"seeds.n": stats["n"], "seeds.dev_macro_f1_std": stats["std"],
                "seeds.dev_macro_f1_min": stats["min"]})
    return out


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial whose model is not degenerate (None if there is none)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not t.user_attrs.get("degenerate")]
    if not complete:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: t.value)


def compact_metrics(metrics: dict) -> dict:
    """Quality per stage and split, small enough for a trial attribute (metrics.json has all)."""
    out = {}
    for stage, values in metrics.items():
        if not isinstance(values, dict) or stage in ("run", "targets"):
            continue
        for split in ("dev", "test"):
            if isinstance(values.get(split), dict) and "macro_f1" in values[split]:
                out[f"{stage}.{split}.macro_f1"] = float(values[split]["macro_f1"])
        for key in ("size_mb", "params_total"):
            if isinstance(values.get(key), int | float):
                out[f"{stage}.{key}"] = values[key]
    return out


def fmt_value(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items()) or "-"


# ---------------------------------------------------------------------------------------------
# identity of a study across reruns


def _flat(node, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def base_config(cfg: DictConfig, search: Search) -> dict[str, Any]:
    """The flattened config a study's trials share, minus what may change between reruns
    (paths, n_trials, ...) and the searched keys (each trial sets those)."""
    raw = OmegaConf.to_container(cfg, resolve=True)
    flat = _flat(raw)
    drop = [*NEUTRAL_KEYS, *(f"hparams_search.{k}" for k in SEARCH_NEUTRAL),
            *(p.name for p in search.params)]
    if search.seeds_per_trial == 1:  # what every study meant before the key existed
        drop.append("hparams_search.seeds_per_trial")
    return {k: v for k, v in flat.items()
            if not any(k == d or k.startswith(d + ".") for d in drop)}


def check_study_config(study: optuna.Study, cfg: DictConfig, search: Search) -> None:
    """Refuse to resume a study with a different fixed config: its old and new trials would be
    ranked together although they measure different things."""
    import json

    current = json.loads(json.dumps(base_config(cfg, search), default=str))
    stored = study.user_attrs.get("base_config")
    if stored is None:
        study.set_user_attr("base_config", current)
        return
    changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if changed:
        shown = ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise ConfigError(
            f"hparams_search.study_name={search.study_name}: the study was started with another "
            f"config ({shown}{more}); pick a new study_name to search this one")


# ---------------------------------------------------------------------------------------------
# outputs


def _atomic_write(path: Path, text: str) -> None:
    """Workers finishing together write the same files: never leave a half-written one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_trials_csv(study: optuna.Study, search: Search, path: Path) -> None:
    import io

    names = [p.name for p in search.params]
    extra = sorted({k for t in study.trials for k in (t.user_attrs.get("metrics") or {})})
    header = ["number", "state", "value", *names, "pruned_at_epoch", "duration_s", "datetime_start",
              *extra, "degenerate", "run_dir", "worker", "error"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for t in study.trials:
        metrics = t.user_attrs.get("metrics") or {}
        writer.writerow([
            t.number, t.state.name, t.value, *(t.params.get(n) for n in names),
            max(t.intermediate_values) if t.state == TrialState.PRUNED and t.intermediate_values else None,
            round(t.duration.total_seconds(), 1) if t.duration else None,
            t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            *(metrics.get(k) for k in extra), t.user_attrs.get("degenerate"),
            t.user_attrs.get("run_dir"),
            t.user_attrs.get("worker"),
            "surplus (not run)" if t.user_attrs.get("surplus") else t.user_attrs.get("error"),
        ])
    _atomic_write(path, buf.getvalue())


def write_plots(study: optuna.Study, search: Search, out_dir: Path) -> list[Path]:
    """History once a trial completed; importances only with >= 2 complete trials whose values
    differ (fANOVA has nothing to explain otherwise); contour of the first two params with >= 2
    complete trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = len({t.value for t in complete}) >= 2
    plots = {}
    if complete:
        plots["optimization_history.png"] = lambda: ovm.plot_optimization_history(study)
    if len(complete) >= 2 and varied:
        plots["param_importances.png"] = lambda: ovm.plot_param_importances(study)
    names = [p.name for p in search.params]
    if len(names) >= 2 and len(complete) >= 2:
        plots["contour.png"] = lambda: ovm.plot_contour(study, params=names[:2])
    written = []
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot()
            fig = np.ravel(axes)[0].figure
            tmp = out_dir / f".{name}.{os.getpid()}.png"
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
            plt.close(fig)
            os.replace(tmp, out_dir / name)
            written.append(out_dir / name)
        except Exception as exc:  # a plot is never worth failing a finished study for
            log.warning("[sweep] plot %s skipped: %s", name, exc)
    return written


def write_outputs(study: optuna.Study, search: Search, cfg: DictConfig, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    now = counts(study)
    best = best_trial(study)
    summary = {
        "study_name": search.study_name,
        "storage": masked(storage_url(cfg, search)),
        "direction": search.direction,
        "objective": "dev macro F1 of the last stage (degenerate models: the worst value)"
                     + (f", mean over {search.seeds_per_trial} seeds "
                        f"{trial_seeds(cfg, search.seeds_per_trial)}"
                        if search.seeds_per_trial > 1 else ""),
        "n_trials": search.n_trials,
        "trials": {k: now[k] for k in ("finished", "complete", "pruned", "fail", "running",
                                        "surplus")},
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else float(best.value),
        "best_params": None if best is None else dict(best.params),
        "best_run_dir": None if best is None else best.user_attrs.get("run_dir"),
        "best_overrides": None if best is None else " ".join(
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in best.params.items()),
    }
    _atomic_write(out_dir / "best_params.yaml", OmegaConf.to_yaml(OmegaConf.create(summary)))
    write_trials_csv(study, search, out_dir / "trials.csv")
    write_plots(study, search, out_dir)
    return summary


def print_summary(summary: dict, out_dir: Path) -> None:
    t = summary["trials"]
    lines = [
        f"study {summary['study_name']} ({summary['storage']}): {t['finished']}/{summary['n_trials']} "
        f"finished ({t['complete']} complete, {t['pruned']} pruned), {t['fail']} failed"
        + (f", {t['surplus']} not run (lost the race for the last slot)" if t["surplus"] else ""),
    ]
    if summary["best_trial"] is None:
        lines.append("no complete, non-degenerate trial yet")
    else:
        lines.append(f"best dev macro F1 {summary['best_value']:.4f} (trial {summary['best_trial']}): "
                     f"{fmt_params(summary['best_params'])}")
    lines.append(f"outputs: {out_dir} (best_params.yaml, trials.csv, *.png)")
    print("\n".join(lines), flush=True)


class _MuteTrialLogs(logging.Filter):
    """Optuna logs every finished/failed trial, with a traceback for expected failures; the
    sweep's own line per trial replaces those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Trial ")


def run_study(cfg: DictConfig) -> optuna.Study:
    """Create or resume the study named by `cfg.hparams_search` and run trials until it has
    `n_trials` finished ones; writes best_params.yaml, trials.csv and plots to the study dir."""
    from hate_compress.app import quiet_lightning

    search = parse_search(cfg)
    out_dir = study_dir(cfg, search)
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    muted = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _MuteTrialLogs) for f in muted.filters):
        muted.addFilter(_MuteTrialLogs())
    storage = make_storage(cfg, search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            study_name=search.study_name, storage=storage, load_if_exists=True,
            direction=search.direction, pruner=make_pruner(search),
            sampler=TrialSeededTPESampler(search.seed, constant_liar=True),
        )
    if study.direction.name.lower() != search.direction:
        raise ConfigError(f"hparams_search.direction={search.direction}: study {search.study_name} "
                          f"was created with direction={study.direction.name.lower()}")
    check_study_config(study, cfg, search)
    reap_stale(study, search)
    now = counts(study)
    log.info("[sweep] study %s (%s): %d/%d finished, %d running elsewhere; outputs in %s",
             search.study_name, masked(storage_url(cfg, search)), now["finished"], search.n_trials,
             now["running"], out_dir)
    try:
        Sweep(cfg, search, study, out_dir).run()
    finally:
        summary = write_outputs(study, search, cfg, out_dir)
        print_summary(summary, out_dir)
    return study


def main(cfg: DictConfig) -> float | None:
    """The CLI path: user errors end as one `error:` line and exit status 2, like a single run."""
    from hate_compress.app import fail, user_error

    try:
        study = run_study(cfg)
    except HateCompressError as exc:
        fail(str(exc), None, multirun=False)
    except OmegaConfBaseException as exc:
        fail(user_error(exc), None, multirun=False)
    best = best_trial(study)
    return None if best is None else float(best.value)


if __name__ == "__main__":  # `python -m hate_compress.sweep ...`: the same app, search on
    if not any(a.startswith(("hparams_search=", "+hparams_search=")) for a in sys.argv[1:]):
        sys.argv.insert(1, "hparams_search=kd_optuna")
    import runpy

    # run as __main__ (not imported): Hydra finds ../conf relative to the file only then
    runpy.run_module("hate_compress", run_name="__main__", alter_sys=True)

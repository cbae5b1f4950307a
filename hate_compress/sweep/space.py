"""The search space: the `hparams_search` config group as a `Search`, checked before any trial
runs (a typo in a range must not surface as twenty failed trials), and one trial's config.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from hate_compress.errors import ConfigError
from hate_compress.registry import import_plugins
from hate_compress.validation import validate_config

SEARCH_KEYS = {
    "name", "study_name", "storage", "n_trials", "seed", "direction", "metric", "pruner", "params",
    "heartbeat_interval", "grace_period", "max_retry", "max_consecutive_failures", "poll_interval",
    "seeds_per_trial", "worker",
}
PRUNER_KEYS = {"type", "n_startup_trials", "n_warmup_steps", "lower", "upper"}
PARAM_KEYS = {"float": {"type", "low", "high", "log", "step"},
              "int": {"type", "low", "high", "log", "step"},
              "categorical": {"type", "choices"}}


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
    from hate_compress.pipeline.runner import validate_stages

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


def make_pruner(search: Search) -> optuna.pruners.BasePruner:
    p = search.pruner
    if p["type"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(p.get("n_startup_trials") or 0),
                                           n_warmup_steps=int(p.get("n_warmup_steps") or 0))
    if p["type"] == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p.get("lower"), upper=p.get("upper"),
                                              n_warmup_steps=int(p.get("n_warmup_steps") or 0))
    return optuna.pruners.NopPruner()


def trial_seeds(cfg: DictConfig, k: int) -> list[int]:
    """The k seeds every trial runs: `seed`, `seed`+1, ..., `seed`+k-1."""
    return [int(cfg.seed) + i for i in range(k)]

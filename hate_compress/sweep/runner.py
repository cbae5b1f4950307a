"""The study loop: create or resume the study, run trials until it has `n_trials` finished ones,
and run the pipeline for one trial (or each of its seeds).

In-process rather than Hydra's Optuna sweeper (docs/sweep.md): the sweeper for hydra-core 1.3
pins Optuna 2.10 and only sees each run's final value, so it cannot prune a trial from its
per-epoch dev F1. Here every trial calls `run_pipeline` with a pruning callback on the KD stage.
A worker with nothing left to start waits for the trials still running elsewhere, so it can take
over if one of them dies; it exits once the study has `n_trials` finished trials.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import traceback
import warnings
from pathlib import Path

import optuna
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from optuna.trial import FrozenTrial, TrialState

from hate_compress.errors import ConfigError, HateCompressError
from hate_compress.measure.outcome import degenerate, objective, spread
from hate_compress.seeds import seed_config
from hate_compress.sweep import optuna_shim
from hate_compress.sweep.liveness import OWNER_ATTR, heartbeat, owner_record, reap_stale
from hate_compress.sweep.optuna_shim import TrialSeededTPESampler
from hate_compress.sweep.outputs import fmt_params, fmt_value, print_summary, write_outputs
from hate_compress.sweep.space import Search, make_pruner, parse_search, trial_config, trial_seeds
from hate_compress.sweep.storage import (
    check_study_config,
    make_storage,
    masked,
    storage_url,
    study_dir,
)
from hate_compress.sweep.trials import FINISHED, best_trial, counts, has_slot

log = logging.getLogger("hate_compress.sweep")


class _Surplus(Exception):
    """The trial lost the race for the last slot: FAIL it (not counted), before sampling."""


class _TrialFailed(Exception):
    """The pipeline failed for this trial's config: a FAIL trial, not a crashed sweep."""


class Sweep:
    def __init__(self, cfg: DictConfig, search: Search, study: optuna.Study, out_dir: Path):
        self.cfg, self.search, self.study, self.out_dir = cfg, search, study, out_dir
        self.consecutive_failures = 0
        self.last_error = ""

    def objective(self, trial: optuna.Trial) -> float:
        from optuna_integration import PyTorchLightningPruningCallback

        if not has_slot(self.study.get_trials(deepcopy=False), trial.number, self.search.n_trials):
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the last slot went to a trial with a lower number")
        optuna_shim.set_system_attr(self.study, trial, OWNER_ATTR, owner_record(trial.number))
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
        from hate_compress.pipeline.guard import user_error
        from hate_compress.pipeline.runner import run_pipeline

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


def seed_mean_metrics(per_seed: list[dict], values: list[float]) -> dict:
    """The seeds' `compact_metrics`, averaged key by key, plus the spread of the objective."""
    keys = sorted({k for m in per_seed for k in m})
    out = {k: spread([m[k] for m in per_seed if k in m])["mean"] for k in keys}
    stats = spread(values)
    out.update({"seeds.n": stats["n"], "seeds.dev_macro_f1_std": stats["std"],
                "seeds.dev_macro_f1_min": stats["min"]})
    return out


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


def run_study(cfg: DictConfig) -> optuna.Study:
    """Create or resume the study named by `cfg.hparams_search` and run trials until it has
    `n_trials` finished ones; writes best_params.yaml, trials.csv and plots to the study dir."""
    from hate_compress.pipeline.console import quiet_lightning

    search = parse_search(cfg)
    out_dir = study_dir(cfg, search)
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_lightning()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna_shim.mute_trial_logs()
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
    from hate_compress.pipeline.guard import fail, user_error

    try:
        study = run_study(cfg)
    except HateCompressError as exc:
        fail(str(exc), None, multirun=False)
    except OmegaConfBaseException as exc:
        fail(user_error(exc), None, multirun=False)
    best = best_trial(study)
    return None if best is None else float(best.value)

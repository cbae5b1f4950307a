"""Where a study lives — a SQLAlchemy URL (SQLite by default, PostgreSQL for many machines) or
a journal file — and whether the study stored there is the one this config asks for.

The same command run again resumes the study; the same command started twice adds a worker.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RetryHeartbeatStaleTrialCallback

from hate_compress.errors import ConfigError
from hate_compress.sweep.space import Search

# config keys that change where or how loudly a trial runs, not what it measures: a study may be
# resumed with different values (see `check_study_config`)
# (data files are named by `data.name`; their paths differ between machines)
NEUTRAL_KEYS = ("paths", "run_name", "resume", "logger", "trainer.enable_progress_bar",
                "trainer.enable_model_summary", "trainer.log_every_n_steps", "data.train_file",
                "data.dev_file", "data.test_file")
SEARCH_NEUTRAL = ("name", "study_name", "storage", "n_trials", "seed", "pruner", "metric",
                  "heartbeat_interval", "grace_period", "max_retry", "max_consecutive_failures",
                  "poll_interval", "worker")


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

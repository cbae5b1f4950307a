"""Shared fixtures: compose real Hydra configs with tiny, fast settings.

Tests run the real app on real configs (lightning-hydra-template style) — only the sizes shrink:
a 1-layer teacher and student, a few batches per epoch, latency off unless a test wants it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()

# conf/debug/tiny.yaml: 1-layer 64-wide teacher, 1 epoch per stage, trainer=fast, latency off,
# teacher F1 gate off — the same settings a user's smoke run gets
TINY = ["debug=tiny"]


def compose_cfg(tmp_path: Path, overrides: list[str] = (), tiny: bool = True):
    """A composed config writing every output (runs, caches, teachers) under `tmp_path`."""
    base = [
        "data=synthetic",
        f"paths.output_root={tmp_path / 'outputs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=base + (TINY if tiny else []) + list(overrides))


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides: str, tiny: bool = True):
        return compose_cfg(tmp_path, list(overrides), tiny)

    return make


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "germeval2018" / "train.tsv").exists():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HATE_COMPRESS_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("HATE_COMPRESS_DATA_DIR", None)
    return env


def _our_logger_state() -> dict[str, tuple[int, bool]]:
    import logging

    names = ["hate_compress",
             *(n for n in logging.root.manager.loggerDict if n.startswith("hate_compress."))]
    loggers = [(n, logging.getLogger(n)) for n in names]
    return {n: (lg.level, lg.disabled) for n, lg in loggers if isinstance(lg, logging.Logger)}


_LOGGERS_AT_START = _our_logger_state()


@pytest.fixture(autouse=True)
def _restore_our_loggers(request):
    """A test (or a module fixture: bench/common.py's `quiet()`) that raises our loggers' level
    must not hide the info lines a later test asserts on: after each test, every logger of ours
    is back to its state at session start, and a warning names the test that changed it."""
    import logging
    import warnings

    yield
    changed = {n: state for n, state in _our_logger_state().items()
               if state != _LOGGERS_AT_START.get(n, (logging.NOTSET, False))}
    for name in changed:
        level, disabled = _LOGGERS_AT_START.get(name, (logging.NOTSET, False))
        logging.getLogger(name).setLevel(level)  # setLevel also clears the loggers' level cache
        logging.getLogger(name).disabled = disabled
    if changed:
        warnings.warn(f"{request.node.nodeid} (or its fixtures) changed logger levels "
                      f"{sorted(changed)}; restored", stacklevel=1)

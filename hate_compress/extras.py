"""The `extras` config group: warning filters, quiet loggers and config printing for one run.

Applied when a run starts (`__main__` before the heavy imports, and `run_pipeline` for runs
started in-process), never when the package is imported: importing `hate_compress` from a
notebook or another program must not change that program's warning settings. Idempotent, so
applying it twice (CLI, then `run_pipeline`) adds nothing twice.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def apply_extras(extras: Mapping | None, cfg: DictConfig | None = None) -> None:
    """Install the filters `extras` asks for; print `cfg` when `extras.print_config` is set."""
    if not extras:
        return
    if extras.get("ignore_warnings", False):
        for pattern in extras.get("warning_messages") or ():
            # filterwarnings puts the filter first and drops an identical older one
            warnings.filterwarnings("ignore", message=str(pattern))
        for name in extras.get("quiet_loggers") or ():
            logging.getLogger(str(name)).setLevel(logging.ERROR)
    if extras.get("print_config", False) and cfg is not None:
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))

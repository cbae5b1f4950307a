"""Resume a run only under the config it was started with.

Rerunning with the same `run_name` resumes every stage from its `last.ckpt`. If the config
changed in between (say `kd.alpha`), the old checkpoint would silently continue under the new
config and its metrics be filed under a config that never produced them. So before anything is
written, the run's saved `config_resolved.yaml` is compared with the new one: any difference
outside `RESUME_IGNORED` refuses with one line naming the keys; `resume=false` starts the run
over instead (the old stage directories and metrics are removed).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hate_compress.errors import ConfigError
from hate_compress.identity import TRAINER_LOGGING_KEYS, changed_keys

log = logging.getLogger(__name__)

CONFIG_FILE = "config_resolved.yaml"
# Keys a resumed run may change because they cannot change a checkpoint or a number in it:
# - resume, run_name: how the run directory is found, not what runs in it;
# - paths: where outputs, caches and stored teachers live (all content-addressed; the data
#   files themselves are compared as data.*_file);
# - logger and the trainer's progress/logging keys: what is printed, not what is trained;
# - measure, targets: evaluation settings, applied afresh after every (resumed) stage;
# - temperatures: read only by `python -m hate_compress.temperature`.
RESUME_IGNORED = ("resume", "run_name", "paths", "logger", "measure", "targets", "temperatures",
                  *(f"trainer.{key}" for key in TRAINER_LOGGING_KEYS))
# what a previous run leaves in its directory besides Hydra's own files
# (glob patterns: kd=mutual leaves one kd_peer<i> directory per peer)
RUN_OUTPUTS = ("teacher", "assistant", "kd", "kd_peer*", "prune", "quant", "metrics.json",
               "summary.md", "final_model")
SHOWN_CHANGES = 5


def resolved(cfg: DictConfig) -> dict:
    """The config as `config_resolved.yaml` holds it (a YAML round trip, so both sides of a
    comparison have the same types)."""
    return OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True)))


def run_label(cfg: DictConfig, run_dir: Path) -> str:
    """`run_name=<name>` when `run_dir` is the CLI's directory for it, else the directory."""
    name = str(cfg.get("run_name") or "")
    if name and Path(run_dir).as_posix().endswith("/" + name.strip("/")):
        return f"run_name={name}"
    return f"run directory {run_dir}"


def has_checkpoints(run_dir: Path) -> bool:
    return any(Path(run_dir).glob("*/checkpoints/last.ckpt"))


def start_fresh(run_dir: Path) -> None:
    for pattern in RUN_OUTPUTS:
        for path in run_dir.glob(pattern):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)


def check_same_config(cfg: DictConfig, run_dir: Path) -> None:
    saved = run_dir / CONFIG_FILE
    if not saved.exists():
        log.warning("%s: no %s to compare with; resuming its checkpoints as they are", run_dir,
                    CONFIG_FILE)
        return
    changes = changed_keys(OmegaConf.to_container(OmegaConf.load(saved)), resolved(cfg),
                           RESUME_IGNORED)
    if changes:
        shown = "; ".join(changes[:SHOWN_CHANGES])
        more = f"; and {len(changes) - SHOWN_CHANGES} more" if len(changes) > SHOWN_CHANGES else ""
        raise ConfigError(
            f"{run_label(cfg, run_dir)} was started with a different config ({shown}{more}); "
            "use a new run_name, or resume=false to start fresh"
        )


def prepare_run_dir(cfg: DictConfig, run_dir: Path) -> None:
    """Check (resume=true) or clear (resume=false) what an earlier run left, then save the config.

    Only a run with a stage checkpoint is compared: a run that stopped at a config or data error
    trained nothing, and rerunning it with the fix is the normal next step."""
    if not cfg.get("resume", True):
        start_fresh(run_dir)
    elif has_checkpoints(run_dir):
        check_same_config(cfg, run_dir)
    (run_dir / CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True))

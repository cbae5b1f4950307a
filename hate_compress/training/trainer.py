"""Build a Lightning Trainer for one stage from the `trainer` and `logger` groups.

The `hardware` group (accelerator, devices, strategy, precision, num_nodes) is merged into the
`trainer` node by Hydra (`# @package trainer` in conf/hardware/*.yaml), so `cfg.trainer` holds
every Trainer argument and nothing is copied across here.

Every training stage (teacher, KD, pruning fine-tune) gets its own directory with a `last.ckpt`
(so a killed run resumes where it stopped) and a `best.ckpt` chosen on dev macro F1.

A resumed run must end exactly where the uninterrupted one would have, so nothing random may
depend on how many epochs this *process* has run: the train sampler is seeded by (seed, epoch)
(`EpochSeededSampler` in `data.batching`) and the global RNG that drives dropout by (seed,
epoch, batch) (`BatchSeed`). Checkpoints are read back with `weights_only=True` only (`SafeCheckpointIO`),
since a run directory may be shared and a pickle in it would otherwise run code on resume.
"""

from __future__ import annotations

import inspect
import logging
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import get_class, instantiate
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from hate_compress.distributed import under_launcher
from hate_compress.errors import TrainingDiverged
from hate_compress.safety import safe_torch_load
from hate_compress.training.csv_log import KeepLogHistory
from hate_compress.training.progress import progress_callbacks

log = logging.getLogger(__name__)

RESUME_HINT = ("delete it, or rerun with resume=false (or a new run_name) to train this stage "
               "from scratch")


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, but `fit(ckpt_path=...)` can only ever load tensors.

    Lightning 2.6 passes `weights_only=None` through to `torch.load` unless `fit` is given the
    flag, and torch's default can be switched back to full unpickling by an environment
    variable; forcing it here covers every stage whatever `fit` is called with. Our checkpoints
    hold only tensors and primitives (no `save_hyperparameters`, plain callback states), so
    nothing legitimate is lost."""

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None):
        return safe_torch_load(path, what="checkpoint", hint=RESUME_HINT,
                               map_location=map_location or "cpu")


class BatchSeed(Callback):
    """Reseed the global RNGs before every training batch from (seed, epoch, batch index).

    Dropout draws from the global torch RNG. Without this, the first epoch of a resumed process
    would draw from a generator that was just seeded, not one that already ran the earlier
    epochs, and the resumed run would drift from the uninterrupted one. Per batch rather than
    per epoch because Lightning skips `on_train_epoch_start` for the epoch it resumes into (a
    checkpoint written at validation end restarts "on epoch end"), and because it keeps
    anything else that draws random numbers between batches (dataloader iterators, validation)
    from shifting the masks. It also makes the RNG state when a stage ends independent of
    where it was resumed, so the next stage's model initialisation matches too."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        value = ((self.seed * 1_000_003 + int(trainer.current_epoch)) * 1_000_003 + batch_idx)
        value %= 2**63
        torch.manual_seed(value)
        random.seed(value)
        np.random.seed(value % 2**32)


class FiniteWeights(Callback):
    """Stop before a checkpoint of non-finite weights can be written.

    The module's NaN-loss check fires on the *next* step; if the very last optimizer step of an
    epoch turns a weight into inf/nan, validation and `ModelCheckpoint` would otherwise run
    first and overwrite the good `last.ckpt` with a broken one. Lightning runs checkpoint
    callbacks after all others, so raising here keeps the previous epoch's checkpoint."""

    def __init__(self, stage: str):
        self.stage = stage

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for name, param in pl_module.named_parameters():
            if not bool(torch.isfinite(param.detach()).all()):
                raise TrainingDiverged(
                    f"{self.stage}: weights became non-finite ({name} has nan/inf) at step "
                    f"{trainer.global_step} (epoch {trainer.current_epoch}); stopped, the last "
                    "good checkpoint is kept — lower the learning rate"
                )

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, pl_module)


def stage_seed(cfg: DictConfig, stage: str) -> int:
    """The seed a stage's training randomness follows.

    The teacher has its own `teacher.seed` (the teacher store is keyed by it, so one stored
    teacher serves several student seeds); its dropout must follow that seed too, or the stored
    teacher would depend on which student seed happened to train it first."""
    teacher = cfg.get("teacher")
    if stage == "teacher" and teacher is not None and teacher.get("seed") is not None:
        return int(teacher.seed)
    return int(cfg.get("seed", 0))


def make_logger(logger_cfg, stage_dir: Path):
    """The `logger` group's logger for one stage, or False (`logger=none`).

    File loggers (CSV, TensorBoard) write into the stage directory (`<stage>/logs`); MLflow
    keeps one store for all runs (its `save_dir`) and names each stage's run after the run
    directory. Only arguments the logger class accepts and the config leaves unset are
    filled in, so the config always wins."""
    if not logger_cfg:
        return False
    run = f"{stage_dir.parent.name}/{stage_dir.name}"
    defaults = {"save_dir": str(stage_dir), "name": "logs", "version": "", "run_name": run,
                "tags": {"run_dir": str(stage_dir.parent), "stage": stage_dir.name}}
    accepted = inspect.signature(get_class(logger_cfg._target_)).parameters
    extra = {key: value for key, value in defaults.items()
             if key in accepted and logger_cfg.get(key) is None}
    uri = str(logger_cfg.get("tracking_uri") or "")
    if uri.startswith("sqlite:///"):  # MLflow creates the database, not its directory
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return instantiate(logger_cfg, **extra)


def make_trainer(
    cfg: DictConfig,
    stage_dir: Path,
    *,
    max_epochs: int,
    callbacks: list[Callback] = (),
    checkpoint: bool = True,
) -> pl.Trainer:
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if "strategy" in trainer_kwargs:  # started by torchrun/srun: join, don't spawn more
        trainer_kwargs["strategy"] = under_launcher(trainer_kwargs["strategy"])
    if isinstance(trainer_kwargs.get("strategy"), dict):
        trainer_kwargs["strategy"] = instantiate(trainer_kwargs["strategy"])
    progress, bar = progress_callbacks(stage_dir.name, trainer_kwargs.get("enable_progress_bar", True))
    trainer_kwargs["enable_progress_bar"] = bar
    all_callbacks = [*callbacks, *progress, BatchSeed(stage_seed(cfg, stage_dir.name)),
                     FiniteWeights(stage_dir.name), KeepLogHistory()]
    if checkpoint:
        all_callbacks.append(ModelCheckpoint(
            dirpath=str(stage_dir / "checkpoints"), filename="best", monitor="val/macro_f1",
            mode="max", save_top_k=1, save_last=True, enable_version_counter=False,
        ))
    logger = make_logger(cfg.get("logger"), stage_dir)
    plugins = trainer_kwargs.pop("plugins", None) or []
    plugins = [*(plugins if isinstance(plugins, list) else [plugins]), SafeCheckpointIO()]
    return pl.Trainer(
        max_epochs=max_epochs,
        default_root_dir=str(stage_dir),
        logger=logger,
        callbacks=all_callbacks,
        enable_checkpointing=checkpoint,
        plugins=plugins,
        **trainer_kwargs,
    )


def resume_path(stage_dir: Path, resume: bool) -> str | None:
    """`last.ckpt` of an interrupted stage, when resuming is on and it exists.

    Lightning writes it atomically (temp file, then rename), so a SIGKILL mid-save leaves the
    previous epoch's file rather than a truncated one."""
    last = stage_dir / "checkpoints" / "last.ckpt"
    if resume and last.exists():
        log.info("resuming from %s", last)
        return str(last)
    return None


def load_best_weights(module: pl.LightningModule, trainer: pl.Trainer) -> None:
    """Put the dev-best weights back into `module` (tensors only: weights_only=True)."""
    ckpt = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if not ckpt or not Path(ckpt).exists():
        return
    state = safe_torch_load(ckpt, what="checkpoint", hint=RESUME_HINT)["state_dict"]
    module.load_state_dict(state)

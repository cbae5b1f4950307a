"""Build a Lightning Trainer for one stage from the `trainer`, `hardware` and `logger` groups.

Every training stage (teacher, KD, pruning fine-tune) gets its own directory with a `last.ckpt`
(so a killed run resumes where it stopped) and a `best.ckpt` chosen on dev macro F1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

HARDWARE_KEYS = ("accelerator", "devices", "strategy", "precision", "num_nodes")


def make_trainer(
    cfg: DictConfig,
    stage_dir: Path,
    *,
    max_epochs: int,
    callbacks: list[Callback] = (),
    checkpoint: bool = True,
) -> pl.Trainer:
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    hardware = OmegaConf.to_container(cfg.hardware, resolve=True)
    for key in HARDWARE_KEYS:
        if hardware.get(key) is not None:
            trainer_kwargs[key] = hardware[key]
    if isinstance(trainer_kwargs.get("strategy"), dict):
        trainer_kwargs["strategy"] = instantiate(trainer_kwargs["strategy"])
    all_callbacks = list(callbacks)
    if checkpoint:
        all_callbacks.append(ModelCheckpoint(
            dirpath=str(stage_dir / "checkpoints"), filename="best", monitor="val/macro_f1",
            mode="max", save_top_k=1, save_last=True, enable_version_counter=False,
        ))
    logger = False
    if cfg.get("logger"):
        logger = instantiate(cfg.logger, save_dir=str(stage_dir), name="logs", version="")
    return pl.Trainer(
        max_epochs=max_epochs,
        default_root_dir=str(stage_dir),
        logger=logger,
        callbacks=all_callbacks,
        enable_checkpointing=checkpoint,
        **trainer_kwargs,
    )


def resume_path(stage_dir: Path, resume: bool) -> str | None:
    """`last.ckpt` of an interrupted stage, when resuming is on and it exists."""
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
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)

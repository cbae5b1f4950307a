"""Pruning inside a Lightning fit: when each kind of method acts, and checkpoints that load
into an unpruned model."""

from __future__ import annotations

import itertools
import logging
from typing import Any

from lightning.pytorch.callbacks import Callback
from torch import nn

from hate_compress.compress.pruning.masks import (
    apply_masks,
    effective_weight,
    make_permanent,
    prunable_linears,
    sparsity_report,
)
from hate_compress.compress.pruning.methods import checked_options, get_pruner
from hate_compress.compress.pruning.schedule import check_fraction, check_int, cubic_at
from hate_compress.errors import ConfigError

log = logging.getLogger(__name__)


class PruningCallback(Callback):
    """Applies one pruning method to `pl_module.model` at the right point of a fit.

    * structured: in `setup`, before the optimizer is built, because it replaces Parameters;
    * one-shot (magnitude, wanda): at `on_fit_start` (wanda calibrates on the train dataloader;
      without a datamodule the dataloader only exists from `on_train_start`, so it waits);
    * gradual: masks re-computed in `on_train_batch_start` every `every` optimizer steps on the
      cubic schedule, reaching `sparsity` at ``end_fraction`` of the run;
    * `on_fit_end`: masks baked in (`permanent=True`) and the reached sparsity logged.

    Checkpoints written meanwhile hold plain masked weights (see `on_save_checkpoint`), so
    ``best.ckpt`` loads into the unpruned architecture and a resumed fit re-derives the masks.
    ``every=None`` picks ~20 updates over the pruning window: Zhu & Gupta's Δt of 100–1000 steps
    assumed long pre-training runs, fine-tunes are often only a few hundred steps.
    """

    def __init__(self, method: str, sparsity: float, *, permanent: bool = True, **options: Any):
        """`options` are the method's declared `Pruner.options` (`prune.options` in configs)."""
        self.sparsity = check_fraction(sparsity, "prune.sparsity")
        opts = checked_options(method, options)
        self.pruner = get_pruner(method, **opts)
        self.initial_sparsity = self.begin_step = self.end_fraction = self.every = None
        if self.pruner.gradual:
            self.initial_sparsity = check_fraction(opts["initial_sparsity"],
                                                    "prune.initial_sparsity")
            if self.initial_sparsity > self.sparsity:
                raise ConfigError(f"prune.initial_sparsity={opts['initial_sparsity']} is above "
                                  f"prune.sparsity={sparsity}")
            self.begin_step = check_int(opts["begin_step"], "prune.begin_step", 0)
            self.end_fraction = check_fraction(opts["end_fraction"], "prune.end_fraction",
                                                low_open=True, high_closed=True)
            every = opts["every"]
            self.every = None if every is None else check_int(every, "prune.every", 1)
        self.calibration_batches = (
            check_int(opts["calibration_batches"], "prune.calibration_batches", 1)
            if self.pruner.needs_calibration else None)
        self.head_sparsity, self.ffn_sparsity = (
            None if opts.get(k) is None else check_fraction(opts[k], f"prune.{k}")
            for k in ("head_sparsity", "ffn_sparsity"))
        self.include_embeddings = opts.get("include_embeddings", False)
        self.include_head = opts.get("include_head", False)
        self.permanent = permanent
        self.current_sparsity: float | None = None  # last target applied
        self.report: dict | None = None
        self._pending = False
        self._applied = False  # a second fit() with the same callback must not prune again
        self._resumed = False
        self._last_step = -1
        self._total = 0

    # -- helpers

    @staticmethod
    def _model(pl_module) -> nn.Module:
        model = getattr(pl_module, "model", None)
        if not isinstance(model, nn.Module):
            raise ConfigError("prune: the LightningModule has no `model` to prune")
        return model

    def _run(self, trainer, pl_module, sparsity: float, loader=None) -> None:
        batches = None
        if self.pruner.needs_calibration:
            batches = list(itertools.islice(iter(loader), self.calibration_batches))
        self.pruner.run(
            self._model(pl_module), sparsity, include_embeddings=self.include_embeddings,
            include_head=self.include_head, batches=batches,
            input_key=getattr(pl_module, "input_key", "student"),
            sync=lambda masks: trainer.strategy.broadcast(masks, src=0),
        )
        self.current_sparsity = sparsity
        self._applied = True

    def _end_step(self) -> int:
        """Last batch index is total-1: end_fraction=1 must still reach the target in training."""
        return min(round(self.end_fraction * self._total), max(self._total - 1, 1))

    def _reinstall_masks(self, pl_module) -> None:
        """After a resume the checkpoint holds plain masked weights (see `on_save_checkpoint`):
        their zeros are the masks, reinstalled so fine-tuning cannot regrow them."""
        self._resumed = False
        if not self._applied:
            return
        targets = prunable_linears(self._model(pl_module), self.include_embeddings,
                                   self.include_head)
        apply_masks(targets, {name: effective_weight(m) != 0 for name, m in targets})

    # -- checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self._applied, "current_sparsity": self.current_sparsity,
                "last_step": self._last_step, "every": self.every}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._applied = bool(state_dict.get("applied", False))
        self.current_sparsity = state_dict.get("current_sparsity")
        self._last_step = int(state_dict.get("last_step", -1))
        self.every = state_dict.get("every", self.every)
        self._resumed = True

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        """Checkpoints store ``weight`` = weight_orig · weight_mask, never the reparametrisation.

        So `best.ckpt` loads into the plain model left after `on_fit_end`, into a fresh model,
        or into anything else that never heard of pruning; a resumed fit rebuilds the masks
        from the zeros.
        """
        state = checkpoint.get("state_dict")
        if not state:
            return
        for key in [k for k in state if k.endswith("_orig")]:
            base = key[: -len("_orig")]
            if base + "_mask" in state:
                state[base] = state.pop(key) * state.pop(base + "_mask")

    # -- hooks

    def shrink(self, model: nn.Module) -> None:
        """Apply a structural pruner to `model` now (once). The prune stage calls it before
        `fit`, in the process that owns the model: with a spawning strategy (hardware=ddp_cpu)
        `setup` runs only in the workers, whose shrunk weights would not fit the launching
        process's unpruned model when Lightning copies them back."""
        if not self.pruner.structural or self._applied:
            return
        self._applied = True
        result = self.pruner.run(model, self.sparsity, head_sparsity=self.head_sparsity,
                                 ffn_sparsity=self.ffn_sparsity)
        log.info("structured pruning: %d -> %d parameters", result["params_before"],
                 result["params_after"])
        self.report = result

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":  # before the optimizer is built: it replaces Parameters
            self.shrink(self._model(pl_module))

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.pruner.structural:
            return
        if self._resumed:
            self._reinstall_masks(pl_module)
        if self._applied and not self.pruner.gradual:
            return
        if self.pruner.gradual:
            self._total = int(trainer.estimated_stepping_batches)
            end = self._end_step()
            if self.begin_step >= end:
                raise ConfigError(
                    f"prune.begin_step={self.begin_step} is not before the end of pruning "
                    f"(step {end} = prune.end_fraction={self.end_fraction} of {self._total})"
                )
            if self.every is None:
                self.every = max(1, (end - self.begin_step) // 20)
            return
        loader = None
        if self.pruner.needs_calibration:
            datamodule = getattr(trainer, "datamodule", None)
            loader = (datamodule.train_dataloader() if datamodule is not None
                      else trainer.train_dataloader)
            if loader is None:
                self._pending = True
                return
        self._run(trainer, pl_module, self.sparsity, loader)

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending:
            self._pending = False
            self._run(trainer, pl_module, self.sparsity, trainer.train_dataloader)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.pruner.gradual:
            return
        step = trainer.global_step
        if step == self._last_step or step < self.begin_step:
            return  # same optimizer step (gradient accumulation) or before the window
        self._last_step = step
        end = self._end_step()
        on_grid = (step - self.begin_step) % self.every == 0
        if not on_grid and not (step >= end and self.current_sparsity != self.sparsity):
            return
        if step >= end:
            target = self.sparsity
        else:
            target = cubic_at(step, self.begin_step, end, self.initial_sparsity, self.sparsity)
        if target != self.current_sparsity:
            self._run(trainer, pl_module, target)
        pl_module.log("prune/target_sparsity", float(target), on_step=True, on_epoch=False)

    def on_fit_end(self, trainer, pl_module) -> None:
        model = self._model(pl_module)
        if self.pruner.structural:
            return
        if self.permanent:
            make_permanent(model)
        report = sparsity_report(model, self.include_embeddings, self.include_head)
        self.report = report
        reached = report["prunable_sparsity"]
        log.info("pruning (%s): reached sparsity %.4f of prunable weights (target %.4f)",
                 self.pruner.name, reached, self.sparsity)
        if reached + 0.01 < self.sparsity:
            log.warning("pruning stopped at sparsity %.4f below the target %.4f (training "
                        "ended before the end of the schedule)", reached, self.sparsity)
        for logger in trainer.loggers:
            logger.log_metrics({"prune/sparsity": reached, "prune/total_sparsity":
                                report["sparsity"]}, step=trainer.global_step)

"""Pruning: unstructured (magnitude, gradual, Wanda) and structured (heads / FFN neurons).

Every unstructured method is the same three steps — score each weight, turn scores into a 0/1
mask at the asked sparsity (globally, per layer or per output row), install the mask — and only
the scoring differs. So a `Pruner` implements `scores()` and everything else (mask selection,
`torch.nn.utils.prune` reparametrisation, sparsity accounting, Lightning integration) is shared.

Masks, their installation and accounting are in `masks`; the cubic schedule in `schedule`; the
Lightning integration in `callback`. This module holds the methods, their registry and the
one-shot `prune_model`.

Methods:

* ``magnitude`` — |W| (one-shot), one threshold over all prunable weights or one per layer.
* ``gradual`` — |W| on the cubic schedule of Zhu & Gupta (2017), updated during fine-tuning.
* ``wanda`` — |W_ij| · ||X_j||_2 (Sun et al., 2023), compared within each output row, with input
  norms from calibration batches; layers are calibrated sequentially so each layer sees the
  activations of the already-pruned layers before it, as in the reference implementation.
* ``structured`` — physically removes heads and FFN neurons (see `structured`).
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hate_compress.compress.pruning.masks import (
    Target,
    apply_masks,
    effective_weight,
    make_permanent,
    masks_from_scores,
    prunable_linears,
    sparsity_report,
)
from hate_compress.compress.pruning.schedule import check_fraction, check_int
from hate_compress.compress.pruning.structured import SCOPES as STRUCTURED_SCOPES
from hate_compress.compress.pruning.structured import structured_prune
from hate_compress.errors import ConfigError
from hate_compress.registry import Registry, with_defaults

log = logging.getLogger(__name__)

Batch = dict[str, Any]


def _batch_inputs(batch: Batch, input_key: str) -> tuple[Tensor, Tensor]:
    """Accept the training batches (`batch["inputs"][key]`) or a bare tokenizer output."""
    inputs = batch["inputs"][input_key] if "inputs" in batch else batch
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    return ids, (torch.ones_like(ids) if mask is None else mask)


# the options every mask-based method takes (`prune.options.*`), with their defaults
MASK_OPTIONS = {"scope": None, "include_embeddings": False, "include_head": False}


class Pruner:
    """A pruning criterion; subclasses only say how important each weight is.

    `options` are the `prune.options` keys the method accepts, with their defaults (as
    `Quantizer.options`); keywords of `__init__` among them reach the constructor."""

    name: ClassVar[str] = ""
    scopes: ClassVar[tuple[str, ...]] = ("global", "layer")
    needs_calibration: ClassVar[bool] = False
    gradual: ClassVar[bool] = False  # masks follow the cubic schedule during training
    structural: ClassVar[bool] = False  # changes shapes: must run before the optimizer exists
    options: ClassVar[dict[str, Any]] = MASK_OPTIONS

    def __init__(self, scope: str | None = None):
        scope = scope or self.scopes[0]
        if scope not in self.scopes:
            raise ConfigError(
                f"prune.scope={scope!r} is not one of {list(self.scopes)} for method {self.name}"
            )
        self.scope = scope

    def scores(self, module: nn.Module, name: str) -> Tensor:
        raise NotImplementedError

    def groups(self, targets: list[Target]) -> list[list[Target]]:
        """Targets pruned together; one group so a global threshold sees every weight."""
        return [targets]

    def calibrate(self, model: nn.Module, group: list[Target], batches: list[Batch],
                  input_key: str) -> None:
        """Collect whatever statistics `scores` needs (nothing for weight-only criteria)."""

    def run(
        self,
        model: nn.Module,
        sparsity: float,
        *,
        include_embeddings: bool = False,
        include_head: bool = False,
        batches: list[Batch] | None = None,
        input_key: str = "student",
        sync: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
        **_: Any,
    ) -> None:
        """Score, select and install masks, group by group.

        `sync` (the strategy's broadcast under DDP) makes every rank install rank 0's masks, so
        data-dependent criteria cannot make replicas diverge.
        """
        targets = prunable_linears(model, include_embeddings, include_head)
        if not targets:
            raise ConfigError("prune: the model has no prunable layers")
        if self.needs_calibration and not batches:
            raise ConfigError(f"prune.method={self.name} needs calibration batches "
                              "(prune.calibration_batches >= 1 and a train dataloader)")
        for group in self.groups(targets):
            self.calibrate(model, group, batches or [], input_key)
            with torch.no_grad():
                scores = {name: self.scores(module, name).float() for name, module in group}
            masks = masks_from_scores(scores, sparsity, self.scope)
            if sync is not None:
                masks = sync(masks)
            apply_masks(group, masks)


PRUNERS: Registry[type[Pruner]] = Registry("pruner", "prune.method")


def register_pruner(cls: type[Pruner]) -> type[Pruner]:
    """Make a `Pruner` subclass selectable as `prune.method=<cls.name>` (also from a plugin)."""
    return PRUNERS.add(cls.name, cls)


def checked_options(method: str, options: dict[str, Any], key: str = "prune") -> dict[str, Any]:
    """`options` with the method's declared defaults filled in (an undeclared key is a
    ConfigError). `key` prefixes the name in the message: ``prune`` for keywords,
    ``prune.options`` for the config."""
    return with_defaults(options, PRUNERS.get(method).options, key, f"prune.method={method!r}")


def get_pruner(method: str, scope: str | None = None, **options: Any) -> Pruner:
    cls = PRUNERS.get(method)
    accepted = set(inspect.signature(cls).parameters) - {"scope"}
    return cls(scope=scope, **{k: v for k, v in options.items() if k in accepted})


@register_pruner
class MagnitudePruner(Pruner):
    name = "magnitude"

    def scores(self, module: nn.Module, name: str) -> Tensor:
        # already-pruned weights score 0, so a re-prune at higher sparsity keeps them pruned
        return effective_weight(module).abs()


@register_pruner
class GradualPruner(MagnitudePruner):
    name = "gradual"
    gradual = True
    # the cubic schedule (see `PruningCallback`); in one shot they have no steps to act on
    options = {**MASK_OPTIONS, "initial_sparsity": 0.0, "begin_step": 0, "end_fraction": 0.75,
               "every": None}


@register_pruner
class WandaPruner(Pruner):
    """|W_ij| · ||X_j||_2 — a weight matters if it is large *or* multiplies large activations."""

    name = "wanda"
    scopes = ("row", "layer")
    needs_calibration = True
    options = {**MASK_OPTIONS, "sequential": True, "calibration_batches": 8}

    def __init__(self, scope: str | None = None, sequential: bool = True):
        super().__init__(scope)
        self.sequential = bool(sequential)
        self.input_norms: dict[str, Tensor] = {}

    def groups(self, targets: list[Target]) -> list[list[Target]]:
        """One group per transformer layer (consecutive in module order) when sequential."""
        if not self.sequential:
            return [targets]
        groups: list[list[Target]] = []
        last_key = object()
        for name, module in targets:
            parts = name.split(".")
            key = next((".".join(parts[: i + 1]) for i in range(len(parts) - 1)
                        if parts[i].isdigit()), name)
            if key != last_key:
                groups.append([])
                last_key = key
            groups[-1].append((name, module))
        return groups

    def calibrate(self, model: nn.Module, group: list[Target], batches: list[Batch],
                  input_key: str) -> None:
        sums: dict[str, Tensor] = {}
        token_mask: dict[str, Tensor | None] = {"mask": None}

        def hook_for(name: str):
            def hook(module, inputs, output):
                x = inputs[0].detach()
                mask = token_mask["mask"]
                if mask is not None and x.dim() == 3 and x.shape[:2] == mask.shape:
                    x = x[mask.bool()]  # padding tokens are not data
                else:
                    x = x.reshape(-1, x.shape[-1])
                sq = x.float().pow(2).sum(0)
                sums[name] = sums[name] + sq if name in sums else sq
            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in group
                   if isinstance(m, nn.Linear)]
        if not handles:
            return
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in batches:
                    ids, mask = _batch_inputs(batch, input_key)
                    ids, mask = ids.to(device), mask.to(device)
                    token_mask["mask"] = mask
                    model(ids, mask)
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
        self.input_norms.update({n: s.sqrt() for n, s in sums.items()})

    def scores(self, module: nn.Module, name: str) -> Tensor:
        weight = effective_weight(module).abs().float()
        if not isinstance(module, nn.Linear):
            return weight  # embeddings have no input activations: plain magnitude
        if name not in self.input_norms:
            raise ConfigError(f"prune.method=wanda: layer {name} saw no calibration input")
        return weight * self.input_norms[name].to(weight.device)[None, :]


@register_pruner
class StructuredPruner(Pruner):
    """Shares the registry and config path; the work is shape surgery, not masks."""

    name = "structured"
    scopes = STRUCTURED_SCOPES
    structural = True
    options = {"scope": None, "head_sparsity": None, "ffn_sparsity": None}

    def run(self, model: nn.Module, sparsity: float, *, head_sparsity: float | None = None,
            ffn_sparsity: float | None = None, **_: Any) -> dict:
        return structured_prune(
            model,
            sparsity if head_sparsity is None else head_sparsity,
            sparsity if ffn_sparsity is None else ffn_sparsity,
            scope=self.scope,
        )


def prune_model(
    model: nn.Module,
    method: str,
    sparsity: float,
    calibration_batches: Iterable[Batch] | None = None,
    input_key: str = "student",
    *,
    scope: str | None = None,
    num_calibration_batches: int | None = None,
    include_embeddings: bool = False,
    include_head: bool = False,
    permanent: bool = False,
    **kw: Any,
) -> dict:
    """One-shot pruning without a Trainer; returns `sparsity_report` of the result.

    Masks stay installed (`permanent=False`) so a following fine-tune keeps the zeros;
    `save_classifier` makes them permanent (or call `make_permanent`, or pass `permanent=True`).
    Extra keywords: ``sequential`` (wanda), ``head_sparsity`` / ``ffn_sparsity`` (structured);
    ``gradual`` takes its schedule options too, but with no steps it prunes to `sparsity` at once.
    """
    sparsity = check_fraction(sparsity, "prune.sparsity")
    checked_options(method, kw)
    pruner = get_pruner(method, scope, **kw)
    if pruner.gradual:
        # a schedule over zero training steps ends where it ends: the final sparsity, at once
        log.info("prune.method=%s without fine-tune steps: pruning to the final sparsity %.3f "
                 "in one shot (the schedule options have no steps to act on)", method, sparsity)
        kw = {k: v for k, v in kw.items() if k not in set(pruner.options) - set(MASK_OPTIONS)}
    batches = None
    if pruner.needs_calibration:
        if calibration_batches is None:
            raise ConfigError(f"prune.method={method} needs calibration_batches")
        if num_calibration_batches is not None:
            check_int(num_calibration_batches, "prune.calibration_batches", 1)
        # materialised once: sequential calibration iterates them once per layer
        batches = list(itertools.islice(calibration_batches, num_calibration_batches))
    result = pruner.run(model, sparsity, include_embeddings=include_embeddings,
                        include_head=include_head, batches=batches, input_key=input_key, **kw)
    if permanent:
        make_permanent(model)
    report = sparsity_report(model, include_embeddings, include_head)
    if isinstance(result, dict):
        report["structured"] = result
    return report

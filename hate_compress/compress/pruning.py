"""Pruning: unstructured (magnitude, gradual, Wanda) and structured (heads / FFN neurons).

Every unstructured method is the same three steps — score each weight, turn scores into a 0/1
mask at the asked sparsity (globally, per layer or per output row), install the mask — and only
the scoring differs. So a `Pruner` implements `scores()` and everything else (mask selection,
`torch.nn.utils.prune` reparametrisation, sparsity accounting, Lightning integration) is shared.

Masks are installed with `torch.nn.utils.prune` during fine-tuning, so the forward pre-hook keeps
pruned weights at exactly zero while the optimizer updates the rest (their gradient is zero
through the mask); `make_permanent` bakes them in before saving, because the reparametrised
state dict (``weight_orig`` / ``weight_mask``) is not what a fresh model expects.

Methods:

* ``magnitude`` — |W| (one-shot), one threshold over all prunable weights or one per layer.
* ``gradual`` — |W| on the cubic schedule of Zhu & Gupta (2017), updated during fine-tuning.
* ``wanda`` — |W_ij| · ||X_j||_2 (Sun et al., 2023), compared within each output row, with input
  norms from calibration batches; layers are calibrated sequentially so each layer sees the
  activations of the already-pruned layers before it, as in the reference implementation.
* ``structured`` — physically removes heads and FFN neurons (see `pruning_structured`).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from hate_compress.compress.masks import make_permanent
from hate_compress.compress.pruning_structured import (
    SCOPES as STRUCTURED_SCOPES,
)
from hate_compress.compress.pruning_structured import (
    structured_prune,
    transformer_blocks,
)
from hate_compress.errors import ConfigError
from hate_compress.registry import Registry, with_defaults

log = logging.getLogger(__name__)

__all__ = [
    "PRUNERS", "Pruner", "MagnitudePruner", "GradualPruner", "WandaPruner", "StructuredPruner",
    "PruningCallback", "prunable_linears", "prune_model", "make_permanent", "sparsity_report",
    "cubic_sparsity", "masks_from_scores", "apply_masks", "checked_options", "get_pruner",
    "register_pruner", "structured_prune", "transformer_blocks",
]

Target = tuple[str, nn.Module]
Batch = dict[str, Any]


# --------------------------------------------------------------------------- validation


def _check_fraction(value, key: str, *, low_open: bool = False, high_closed: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > 0 if low_open else value >= 0) and (value <= 1 if high_closed else value < 1)
    if not ok:
        interval = ("(0" if low_open else "[0") + (", 1]" if high_closed else ", 1)")
        raise ConfigError(f"{key}={value!r} is outside {interval}")
    return float(value)


def _check_int(value, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")
    return value


# --------------------------------------------------------------------------- targets


def prunable_linears(
    model: nn.Module, include_embeddings: bool = False, include_head: bool = False
) -> list[Target]:
    """The weight matrices pruning may touch, by qualified name, in module order.

    Embeddings are excluded by default because a zeroed embedding row silently deletes a token
    from the vocabulary; the head because it is tiny (nothing to gain) and every one of its
    weights feeds the decision directly. Both can be opted in.
    """
    head = getattr(model, "head", None)
    head_ids = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
    targets = []
    for name, module in model.named_modules():
        in_head = id(module) in head_ids
        in_embeddings = any(part.endswith("embeddings") for part in name.split(".")[:-1])
        if isinstance(module, nn.Embedding):
            if include_embeddings and not in_head:
                targets.append((name, module))
        elif isinstance(module, nn.Linear):
            if in_head:
                if include_head:
                    targets.append((name, module))
            elif in_embeddings:
                if include_embeddings:
                    targets.append((name, module))
            else:
                targets.append((name, module))
    return targets


def effective_weight(module: nn.Module) -> Tensor:
    """The weight the forward actually uses; `module.weight` is stale between an optimizer step
    and the next forward while the pruning reparametrisation is installed."""
    if hasattr(module, "weight_orig") and hasattr(module, "weight_mask"):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


# --------------------------------------------------------------------------- masks


def _lowest_k(scores: Tensor, k: int) -> Tensor:
    """1 = keep; exactly k zeros at the lowest scores (ties broken arbitrarily)."""
    mask = torch.ones_like(scores, dtype=torch.bool)
    if k > 0:
        mask.view(-1)[torch.topk(scores.flatten(), k, largest=False).indices] = False
    return mask


def _global_masks(scores: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """One threshold over all tensors, exact count: kthvalue then un-prune surplus ties."""
    total = sum(s.numel() for s in scores.values())
    k = round(sparsity * total)
    if k == 0:
        return {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
    threshold = torch.cat([s.flatten() for s in scores.values()]).kthvalue(k).values
    masks = {n: s > threshold for n, s in scores.items()}
    surplus = sum(int((~m).sum()) for m in masks.values()) - k
    for name, s in scores.items():
        if surplus <= 0:
            break
        ties = (s == threshold).flatten().nonzero().flatten()[:surplus]
        masks[name].view(-1)[ties] = True
        surplus -= ties.numel()
    return masks


def masks_from_scores(
    scores: dict[str, Tensor], sparsity: float, scope: str
) -> dict[str, Tensor]:
    """Boolean keep-masks: `global` (one threshold), `layer` (each tensor), `row` (each output)."""
    if scope == "global":
        return _global_masks(scores, sparsity)
    if scope == "layer":
        return {n: _lowest_k(s, round(sparsity * s.numel())) for n, s in scores.items()}
    if scope == "row":
        masks = {}
        for name, s in scores.items():
            rows = s.reshape(s.shape[0], -1)
            k = round(sparsity * rows.shape[1])
            mask = torch.ones_like(rows, dtype=torch.bool)
            if k > 0:
                mask.scatter_(1, torch.topk(rows, k, dim=1, largest=False).indices, False)
            masks[name] = mask.view_as(s)
        return masks
    raise ConfigError(f"prune.scope={scope!r} is not one of ['global', 'layer', 'row']")


def apply_masks(targets: Iterable[Target], masks: dict[str, Tensor]) -> None:
    """Install (or update in place) the `torch.nn.utils.prune` mask of each target's weight.

    Updating the existing buffer instead of stacking another `custom_from_mask` keeps one hook
    per module however many times the gradual schedule re-prunes, and keeps the Parameter the
    optimizer holds (`weight_orig`) the same object.
    """
    for name, module in targets:
        if name not in masks:
            continue
        weight = effective_weight(module)
        mask = masks[name].to(device=weight.device, dtype=weight.dtype)
        if hasattr(module, "weight_mask"):
            with torch.no_grad():
                module.weight_mask.copy_(mask)
                module.weight = module.weight_orig * module.weight_mask
        else:
            torch_prune.custom_from_mask(module, "weight", mask)


# --------------------------------------------------------------------------- schedule


def cubic_sparsity(
    step: int,
    total: int,
    initial: float,
    final: float,
    begin: int = 0,
    end_fraction: float = 0.75,
) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i - s_f)(1 - (t - t0)/(nΔt))³ for t0 <= t <= t0 + nΔt.

    ``nΔt`` spans from `begin` to ``round(end_fraction · total)``: pruning fast while the network
    is redundant and slowly near the target, then leaving the rest of training to recover.
    Before `begin` the value is `initial`, after the end it stays `final`.
    """
    end = round(_check_fraction(end_fraction, "prune.end_fraction", low_open=True,
                                high_closed=True) * total)
    if end <= begin:
        raise ConfigError(
            f"prune.begin_step={begin} is not before the end of pruning "
            f"(step {end} = prune.end_fraction={end_fraction} of {total} steps)"
        )
    return _cubic(step, begin, end, initial, final)


def _cubic(step: int, begin: int, end: int, initial: float, final: float) -> float:
    if step <= begin:
        return float(initial)
    if step >= end:
        return float(final)
    progress = (step - begin) / (end - begin)
    return float(final + (initial - final) * (1.0 - progress) ** 3)


# --------------------------------------------------------------------------- pruners


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


# --------------------------------------------------------------------------- one-shot API


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
    sparsity = _check_fraction(sparsity, "prune.sparsity")
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
            _check_int(num_calibration_batches, "prune.calibration_batches", 1)
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


def sparsity_report(
    model: nn.Module, include_embeddings: bool = False, include_head: bool = False
) -> dict:
    """Parameter counts and zero fractions, over the whole model and over the pruned layers.

    Works with masks installed or baked in; shared parameters are counted once.
    """
    total = nonzero = 0
    seen: set[int] = set()
    for module in model.modules():
        for pname, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            tensor = param.detach()
            base = pname[: -len("_orig")] if pname.endswith("_orig") else None
            if base is not None and hasattr(module, base + "_mask"):
                tensor = tensor * getattr(module, base + "_mask")
            total += tensor.numel()
            nonzero += int(torch.count_nonzero(tensor))
    per_layer = {}
    p_total = p_nonzero = 0
    for name, module in prunable_linears(model, include_embeddings, include_head):
        weight = effective_weight(module)
        nz = int(torch.count_nonzero(weight))
        per_layer[name] = 1.0 - nz / max(weight.numel(), 1)
        p_total += weight.numel()
        p_nonzero += nz
    return {
        "total_params": total,
        "nonzero_params": nonzero,
        "sparsity": 1.0 - nonzero / max(total, 1),
        "prunable_params": p_total,
        "prunable_nonzero": p_nonzero,
        "prunable_sparsity": 1.0 - p_nonzero / max(p_total, 1),
        "per_layer": per_layer,
    }


# --------------------------------------------------------------------------- Lightning


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
        self.sparsity = _check_fraction(sparsity, "prune.sparsity")
        opts = checked_options(method, options)
        self.pruner = get_pruner(method, **opts)
        self.initial_sparsity = self.begin_step = self.end_fraction = self.every = None
        if self.pruner.gradual:
            self.initial_sparsity = _check_fraction(opts["initial_sparsity"],
                                                    "prune.initial_sparsity")
            if self.initial_sparsity > self.sparsity:
                raise ConfigError(f"prune.initial_sparsity={opts['initial_sparsity']} is above "
                                  f"prune.sparsity={sparsity}")
            self.begin_step = _check_int(opts["begin_step"], "prune.begin_step", 0)
            self.end_fraction = _check_fraction(opts["end_fraction"], "prune.end_fraction",
                                                low_open=True, high_closed=True)
            every = opts["every"]
            self.every = None if every is None else _check_int(every, "prune.every", 1)
        self.calibration_batches = (
            _check_int(opts["calibration_batches"], "prune.calibration_batches", 1)
            if self.pruner.needs_calibration else None)
        self.head_sparsity, self.ffn_sparsity = (
            None if opts.get(k) is None else _check_fraction(opts[k], f"prune.{k}")
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
            target = _cubic(step, self.begin_step, end, self.initial_sparsity, self.sparsity)
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

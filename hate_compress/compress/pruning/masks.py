"""Which weights pruning may touch, turning importance scores into 0/1 masks, installing them
with `torch.nn.utils.prune`, baking them in, and counting what is left.

Masks are installed with `torch.nn.utils.prune` during fine-tuning, so the forward pre-hook keeps
pruned weights at exactly zero while the optimizer updates the rest (their gradient is zero
through the mask); `make_permanent` bakes them in before saving, because the reparametrised
state dict (``weight_orig`` / ``weight_mask``) is not what a fresh model expects.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from hate_compress.errors import ConfigError

Target = tuple[str, nn.Module]


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


def make_permanent(model: nn.Module) -> int:
    """Bake every `torch.nn.utils.prune` mask into its weight; returns how many were removed.

    A reparametrised module holds ``weight_orig`` + ``weight_mask`` instead of ``weight``: its
    state dict does not load into a fresh model, it is twice the size on disk, and modules that
    swap weights (quantization) cannot assign to a weight recomputed by the mask hook.
    """
    removed = 0
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
                removed += 1
    return removed


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

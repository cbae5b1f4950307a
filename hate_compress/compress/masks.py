"""Baking `torch.nn.utils.prune` masks into plain weights.

Its own module because both kinds of pruning (masks in `pruning`, shape surgery in
`pruning_structured`) and the artifact writer need it, and `pruning` imports
`pruning_structured`.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune as torch_prune


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

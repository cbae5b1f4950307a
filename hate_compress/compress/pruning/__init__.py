"""Pruning: unstructured (magnitude, gradual, Wanda) and structured (heads / FFN neurons).

* `masks` — which weights may be pruned, scores -> 0/1 masks, installing and baking them in,
  `sparsity_report`;
* `methods` — the `Pruner` classes and their registry (`prune.method`), `prune_model`;
* `schedule` — the cubic schedule of gradual pruning;
* `structured` — removing whole heads and FFN neurons, and its restorer for reloading;
* `callback` — `PruningCallback`, pruning inside a Lightning fit.

Importing the package registers every built-in pruner and the structured-pruning restorer; the
names below are the API a plugin uses (docs/plugins.md).
"""

from hate_compress.compress.pruning.callback import PruningCallback
from hate_compress.compress.pruning.masks import (
    apply_masks,
    effective_weight,
    make_permanent,
    masks_from_scores,
    prunable_linears,
    sparsity_report,
)
from hate_compress.compress.pruning.methods import (
    MASK_OPTIONS,
    PRUNERS,
    GradualPruner,
    MagnitudePruner,
    Pruner,
    StructuredPruner,
    WandaPruner,
    checked_options,
    get_pruner,
    prune_model,
    register_pruner,
)
from hate_compress.compress.pruning.schedule import cubic_sparsity
from hate_compress.compress.pruning.structured import structured_prune, transformer_blocks

__all__ = [
    "MASK_OPTIONS", "PRUNERS", "Pruner", "MagnitudePruner", "GradualPruner", "WandaPruner",
    "StructuredPruner", "PruningCallback", "prunable_linears", "prune_model", "make_permanent",
    "sparsity_report", "cubic_sparsity", "masks_from_scores", "apply_masks", "checked_options",
    "get_pruner", "register_pruner", "structured_prune", "transformer_blocks", "effective_weight",
]

"""Structured pruning: physically remove attention heads and FFN neurons.

Unstructured sparsity only pays off with sparse kernels, which CPU inference of small encoders
does not have; removing whole heads and intermediate neurons shrinks the dense matrices, so the
parameter count, the saved file and the latency all drop with plain PyTorch.

Importance is data-free (weights only), so `prune_model(model, "structured", ...)` works in a
notebook without a dataloader and is deterministic across ranks:

* head h: ``||W_V[h]||_F * ||W_O[:, h]||_F``. A head's contribution to the residual stream is
  ``W_O[:, h] · Σ_j a_ij (W_V[h] x_j + b)`` with attention weights ``a_i·`` forming a convex
  combination, so its size is bounded by the product of those two norms; query and key only
  decide *where* the head looks, not how much it can write.
* FFN neuron i: ``||W_in[i, :]||_2 * ||W_out[:, i]||_2`` — the same bound through the activation.

Gradient-based head importance (Michel et al., 2019) ranks heads better but needs labelled
batches and a backward pass per head mask; the weight bound is the cheap, reproducible default
and the usual starting point before the KD fine-tune that follows pruning anyway.

The encoder's HF config is left untouched (it describes the *unpruned* architecture a fresh
model is built from); the kept heads and FFN sizes per layer are recorded as a compression step,
and the registered restorer shrinks a freshly built model to the same shapes before the
safetensors weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hate_compress.compress.pruning.masks import make_permanent
from hate_compress.compression_steps import Restorer, record_compression, register_restorer
from hate_compress.errors import ConfigError, ModelLoadError

KIND = "structured_prune"
SCOPES = ("layer", "global")

# attribute names the attention modules of supported families read at forward time
_HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads", "num_heads")
_HEAD_DIM_ATTRS = ("attention_head_size", "head_dim")


@dataclass(frozen=True)
class Layout:
    """Where one transformer family keeps its attention and FFN projections inside a layer."""

    family: str
    attn: str  # module holding the head-count attributes
    q: str
    k: str
    v: str
    o: str  # attention output projection (input features = concatenated heads)
    ffn_in: str
    ffn_out: str

    def matches(self, module: nn.Module) -> bool:
        for path in (self.q, self.k, self.v, self.o, self.ffn_in, self.ffn_out):
            try:
                if not isinstance(module.get_submodule(path), nn.Linear):
                    return False
            except AttributeError:
                return False
        return True


LAYOUTS = (
    # BERT, RoBERTa, XLM-R, ELECTRA, (g)BERT-style encoders
    Layout("bert", "attention.self", "attention.self.query", "attention.self.key",
           "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"),
    Layout("distilbert", "attention", "attention.q_lin", "attention.k_lin", "attention.v_lin",
           "attention.out_lin", "ffn.lin1", "ffn.lin2"),
)


@dataclass
class Block:
    """One transformer layer plus the layout that says where its projections live."""

    path: str
    module: nn.Module
    layout: Layout

    def get(self, role: str) -> nn.Module:
        return self.module.get_submodule(getattr(self.layout, role))

    def set(self, role: str, new: nn.Module) -> None:
        parent_path, _, attr = getattr(self.layout, role).rpartition(".")
        setattr(self.module.get_submodule(parent_path) if parent_path else self.module, attr, new)

    @property
    def attention(self) -> nn.Module:
        return self.get("attn")

    @property
    def head_size(self) -> int:
        for attr in _HEAD_DIM_ATTRS:
            if hasattr(self.attention, attr):
                return int(getattr(self.attention, attr))
        raise ConfigError(f"structured pruning: cannot find the head size of {self.path}")

    @property
    def num_heads(self) -> int:
        return self.get("o").in_features // self.head_size

    @property
    def ffn_size(self) -> int:
        return self.get("ffn_in").out_features


def transformer_blocks(model: nn.Module) -> list[Block]:
    """The encoder's transformer layers in forward order (the same order on every rebuild)."""
    root = getattr(model, "encoder", model)
    blocks = []
    for name, module in root.named_modules():
        for layout in LAYOUTS:
            if layout.matches(module):
                blocks.append(Block(name, module, layout))
                break
    if not blocks:
        families = ", ".join(layout.family for layout in LAYOUTS)
        raise ConfigError(
            f"prune.method=structured: no transformer layers of a supported family ({families}) "
            f"found in {type(root).__name__}"
        )
    return blocks


# --------------------------------------------------------------------------- importance


def _weight(linear: nn.Linear) -> Tensor:
    """Effective (masked) weight: structured pruning may follow an unstructured step."""
    if hasattr(linear, "weight_orig") and hasattr(linear, "weight_mask"):
        return (linear.weight_orig * linear.weight_mask).detach()
    return linear.weight.detach()


def head_importance(block: Block) -> Tensor:
    d = block.head_size
    v = _weight(block.get("v")).float().view(-1, d, block.get("v").in_features)
    o = _weight(block.get("o")).float()
    o = o.view(o.shape[0], -1, d).transpose(0, 1)  # (heads, out, d)
    return v.flatten(1).norm(dim=1) * o.flatten(1).norm(dim=1)


def neuron_importance(block: Block) -> Tensor:
    w_in = _weight(block.get("ffn_in")).float()
    w_out = _weight(block.get("ffn_out")).float()
    return w_in.norm(dim=1) * w_out.norm(dim=0)


def _select_layer(scores: list[Tensor], ratio: float) -> list[list[int]]:
    """Per layer: drop round(ratio·n) lowest, but always keep one (a layer needs >= 1 unit)."""
    kept = []
    for s in scores:
        n_drop = min(round(ratio * s.numel()), s.numel() - 1)
        keep = torch.ones(s.numel(), dtype=torch.bool)
        if n_drop > 0:
            keep[torch.topk(s, n_drop, largest=False).indices] = False
        kept.append(keep.nonzero().flatten().tolist())
    return kept


def _select_global(scores: list[Tensor], ratio: float) -> list[list[int]]:
    """One ranking across layers, so weak layers lose more; still never empties a layer."""
    total = sum(s.numel() for s in scores)
    n_drop = round(ratio * total)
    flat = torch.cat(scores)
    owner = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(scores)])
    local = torch.cat([torch.arange(s.numel()) for s in scores])
    left = [s.numel() for s in scores]
    keep = [torch.ones(s.numel(), dtype=torch.bool) for s in scores]
    for j in torch.argsort(flat, stable=True).tolist():
        if n_drop == 0:
            break
        layer = int(owner[j])
        if left[layer] > 1:
            keep[layer][int(local[j])] = False
            left[layer] -= 1
            n_drop -= 1
    return [k.nonzero().flatten().tolist() for k in keep]


# --------------------------------------------------------------------------- surgery


def _slice_linear(linear: nn.Linear, dim: int, index: Tensor) -> nn.Linear:
    make_permanent(linear)  # slicing a reparametrised weight would drop its unstructured mask
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device))
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            bias = linear.bias.detach()
            new.bias.copy_(bias.index_select(0, index.to(bias.device)) if dim == 0 else bias)
    new.weight.requires_grad_(linear.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    new.train(linear.training)
    return new


def prune_heads(block: Block, keep: list[int]) -> None:
    """Keep only the listed heads: slice q/k/v out-features and o in-features, fix head counts."""
    d, heads = block.head_size, block.num_heads
    if not keep or any(h < 0 or h >= heads for h in keep):
        raise ValueError(f"{block.path}: invalid heads to keep {keep} (layer has {heads})")
    if len(keep) == heads:
        return
    index = torch.cat([torch.arange(h * d, (h + 1) * d) for h in sorted(keep)])
    for role in ("q", "k", "v"):
        block.set(role, _slice_linear(block.get(role), 0, index))
    block.set("o", _slice_linear(block.get("o"), 1, index))
    attn = block.attention
    for attr in _HEAD_COUNT_ATTRS:
        if hasattr(attn, attr):
            setattr(attn, attr, len(keep))
    if hasattr(attn, "all_head_size"):
        attn.all_head_size = len(keep) * d


def prune_ffn(block: Block, keep: list[int]) -> None:
    size = block.ffn_size
    if not keep or any(i < 0 or i >= size for i in keep):
        raise ValueError(f"{block.path}: invalid FFN neurons to keep (layer has {size})")
    if len(keep) == size:
        return
    index = torch.tensor(sorted(keep), dtype=torch.long)
    block.set("ffn_in", _slice_linear(block.get("ffn_in"), 0, index))
    block.set("ffn_out", _slice_linear(block.get("ffn_out"), 1, index))


def _check_ratio(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{key}={value!r} is outside [0, 1)")
    return float(value)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def structured_prune(
    model: nn.Module, head_sparsity: float, ffn_sparsity: float, scope: str = "layer"
) -> dict:
    """Remove the least important heads and FFN neurons and record the step for reloading."""
    head_sparsity = _check_ratio(head_sparsity, "prune.head_sparsity")
    ffn_sparsity = _check_ratio(ffn_sparsity, "prune.ffn_sparsity")
    if scope not in SCOPES:
        raise ConfigError(f"prune.scope={scope!r} is not one of {list(SCOPES)} for structured")
    blocks = transformer_blocks(model)
    before = count_params(model)
    select = _select_layer if scope == "layer" else _select_global
    with torch.no_grad():
        head_keep = select([head_importance(b) for b in blocks], head_sparsity)
        ffn_keep = select([neuron_importance(b) for b in blocks], ffn_sparsity)
    layers = []
    for block, heads, neurons in zip(blocks, head_keep, ffn_keep):
        layers.append({"path": block.path, "heads": heads, "num_heads_before": block.num_heads,
                       "ffn": len(neurons), "ffn_before": block.ffn_size})
        prune_heads(block, heads)
        prune_ffn(block, neurons)
    record_compression(model, {"kind": KIND, "scope": scope, "head_sparsity": head_sparsity,
                               "ffn_sparsity": ffn_sparsity, "layers": layers})
    return {"params_before": before, "params_after": count_params(model), "layers": layers}


def rebuild(model: nn.Module, step: dict) -> None:
    """Shrink a freshly built model to the recorded shapes (weights are loaded afterwards)."""
    blocks = {b.path: b for b in transformer_blocks(model)}
    for layer in step["layers"]:
        block = blocks.get(layer["path"])
        if block is None:
            raise ModelLoadError(f"structured_prune step names a missing layer {layer['path']!r}")
        try:
            prune_heads(block, list(layer["heads"]))
            prune_ffn(block, list(range(int(layer["ffn"]))))
        except ValueError as exc:
            raise ModelLoadError(f"structured_prune step does not fit the model: {exc}") from None


register_restorer(KIND, Restorer(rebuild=rebuild))

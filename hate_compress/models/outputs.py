"""What a classifier forward returns: the contract between models and everything that uses them.

Loss terms, measurements and exports never see a Hugging Face ``ModelOutput`` or a backbone:
they see this small dataclass. That keeps every loss term testable on hand-made tensors, and lets
a teacher whose outputs come from an on-disk cache (no token-level hidden states, no attentions)
share the same code path as a live teacher — a term simply finds the fields it declared in
``LossTerm.needs`` filled in. It lives with the models (not with `kd`) because the models produce it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ModelOutputs:
    """What a classifier forward hands to the losses.

    ``attention_mask`` travels with the outputs (rather than living once on the batch) because a
    teacher with its own tokenizer has its own padding; pooling and masking must use each model's
    mask. ``hidden_states`` follows the Hugging Face layout (index 0 = embeddings, index ``l`` =
    output of layer ``l``) so layer numbers in configs mean the same thing as in HF docs.
    """

    logits: Tensor  # (B, C)
    attention_mask: Tensor  # (B, S) of this model's own tokenization
    pooled: Tensor | None = None  # (B, H) the representation fed to the head
    hidden_states: tuple[Tensor, ...] | None = None  # len L+1, [0] = embeddings, each (B, S, H)
    attentions: tuple[Tensor, ...] | None = None  # len L, each (B, heads, S, S)

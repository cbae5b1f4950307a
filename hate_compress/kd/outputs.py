"""The contract between classifier forwards and the loss terms.

Loss terms never see a Hugging Face ``ModelOutput`` or a backbone: they see these two small
dataclasses. That keeps every term testable on hand-made tensors, and lets a teacher whose
logits come from an on-disk cache (no hidden states, no attentions) share the same code path as
a live teacher — a term simply finds the fields it declared in ``LossTerm.needs`` filled in.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

TASKS = ("binary", "multiclass", "multilabel")


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


@dataclass
class LossContext:
    """Everything one training step knows that a loss term might use.

    ``teacher`` is ``None`` when no teacher exists (teacher fine-tuning, ``kd=none``); terms that
    need one fail loudly instead of silently degrading. ``shared_tokenizer`` is a property of the
    run, not of the tensors: equal sequence lengths can happen by accident with different
    vocabularies, so token-aligned terms must be told, not guess.
    """

    student: ModelOutputs
    teacher: ModelOutputs | None
    labels: Tensor  # LongTensor (B,) single-label, FloatTensor (B, C) multilabel
    task: str  # "binary" | "multiclass" | "multilabel"   (binary = 2-class softmax)
    shared_tokenizer: bool

"""What one training step hands to the loss terms (`LossContext`).

The model outputs inside it are `hate_compress.models.outputs.ModelOutputs`; this module only
adds what the loss needs beyond them (labels, task, whether the tokenizers are shared).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from hate_compress.models.outputs import ModelOutputs

TASKS = ("binary", "multiclass", "multilabel")


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

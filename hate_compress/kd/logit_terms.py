"""The label and response terms: `ce` (hard labels) and `logit` (Hinton's soft targets).

Both read logits only, so a cached teacher (or a text-level one) is enough for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hate_compress.errors import ConfigError
from hate_compress.kd.context import LossContext
from hate_compress.kd.term_base import (
    LossTerm,
    TermBuildContext,
    as_number,
    construct,
    need_multilabel,
    register_term,
)


@register_term("ce")
class CeTerm(LossTerm):
    """Hard-label loss; class weights counter the label skew typical of hate-speech corpora.

    ``class_weights`` is a buffer so it follows ``.to(device)`` with the rest of the loss. For
    multilabel it is BCE's ``pos_weight`` (weights the positives of each label), which is the
    knob that matters when a label is rare.
    """

    def __init__(self, class_weights: Tensor | Sequence[float] | None = None):
        super().__init__()
        w = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", w)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], build: TermBuildContext) -> LossTerm:
        return construct(cls, cfg, {"class_weights": ("class_weights", build.class_weights)})

    def forward(self, ctx: LossContext) -> Tensor:
        s = ctx.student.logits.float()
        w = self.class_weights
        if ctx.task == "multilabel":
            return F.binary_cross_entropy_with_logits(s, ctx.labels.float(), pos_weight=w)
        return F.cross_entropy(s, ctx.labels.long(), weight=w)

    def per_label(self, ctx: LossContext) -> Tensor:
        need_multilabel(ctx, self.name)
        s = ctx.student.logits.float()
        per = F.binary_cross_entropy_with_logits(
            s, ctx.labels.float(), pos_weight=self.class_weights, reduction="none"
        )
        return per.mean(0)


@register_term("logit")
class LogitTerm(LossTerm):
    """Soft-target loss (Hinton et al.) — the term that carries the teacher's dark knowledge.

    The ``T**2`` factor keeps its gradient scale independent of the temperature, so ``kd.alpha``
    means the same thing at T=1 and T=8. Multilabel uses per-label BCE against the teacher's
    tempered sigmoids, because labels are independent and a softmax across them would invent a
    competition between e.g. "insult" and "threat". Only ``teacher_logits`` is needed, so a
    cached teacher is enough.
    """

    needs = frozenset({"teacher_logits"})

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = as_number(temperature, "kd.temperature")
        if not self.temperature > 0:
            raise ConfigError(f"kd.temperature={temperature} must be > 0")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], build: TermBuildContext) -> LossTerm:
        # One source of truth: the temperature always comes from kd.temperature (default 1.0).
        temperature = 1.0 if build.temperature is None else build.temperature
        return construct(cls, cfg, {"temperature": ("kd.temperature", temperature)})

    def _pair(self, ctx: LossContext) -> tuple[Tensor, Tensor]:
        s = ctx.student.logits.float()
        t = self._teacher(ctx).logits.detach().float()
        if s.shape != t.shape:
            raise ValueError(f"student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} differ in shape")
        return s / self.temperature, t / self.temperature

    def forward(self, ctx: LossContext) -> Tensor:
        if ctx.task == "multilabel":
            return self.per_label(ctx).mean()
        s, t = self._pair(ctx)
        kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
        return self.temperature**2 * kl

    def per_label(self, ctx: LossContext) -> Tensor:
        need_multilabel(ctx, self.name)
        s, t = self._pair(ctx)
        per = F.binary_cross_entropy_with_logits(s, torch.sigmoid(t), reduction="none")
        return self.temperature**2 * per.mean(0)

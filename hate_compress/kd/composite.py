"""The training objective: the registered terms weighed into one loss (`CompositeLoss`), built
from the Hydra `kd` group (`build_composite_loss`), with every config check up front.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

# the built-in terms register themselves on import: `kd.terms` can name them from here on
import hate_compress.kd.layer_terms  # noqa: F401
import hate_compress.kd.logit_terms  # noqa: F401
from hate_compress.errors import ConfigError
from hate_compress.kd.context import TASKS, LossContext
from hate_compress.kd.term_base import (
    TERMS,
    LossTerm,
    TermBuildContext,
    as_number,
    as_unit,
)

#: The two terms whose balance is set by ``kd.alpha`` rather than by a per-term weight.
HARD, SOFT = "ce", "logit"


class CompositeLoss(nn.Module):
    """The training objective: hard and soft losses balanced by ``alpha``, plus weighted extras.

    ``alpha`` is the weight of the *teacher / soft* side (sources disagree; this is our
    definition)::

        L = alpha * logit + (1 - alpha) * ce + sum_k w_k * term_k      (k: every other term)

    with ``w_k = weights.get(k, 1.0)``. Without a ``logit`` term (``kd=none``, teacher training)
    ``L = ce + sum_k w_k * term_k`` and alpha is ignored. Extras are added on top rather than
    folded into alpha so that turning on ``hidden`` does not silently weaken the logit signal.

    ``per_label_alpha`` (multilabel only) replaces ``alpha`` with one value per label, because a
    teacher can be excellent on one label and poor on another::

        L = mean_j [ a_j * logit_j + (1 - a_j) * ce_j ] + sum_k w_k * term_k

    ``forward`` returns ``(total, {term: unweighted value, detached})`` so every term can be
    logged on its own scale each step.
    """

    def __init__(
        self,
        terms: Mapping[str, LossTerm],
        alpha: float = 0.5,
        weights: Mapping[str, float] | None = None,
        per_label_alpha: Sequence[float] | None = None,
    ):
        super().__init__()
        if HARD not in terms:
            raise ValueError(f"CompositeLoss needs a {HARD!r} term; got {sorted(terms)}")
        self.alpha = as_unit(alpha, "kd.alpha")
        self.weights: dict[str, float] = {}
        for k, w in dict(weights or {}).items():
            if k in (HARD, SOFT):
                raise ConfigError(f"kd.terms.{k}.weight is not used: {HARD} and {SOFT} are balanced by kd.alpha")
            if k not in terms:
                raise ConfigError(f"kd.terms.{k}.weight is set but there is no {k!r} term")
            w = as_number(w, f"kd.terms.{k}.weight")
            if not (math.isfinite(w) and w >= 0):
                raise ConfigError(f"kd.terms.{k}.weight={w} must be a finite number >= 0")
            self.weights[k] = w
        pla = None
        if per_label_alpha is not None:
            if SOFT not in terms:
                raise ConfigError(f"kd.per_label_alpha is set but there is no {SOFT!r} term to balance")
            values = list(per_label_alpha)
            if not values:
                raise ConfigError("kd.per_label_alpha is empty; use null to use kd.alpha")
            pla = torch.tensor([as_unit(a, f"kd.per_label_alpha[{j}]") for j, a in enumerate(values)])
        self.register_buffer("per_label_alpha", pla)
        self.terms = nn.ModuleDict(dict(terms))

    @property
    def needs(self) -> frozenset[str]:
        """Union of what the terms need: drives output_hidden_states / live-vs-cached teacher."""
        return frozenset().union(*(t.needs for t in self.terms.values()))

    def forward(self, ctx: LossContext) -> tuple[Tensor, dict[str, Tensor]]:
        values: dict[str, Tensor] = {}
        if self.per_label_alpha is not None:
            if ctx.task != "multilabel":
                raise ConfigError(f"kd.per_label_alpha only applies to multilabel tasks, not {ctx.task}")
            hard, soft = self.terms[HARD].per_label(ctx), self.terms[SOFT].per_label(ctx)
            a = self.per_label_alpha
            if a.numel() != hard.numel():
                raise ConfigError(f"kd.per_label_alpha has {a.numel()} values but the task has {hard.numel()} labels")
            total = (a * soft + (1 - a) * hard).mean()
            values[HARD], values[SOFT] = hard.mean(), soft.mean()
        elif SOFT in self.terms:
            values[HARD], values[SOFT] = self.terms[HARD](ctx), self.terms[SOFT](ctx)
            total = self.alpha * values[SOFT] + (1 - self.alpha) * values[HARD]
        else:
            values[HARD] = total = self.terms[HARD](ctx)
        for name, term in self.terms.items():
            if name in (HARD, SOFT):
                continue
            values[name] = term(ctx)
            total = total + self.weights.get(name, 1.0) * values[name]
        return total, {k: v.detach() for k, v in values.items()}


def build_composite_loss(
    kd_cfg: Mapping[str, Any],
    *,
    task: str,
    num_labels: int,
    class_weights: Tensor | Sequence[float] | None = None,
    student_dims: tuple[int, int],
    teacher_dims: tuple[int, int] | None = None,
    shared_tokenizer: bool | None = None,
) -> CompositeLoss:
    """Build the objective from the Hydra ``kd`` group (a plain mapping).

    ``ce`` is always added (with ``class_weights``) because every stage trains on labels; users
    list only the extra terms. All validation happens here, before any model is loaded, so a bad
    config costs seconds rather than a failed job. ``shared_tokenizer`` is optional; when given
    (False), attention matching with ``on_mismatch=error`` is rejected right away.
    """
    if task not in TASKS:
        raise ConfigError(f"task={task!r} must be one of {', '.join(TASKS)}")
    if not isinstance(kd_cfg, Mapping):
        raise ConfigError(f"kd must be a mapping, got {type(kd_cfg).__name__}")
    terms_cfg = kd_cfg.get("terms") or {}
    if not isinstance(terms_cfg, Mapping):
        raise ConfigError("kd.terms must be a mapping of term name -> options")
    temperature = kd_cfg.get("temperature")
    if temperature is not None:
        temperature = as_number(temperature, "kd.temperature")
        if not temperature > 0:
            raise ConfigError(f"kd.temperature={temperature} must be > 0")
    class_weights = class_weights_tensor(class_weights, num_labels)
    per_label_alpha = kd_cfg.get("per_label_alpha")
    if per_label_alpha is not None:
        if task != "multilabel":
            raise ConfigError(f"kd.per_label_alpha only applies to multilabel tasks, not {task}")
        if isinstance(per_label_alpha, (str, bytes)) or not isinstance(per_label_alpha, Sequence):
            raise ConfigError(f"kd.per_label_alpha must be a list of {num_labels} numbers in [0, 1]")
        if len(per_label_alpha) != num_labels:
            raise ConfigError(f"kd.per_label_alpha has {len(per_label_alpha)} values but the task has {num_labels} labels")

    build = TermBuildContext(task, num_labels, class_weights, tuple(student_dims),
                             None if teacher_dims is None else tuple(teacher_dims), temperature, shared_tokenizer)
    terms: dict[str, LossTerm] = {}
    weights: dict[str, float] = {}
    for name in [HARD, *(n for n in terms_cfg if n != HARD)]:
        opts = terms_cfg.get(name) or {}
        if not isinstance(opts, Mapping):
            raise ConfigError(f"kd.terms.{name} must be a mapping of options, got {opts!r}")
        opts = dict(opts)
        cls = TERMS.get(name)
        if "weight" in opts:
            weights[name] = opts.pop("weight")  # CompositeLoss validates (and rejects it on ce/logit)
        if cls.needs and teacher_dims is None:
            raise ConfigError(
                f"kd.terms.{name} needs a teacher ({', '.join(sorted(cls.needs))}) but this stage has none; "
                "remove it or use kd=none"
            )
        terms[name] = cls.from_config(opts, build)
    return CompositeLoss(terms, alpha=kd_cfg.get("alpha", 0.5), weights=weights, per_label_alpha=per_label_alpha)


def class_weights_tensor(w: Tensor | Sequence[float] | None, num_labels: int) -> Tensor | None:
    if w is None:
        return None
    try:
        w = torch.as_tensor(w, dtype=torch.float32).detach().clone()
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"class_weights={w!r} must be a list of {num_labels} numbers") from None
    if w.shape != (num_labels,):
        raise ConfigError(f"class_weights has shape {tuple(w.shape)}; expected ({num_labels},)")
    if not (torch.isfinite(w).all() and (w >= 0).all()):
        raise ConfigError("class_weights must be finite and >= 0")
    return w

"""The loss-term contract: what a term declares (`needs`), how it is registered and built.

`LossTerm` subclasses registered with `register_term` are what `kd.terms` names; the built-in
ones live in `logit_terms` (ce, logit) and `layer_terms` (hidden, attention) and the objective
that weighs them in `composite`. `hate_compress.kd.terms` re-exports all of it and holds the
guide to writing your own term.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn

from hate_compress.errors import ConfigError
from hate_compress.kd.context import LossContext
from hate_compress.models.outputs import ModelOutputs
from hate_compress.registry import Registry

#: Everything a term may ask for. Any of these implies a teacher. ``pooled_hidden_states`` is
#: ``hidden_states`` compared per sequence (pooled, as the term's ``pooling`` attribute says),
#: not token by token; which of these the teacher-output cache can serve is
#: `hate_compress.kd.teacher.CACHEABLE_NEEDS`.
NEEDS = frozenset({"teacher_logits", "teacher_pooled", "hidden_states", "pooled_hidden_states",
                   "attentions"})
#: The needs that make a model return its per-layer hidden states.
HIDDEN_NEEDS = frozenset({"hidden_states", "pooled_hidden_states"})

TERMS: Registry[type[LossTerm]] = Registry("loss term", "kd.terms.{name}")

_T = TypeVar("_T", bound="type[LossTerm]")


def register_term(name: str) -> Callable[[_T], _T]:
    """Make a ``LossTerm`` subclass addressable as ``kd.terms.<name>`` in configs."""

    def decorate(cls: _T) -> _T:
        if not (isinstance(cls, type) and issubclass(cls, LossTerm)):
            raise TypeError(f"@register_term({name!r}) must decorate a LossTerm subclass")
        bad = set(cls.needs) - NEEDS
        if bad:
            raise TypeError(f"{cls.__qualname__}.needs has unknown item(s) {sorted(bad)}; allowed: {sorted(NEEDS)}")
        TERMS.add(name, cls)
        cls.name = name
        return cls

    return decorate


def build_term(name: str, **kwargs: Any) -> LossTerm:
    """Instantiate a registered term, turning config typos into one-line ``ConfigError``s."""
    cls = TERMS.get(name)
    bind_options(cls, kwargs, f"kd.terms.{name}")
    return cls(**kwargs)


@dataclass(frozen=True)
class TermBuildContext:
    """Run facts a term may need at construction but a user should never have to type."""

    task: str
    num_labels: int
    class_weights: Tensor | None
    student_dims: tuple[int, int]  # (layers, hidden)
    teacher_dims: tuple[int, int] | None
    temperature: float | None
    shared_tokenizer: bool | None = None  # None = not known until the first batch


class LossTerm(nn.Module):
    """One scalar loss on a ``LossContext``.

    Terms return *unweighted* values; weighting is the composite's job so logs show every term on
    its own scale. A term that holds parameters (e.g. a projection) is optimised with the student
    because the training module optimises the loss module too, yet it is never exported because
    it is not part of the student.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], build: TermBuildContext) -> LossTerm:
        """Build from the term's YAML options; override to inject run facts (model sizes...)."""
        return construct(cls, cfg, {})

    def forward(self, ctx: LossContext) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def per_label(self, ctx: LossContext) -> Tensor:
        """Per-label loss, shape (C,), whose mean equals ``forward`` — only for per-label alpha."""
        raise NotImplementedError(f"loss term {self.name!r} has no per-label form")

    def _teacher(self, ctx: LossContext) -> ModelOutputs:
        if ctx.teacher is None:
            raise ValueError(f"loss term {self.name!r} needs teacher outputs but LossContext.teacher is None")
        return ctx.teacher


# ---------------------------------------------------------------- helpers shared by terms


def bind_options(cls: type[LossTerm], kwargs: Mapping[str, Any], key: str) -> None:
    sig = inspect.signature(cls)
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        accepted = ", ".join(p for p in sig.parameters if p not in ("args", "kwargs")) or "none"
        raise ConfigError(f"{key}: {e}; accepted options: {accepted}") from None


def construct(cls: type[LossTerm], cfg: Mapping[str, Any], injected: Mapping[str, tuple[str, Any]]) -> LossTerm:
    """Call ``cls(**cfg, **injected)``; an injected value may not also be set in YAML (one source of truth)."""
    key = f"kd.terms.{cls.name}"
    for k, (source, _) in injected.items():
        if k in cfg:
            raise ConfigError(f"{key}.{k} cannot be set here; it comes from {source}")
    kwargs = {**cfg, **{k: v for k, (_, v) in injected.items()}}
    bind_options(cls, kwargs, key)
    return cls(**kwargs)


def require_teacher_dims(build: TermBuildContext, name: str) -> tuple[int, int]:
    if build.teacher_dims is None:
        raise ConfigError(f"kd.terms.{name} needs a teacher but this stage has none; remove it or use kd=none")
    return build.teacher_dims


def as_number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} must be a number")
    return float(value)


def as_unit(value: Any, key: str) -> float:
    value = as_number(value, key)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ConfigError(f"{key}={value} is outside [0, 1]")
    return value


def as_choice(value: Any, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} must be one of {', '.join(allowed)}")
    return value


def need_multilabel(ctx: LossContext, name: str) -> None:
    if ctx.task != "multilabel":
        raise ValueError(f"loss term {name!r}: per_label is only defined for multilabel tasks, not {ctx.task}")

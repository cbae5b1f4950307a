"""Distillation losses as a registry of small, independently testable terms.

Why a registry (torchdistill-style): every compression recipe is "hard-label loss + some soft
losses", and the research churn is in the soft losses. Making each one a registered ``LossTerm``
whose options come straight from the Hydra ``kd`` group means a new idea is one small class plus
one YAML file, with no edits to the training loop. Why ``needs``: the training loop must know
before the first batch whether to ask the models for hidden states / attentions (memory) and
whether the teacher can be replaced by a logits cache (speed); declaring it per term makes that
decision automatic and correct.

Adding a term — in any module that is imported, e.g. your own ``my_terms.py`` listed in the
config as ``plugins=[my_terms]`` (imported before the config is checked; no edit of this
package)::

    import torch.nn.functional as F
    from torch import Tensor

    from hate_compress.kd.context import LossContext
    from hate_compress.kd.terms import LossTerm, register_term


    @register_term("pooled_cos")
    class PooledCosine(LossTerm):
        '''Texts the teacher sees as alike should look alike to the student: match the
        cosine similarities between a batch's head inputs (cheap; any widths, any tokenizers).'''

        needs = frozenset({"teacher_pooled"})

        def forward(self, ctx: LossContext) -> Tensor:
            s = F.normalize(ctx.student.pooled.float(), dim=-1)
            t = F.normalize(ctx.teacher.pooled.detach().float(), dim=-1)
            return F.mse_loss(s @ s.T, t @ t.T)

and ``conf/kd/pooled_cos.yaml`` (or the same on the command line,
``plugins=[my_terms] '+kd.terms.pooled_cos={weight: 0.5}'``)::

    name: pooled_cos
    alpha: 0.5
    temperature: 2.0
    terms: {logit: {}, pooled_cos: {weight: 0.5}}

``needs`` also decides whether the teacher's outputs can come from the disk cache
(`hate_compress.kd.teacher.CACHEABLE_NEEDS`): ``teacher_logits`` and ``teacher_pooled`` can, so
this term trains with ``kd.cache=true`` without running the teacher every step.

Keyword arguments of ``__init__`` become the term's YAML options (``weight`` is reserved for the
composite). Override ``from_config`` only if the term needs run facts such as model sizes.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hate_compress.errors import ConfigError
from hate_compress.kd.context import TASKS, LossContext
from hate_compress.kd.layer_map import LayerPair, parse_layer_map
from hate_compress.models.outputs import ModelOutputs
from hate_compress.registry import Registry

__all__ = [
    "HIDDEN_NEEDS",
    "NEEDS",
    "TERMS",
    "AttentionTerm",
    "CeTerm",
    "CompositeLoss",
    "HiddenTerm",
    "LogitTerm",
    "LossTerm",
    "TermBuildContext",
    "build_composite_loss",
    "build_term",
    "register_term",
]

logger = logging.getLogger(__name__)

#: Everything a term may ask for. Any of these implies a teacher. ``pooled_hidden_states`` is
#: ``hidden_states`` compared per sequence (pooled, as the term's ``pooling`` attribute says),
#: not token by token; which of these the teacher-output cache can serve is
#: `hate_compress.kd.teacher.CACHEABLE_NEEDS`.
NEEDS = frozenset({"teacher_logits", "teacher_pooled", "hidden_states", "pooled_hidden_states",
                   "attentions"})
#: The needs that make a model return its per-layer hidden states.
HIDDEN_NEEDS = frozenset({"hidden_states", "pooled_hidden_states"})

#: The two terms whose balance is set by ``kd.alpha`` rather than by a per-term weight.
HARD, SOFT = "ce", "logit"

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
    _bind(cls, kwargs, f"kd.terms.{name}")
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
        return _construct(cls, cfg, {})

    def forward(self, ctx: LossContext) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def per_label(self, ctx: LossContext) -> Tensor:
        """Per-label loss, shape (C,), whose mean equals ``forward`` — only for per-label alpha."""
        raise NotImplementedError(f"loss term {self.name!r} has no per-label form")

    def _teacher(self, ctx: LossContext) -> ModelOutputs:
        if ctx.teacher is None:
            raise ValueError(f"loss term {self.name!r} needs teacher outputs but LossContext.teacher is None")
        return ctx.teacher


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
        return _construct(cls, cfg, {"class_weights": ("class_weights", build.class_weights)})

    def forward(self, ctx: LossContext) -> Tensor:
        s = ctx.student.logits.float()
        w = self.class_weights
        if ctx.task == "multilabel":
            return F.binary_cross_entropy_with_logits(s, ctx.labels.float(), pos_weight=w)
        return F.cross_entropy(s, ctx.labels.long(), weight=w)

    def per_label(self, ctx: LossContext) -> Tensor:
        _need_multilabel(ctx, self.name)
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
        self.temperature = _number(temperature, "kd.temperature")
        if not self.temperature > 0:
            raise ConfigError(f"kd.temperature={temperature} must be > 0")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], build: TermBuildContext) -> LossTerm:
        # One source of truth: the temperature always comes from kd.temperature (default 1.0).
        temperature = 1.0 if build.temperature is None else build.temperature
        return _construct(cls, cfg, {"temperature": ("kd.temperature", temperature)})

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
        _need_multilabel(ctx, self.name)
        s, t = self._pair(ctx)
        per = F.binary_cross_entropy_with_logits(s, torch.sigmoid(t), reduction="none")
        return self.temperature**2 * per.mean(0)


class _LayerMatchTerm(LossTerm):
    """Shared plumbing for terms that compare teacher and student layer by layer."""

    pairs: list[LayerPair]

    def _combine(self, losses: list[Tensor]) -> Tensor:
        # Mean over pairs (with per-pair weights as multipliers), so the term's scale does not
        # grow with student depth and `weight` in the config keeps one meaning across models.
        total = sum(p.weight * v for p, v in zip(self.pairs, losses, strict=True))
        return total / len(self.pairs)

    def _layers(self, out: ModelOutputs, field: str, who: str, expected: int) -> tuple[Tensor, ...]:
        value = getattr(out, field)
        if value is None:
            raise ValueError(
                f"loss term {self.name!r} needs {who} {field}; run the model with output_{field}=True"
            )
        if len(value) != expected:
            raise ValueError(
                f"{who} {field} has {len(value)} entries but the {self.name!r} term was built for {expected}"
            )
        return value


@register_term("hidden")
class HiddenTerm(_LayerMatchTerm):
    """Intermediate-representation matching (FitNets / PKD / TinyBERT-style).

    Token-level matching is the stronger signal but only meaningful when both models see the same
    tokens, so with different tokenizers each layer is pooled per sequence (with each model's own
    mask) first. The ``Linear(student_hidden -> teacher_hidden)`` projections live here, not in
    the student: they are trained alongside it and thrown away at export.
    """

    needs = frozenset({"hidden_states"})

    def __init__(
        self,
        student_layers: int,
        teacher_layers: int,
        student_hidden: int,
        teacher_hidden: int,
        layer_map: Sequence[Any] | None = None,
        loss: str = "mse",
        pooling: str = "cls",
        token_level: bool | str = "auto",
    ):
        super().__init__()
        key = f"kd.terms.{self.name}"
        self.loss = _choice(loss, ("mse", "cosine"), f"{key}.loss")
        self.pooling = _choice(pooling, ("cls", "mean"), f"{key}.pooling")
        if not (token_level == "auto" or isinstance(token_level, bool)):
            raise ConfigError(f"{key}.token_level={token_level!r} must be auto, true or false")
        self.token_level = token_level
        self.student_layers, self.teacher_layers = student_layers, teacher_layers
        self.pairs = parse_layer_map(
            layer_map, student_layers=student_layers, teacher_layers=teacher_layers,
            key=f"{key}.layer_map", min_layer=0,
        )
        same = student_hidden == teacher_hidden
        self.projections = nn.ModuleList(
            nn.Identity() if same else nn.Linear(student_hidden, teacher_hidden) for _ in self.pairs
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], build: TermBuildContext) -> LossTerm:
        check_tokenizer_needs(cls.name, cfg, build.shared_tokenizer)
        (sl, sh), (tl, th) = build.student_dims, _teacher_dims(build, cls.name)
        term = _construct(cls, cfg, {
            "student_layers": ("student_dims", sl), "teacher_layers": ("teacher_dims", tl),
            "student_hidden": ("student_dims", sh), "teacher_hidden": ("teacher_dims", th),
        })
        token = build.shared_tokenizer if term.token_level == "auto" else term.token_level
        if token is False:  # known to compare pooled vectors only: a cache can serve them
            term.needs = frozenset({"pooled_hidden_states"})
        return term

    def forward(self, ctx: LossContext) -> Tensor:
        teacher = self._teacher(ctx)
        s_hs = self._layers(ctx.student, "hidden_states", "student", self.student_layers + 1)
        t_hs = self._layers(teacher, "hidden_states", "teacher", self.teacher_layers + 1)
        token = ctx.shared_tokenizer if self.token_level == "auto" else self.token_level
        if token:
            mask = _token_mask(ctx.student, teacher, s_hs[0].shape[1], t_hs[0].shape[1], self.name)
        losses = []
        for pair, proj in zip(self.pairs, self.projections, strict=True):
            s, t = s_hs[pair.student].float(), t_hs[pair.teacher].detach().float()
            if token:
                losses.append(_masked_mean(self._distance(proj(s), t), mask))
            else:
                # Pool first: projection is affine and pooling is a convex combination, so this
                # equals projecting every token, at a fraction of the cost.
                s = proj(_pool(s, ctx.student.attention_mask, self.pooling))
                t = _pool(t, teacher.attention_mask, self.pooling)
                losses.append(self._distance(s, t).mean())
        return self._combine(losses)

    def _distance(self, s: Tensor, t: Tensor) -> Tensor:
        """Distance per vector (last dim reduced); MSE is a mean over features, like F.mse_loss."""
        if self.loss == "mse":
            return (s - t).pow(2).mean(-1)
        return 1 - F.cosine_similarity(s, t, dim=-1)


@register_term("attention")
class AttentionTerm(_LayerMatchTerm):
    """Attention-map matching (TinyBERT / MiniLM-style), averaged over heads.

    Head averaging lets a 4-head student learn from a 12-head teacher without inventing a head
    correspondence. Attention maps are token-by-token, so they only compare across a shared
    tokenizer; with a mismatch the default is to fail, because silently dropping a term the user
    asked for would make a "multi-level" run quietly become logit-only.
    """

    needs = frozenset({"attentions"})

    def __init__(
        self,
        student_layers: int,
        teacher_layers: int,
        layer_map: Sequence[Any] | None = None,
        loss: str = "mse",
        on_mismatch: str = "error",
    ):
        super().__init__()
        key = f"kd.terms.{self.name}"
        self.loss = _choice(loss, ("mse", "kl"), f"{key}.loss")
        self.on_mismatch = _choice(on_mismatch, ("error", "skip"), f"{key}.on_mismatch")
        self.student_layers, self.teacher_layers = student_layers, teacher_layers
        self.pairs = parse_layer_map(
            layer_map, student_layers=student_layers, teacher_layers=teacher_layers,
            key=f"{key}.layer_map", min_layer=1,
        )
        self.skipped = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], build: TermBuildContext) -> LossTerm:
        check_tokenizer_needs(cls.name, cfg, build.shared_tokenizer)  # fail before any data
        sl, tl = build.student_dims[0], _teacher_dims(build, cls.name)[0]
        term = _construct(cls, cfg, {"student_layers": ("student_dims", sl), "teacher_layers": ("teacher_dims", tl)})
        if build.shared_tokenizer is False:
            # known skipped up front: it needs no attention maps, so neither the live teacher
            # nor eager attention is forced on a run that never compares them
            term.skipped = True
            term.needs = frozenset()
            logger.warning("kd.terms.%s skipped: teacher and student use different tokenizers, "
                           "so attention maps cannot be compared (on_mismatch=skip)", cls.name)
        return term

    def _mismatch_message(self) -> str:
        return attention_mismatch_message(self.name)

    def forward(self, ctx: LossContext) -> Tensor:
        if not ctx.shared_tokenizer:
            if self.on_mismatch == "error":
                raise ConfigError(self._mismatch_message())
            if not self.skipped:
                logger.warning(
                    "kd.terms.%s skipped: teacher and student use different tokenizers, so attention "
                    "maps cannot be compared (on_mismatch=skip)", self.name,
                )
            self.skipped = True
            return torch.zeros((), device=ctx.student.logits.device)
        teacher = self._teacher(ctx)
        s_att = self._layers(ctx.student, "attentions", "student", self.student_layers)
        t_att = self._layers(teacher, "attentions", "teacher", self.teacher_layers)
        mask = _token_mask(ctx.student, teacher, s_att[0].shape[-1], t_att[0].shape[-1], self.name)
        pair_mask = mask[:, :, None] * mask[:, None, :]  # (B, S_query, S_key)
        losses = []
        for pair in self.pairs:
            s = s_att[pair.student - 1].float().mean(1)  # (B, S, S), rows = queries
            t = t_att[pair.teacher - 1].detach().float().mean(1)
            if self.loss == "mse":
                losses.append(_masked_mean((s - t).pow(2), pair_mask))
            else:
                # KL(t_row || s_row) over real keys; padded query rows are excluded. Padded keys
                # already carry ~0 probability in HF attention, so rows need no renormalising.
                per_key = torch.xlogy(t, t) - t * torch.log(s.clamp_min(1e-12))
                losses.append(_masked_mean((per_key * mask[:, None, :]).sum(-1), mask))
        return self._combine(losses)


def attention_mismatch_message(name: str) -> str:
    key = f"kd.terms.{name}"
    return (
        f"{key} needs teacher and student to share a tokenizer (attention maps are token-by-token "
        f"and cannot be aligned across tokenizations); set {key}.on_mismatch=skip to skip it"
    )


def check_tokenizer_needs(name: str, opts: Mapping[str, Any], shared: bool | None) -> None:
    """Reject a term that compares tokens one by one when the tokenizers differ (`shared` False).

    Only needs the term's options and whether the tokenizers match, so the pipeline can run it
    before the teacher trains; the term builders run it again (the same rule, one message).
    """
    if shared is not False:
        return
    if name == "attention" and opts.get("on_mismatch", "error") == "error":
        raise ConfigError(attention_mismatch_message(name))
    if name == "hidden" and opts.get("token_level", "auto") is True:
        raise ConfigError(
            f"kd.terms.{name}.token_level=true compares hidden states token by token, but teacher "
            f"and student use different tokenizers (their tokens are unrelated); use "
            f"kd.terms.{name}.token_level=auto (pooled across tokenizers) or false"
        )


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
        self.alpha = _unit(alpha, "kd.alpha")
        self.weights: dict[str, float] = {}
        for k, w in dict(weights or {}).items():
            if k in (HARD, SOFT):
                raise ConfigError(f"kd.terms.{k}.weight is not used: {HARD} and {SOFT} are balanced by kd.alpha")
            if k not in terms:
                raise ConfigError(f"kd.terms.{k}.weight is set but there is no {k!r} term")
            w = _number(w, f"kd.terms.{k}.weight")
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
            pla = torch.tensor([_unit(a, f"kd.per_label_alpha[{j}]") for j, a in enumerate(values)])
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
        temperature = _number(temperature, "kd.temperature")
        if not temperature > 0:
            raise ConfigError(f"kd.temperature={temperature} must be > 0")
    class_weights = _class_weights(class_weights, num_labels)
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


# ---------------------------------------------------------------- helpers


def _bind(cls: type[LossTerm], kwargs: Mapping[str, Any], key: str) -> None:
    sig = inspect.signature(cls)
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        accepted = ", ".join(p for p in sig.parameters if p not in ("args", "kwargs")) or "none"
        raise ConfigError(f"{key}: {e}; accepted options: {accepted}") from None


def _construct(cls: type[LossTerm], cfg: Mapping[str, Any], injected: Mapping[str, tuple[str, Any]]) -> LossTerm:
    """Call ``cls(**cfg, **injected)``; an injected value may not also be set in YAML (one source of truth)."""
    key = f"kd.terms.{cls.name}"
    for k, (source, _) in injected.items():
        if k in cfg:
            raise ConfigError(f"{key}.{k} cannot be set here; it comes from {source}")
    kwargs = {**cfg, **{k: v for k, (_, v) in injected.items()}}
    _bind(cls, kwargs, key)
    return cls(**kwargs)


def _teacher_dims(build: TermBuildContext, name: str) -> tuple[int, int]:
    if build.teacher_dims is None:
        raise ConfigError(f"kd.terms.{name} needs a teacher but this stage has none; remove it or use kd=none")
    return build.teacher_dims


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} must be a number")
    return float(value)


def _unit(value: Any, key: str) -> float:
    value = _number(value, key)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ConfigError(f"{key}={value} is outside [0, 1]")
    return value


def _choice(value: Any, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} must be one of {', '.join(allowed)}")
    return value


def _class_weights(w: Tensor | Sequence[float] | None, num_labels: int) -> Tensor | None:
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


def _need_multilabel(ctx: LossContext, name: str) -> None:
    if ctx.task != "multilabel":
        raise ValueError(f"loss term {name!r}: per_label is only defined for multilabel tasks, not {ctx.task}")


def _token_mask(student: ModelOutputs, teacher: ModelOutputs, s_len: int, t_len: int, name: str) -> Tensor:
    """Positions real in both models, as float (B, S); token-level terms require equal lengths."""
    if s_len != t_len:
        raise ValueError(
            f"loss term {name!r} compares tokens but student and teacher sequence lengths differ "
            f"({s_len} vs {t_len}); is shared_tokenizer wrong?"
        )
    return (student.attention_mask.bool() & teacher.attention_mask.bool()).float()


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _pool(h: Tensor, mask: Tensor, how: str) -> Tensor:
    if how == "cls":
        return h[:, 0]
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

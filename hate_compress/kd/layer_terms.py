"""Terms that compare teacher and student layer by layer: `hidden` (FitNets/PKD/TinyBERT-style
hidden-state matching) and `attention` (attention-map matching), plus the tokenizer rule they
share (`check_tokenizer_needs`): token-by-token comparisons need one tokenization.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hate_compress.errors import ConfigError
from hate_compress.kd.context import LossContext
from hate_compress.kd.layer_map import LayerPair, parse_layer_map
from hate_compress.kd.term_base import (
    LossTerm,
    TermBuildContext,
    as_choice,
    construct,
    register_term,
    require_teacher_dims,
)
from hate_compress.models.outputs import ModelOutputs

logger = logging.getLogger(__name__)


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
        self.loss = as_choice(loss, ("mse", "cosine"), f"{key}.loss")
        self.pooling = as_choice(pooling, ("cls", "mean"), f"{key}.pooling")
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
        (sl, sh), (tl, th) = build.student_dims, require_teacher_dims(build, cls.name)
        term = construct(cls, cfg, {
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
        self.loss = as_choice(loss, ("mse", "kl"), f"{key}.loss")
        self.on_mismatch = as_choice(on_mismatch, ("error", "skip"), f"{key}.on_mismatch")
        self.student_layers, self.teacher_layers = student_layers, teacher_layers
        self.pairs = parse_layer_map(
            layer_map, student_layers=student_layers, teacher_layers=teacher_layers,
            key=f"{key}.layer_map", min_layer=1,
        )
        self.skipped = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], build: TermBuildContext) -> LossTerm:
        check_tokenizer_needs(cls.name, cfg, build.shared_tokenizer)  # fail before any data
        sl, tl = build.student_dims[0], require_teacher_dims(build, cls.name)[0]
        term = construct(cls, cfg, {"student_layers": ("student_dims", sl), "teacher_layers": ("teacher_dims", tl)})
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

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

Where things live (this module re-exports them, so ``from hate_compress.kd.terms import ...``
keeps working): the contract and registry in `hate_compress.kd.term_base`, ``ce``/``logit`` in
`hate_compress.kd.logit_terms`, ``hidden``/``attention`` in `hate_compress.kd.layer_terms`, the
weighted objective and its config checks in `hate_compress.kd.composite`.

Keyword arguments of ``__init__`` become the term's YAML options (``weight`` is reserved for the
composite). Override ``from_config`` only if the term needs run facts such as model sizes.
"""

from __future__ import annotations

from hate_compress.kd.composite import HARD, SOFT, CompositeLoss, build_composite_loss
from hate_compress.kd.layer_terms import (
    AttentionTerm,
    HiddenTerm,
    attention_mismatch_message,
    check_tokenizer_needs,
)
from hate_compress.kd.logit_terms import CeTerm, LogitTerm
from hate_compress.kd.term_base import (
    HIDDEN_NEEDS,
    NEEDS,
    TERMS,
    LossTerm,
    TermBuildContext,
    build_term,
    register_term,
)

__all__ = [
    "HARD",
    "HIDDEN_NEEDS",
    "NEEDS",
    "SOFT",
    "TERMS",
    "AttentionTerm",
    "CeTerm",
    "CompositeLoss",
    "HiddenTerm",
    "LogitTerm",
    "LossTerm",
    "TermBuildContext",
    "attention_mismatch_message",
    "build_composite_loss",
    "build_term",
    "check_tokenizer_needs",
    "register_term",
]

"""Multi-teacher KD: several trained teachers combined into one soft target.

`combine=probs` (default): the soft target is the weighted mean of the members'
temperature-scaled probabilities, p = sum_i w_i softmax(z_i / T) (sigmoid per label for
multilabel). KD terms take teacher *logits* and apply T themselves, so the ensemble hands them
z = T * log p (multilabel: T * logit p): softmax(z / T) is then exactly p.
`combine=logits`: the weighted mean of the members' raw logits (one model's scale can dominate;
cheaper to reason about when the members are calibrated alike).

Weights are normalised to sum to 1. The ensemble's own predictions (its teacher row) are the
argmax of the same combined logits, and its latency is the sum of the members' (they run one
after another).
"""

from __future__ import annotations

import torch

COMBINE_MODES = ("probs", "logits")
_EPS = 1e-7


def normalised(weights, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights {weights}: need {n} non-negative numbers with a positive sum")
    total = sum(weights)
    return [w / total for w in weights]


def combine_logits(member_logits: list[torch.Tensor], weights: list[float], *, task: str,
                   mode: str = "probs", temperature: float = 1.0) -> torch.Tensor:
    """The ensemble's logits from each member's logits (see the module docstring)."""
    if mode == "logits":
        return sum(w * z.float() for w, z in zip(weights, member_logits))
    if mode != "probs":
        raise ValueError(f"combine={mode!r}: choose one of {COMBINE_MODES}")
    t = float(temperature)
    if task == "multilabel":
        p = sum(w * torch.sigmoid(z.float() / t) for w, z in zip(weights, member_logits))
        p = p.clamp(_EPS, 1 - _EPS)
        return t * torch.log(p / (1 - p))
    p = sum(w * torch.softmax(z.float() / t, dim=-1) for w, z in zip(weights, member_logits))
    return t * torch.log(p.clamp_min(_EPS))


class EnsembleModel:
    """Text-level members (`predict_texts`/`train_soft_logits`) behind one text interface."""

    text_level = True
    runtime = "ensemble"
    num_layers = 0  # no single hidden-state stack to distil from
    hidden_size = 0

    def __init__(self, members: dict, weights: list[float], *, task: str, mode: str,
                 temperature: float):
        self.members = members  # name -> text model
        self.weights = normalised(weights, len(members))
        self.task, self.mode, self.temperature = task, mode, float(temperature)

    def _combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        return combine_logits(logits, self.weights, task=self.task, mode=self.mode,
                              temperature=self.temperature)

    def predict_texts(self, texts: list[str]) -> torch.Tensor:
        return self._combine([m.predict_texts(texts) for m in self.members.values()])

    def train_soft_logits(self, texts: list[str]) -> torch.Tensor:
        """Each member's train targets (out-of-fold for a cross-fitted member), combined."""
        return self._combine([m.train_soft_logits(texts) for m in self.members.values()])

    def identity(self) -> str:
        members = ";".join(f"{n}={m.identity()}" for n, m in self.members.items())
        return (f"ensemble[{members}] weights={self.weights} mode={self.mode} "
                f"T={self.temperature} task={self.task}")

    @property
    def parameter_counts(self) -> dict:
        total = nonzero = 0
        for member in self.members.values():
            counts = member.parameter_counts
            total += counts["params_total"]
            nonzero += counts["params_nonzero"]
        return {"params_total": total, "params_nonzero": nonzero,
                "sparsity": 1.0 - nonzero / total if total else 0.0}

"""Integrated Gradients per whitespace word, and how similar two models' explanations are.

Does a compressed model flag a post *for the same reasons* as its teacher? Both models are asked
the same question — "which words made you score this class?" — with Integrated Gradients
(Sundararajan et al. 2017; Captum's `LayerIntegratedGradients` on the word-embedding layer):

* **baseline**: the same sequence with every non-special token replaced by the tokenizer's
  [PAD] id; [CLS]/[SEP] (or <s>/</s>) and the attention mask are kept, so the path runs from
  "a post of this length with no words" to the post. Position embeddings are untouched (they are
  not part of the word-embedding layer).
* **steps**: `measure.explain_steps` (default 32) points of Captum's Gauss-Legendre rule.
* **target**: the logit of the class being explained (multilabel: one pass per active label).

A token's attribution is the sum over its embedding dimensions. Teacher and student usually
have different tokenizers, so token scores are summed into whitespace words via the fast
tokenizer's character offsets; the two vectors then live on the same words and can be compared:
cosine similarity of the (signed) word scores, and overlap of the 5 words with the largest
|score|. Words only one model saw (truncation at different token counts) are left out of the
comparison: a truncation difference is not a difference in reasoning.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

WORD = re.compile(r"\S+")
TOP_K = 5


class NotExplainable(Exception):
    """This model cannot be differentiated (quantized kernels, no fast tokenizer, ...)."""


# ---------------------------------------------------------------------------------------------
# sub-word tokens -> whitespace words


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of `text`."""
    return [m.span() for m in WORD.finditer(text)]


def token_words(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """For each token, the index of the word its characters fall in; -1 for special tokens.

    A token belongs to the first word its span overlaps, so a SentencePiece piece whose offset
    includes the leading space still lands on its word.
    """
    starts = [s for s, _ in spans]
    out = []
    for start, end in offsets:
        if end <= start:
            out.append(-1)
            continue
        j = max(bisect.bisect_right(starts, start) - 1, 0)
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        out.append(j if j < len(spans) and spans[j][0] < end else -1)
    return out


def to_word_scores(token_scores: Sequence[float], words_of_tokens: Sequence[int],
                   n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Word scores (sum of their tokens) and which words the model saw at all."""
    scores = np.zeros(n_words, dtype=np.float64)
    seen = np.zeros(n_words, dtype=bool)
    for value, word in zip(token_scores, words_of_tokens):
        if word >= 0:
            scores[word] += float(value)
            seen[word] = True
    return scores, seen


# ---------------------------------------------------------------------------------------------
# comparing two explanations


def cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cosine of two word-score vectors; None when either is all zero (nothing to compare)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0 or not (math.isfinite(na) and math.isfinite(nb)):
        return None
    return float(np.dot(a, b) / (na * nb))


def top_words(scores: np.ndarray, k: int = TOP_K) -> list[int]:
    """Indices of the k largest |scores|; ties go to the earlier word."""
    order = sorted(range(len(scores)), key=lambda i: (-abs(scores[i]), i))
    return order[:k]


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = TOP_K) -> float | None:
    """Share of the top-k words (by |score|) the two explanations have in common (k capped at
    the number of words, so a 3-word post can still reach 1.0)."""
    k = min(k, len(a))
    if k == 0:
        return None
    return len(set(top_words(a, k)) & set(top_words(b, k))) / k


@dataclass
class WordExplanation:
    """One (text, class) explanation on whitespace words."""

    example: int  # position in the explained sample
    target: int  # class id whose logit was explained
    scores: np.ndarray
    seen: np.ndarray


def compare(reference: WordExplanation, other: WordExplanation) -> tuple[float | None, float | None]:
    both = reference.seen & other.seen
    a, b = reference.scores[both], other.scores[both]
    return cosine(a, b), top_k_overlap(a, b)


# ---------------------------------------------------------------------------------------------
# Integrated Gradients


def embedding_layer(model: nn.Module) -> nn.Module:
    """The word-embedding module of the classifier's HF encoder."""
    getter = getattr(getattr(model, "encoder", None), "get_input_embeddings", None)
    layer = getter() if getter is not None else None
    if layer is None:
        raise NotExplainable("the encoder exposes no input embedding layer")
    return layer


@contextmanager
def frozen_parameters(model: nn.Module):
    """Gradients w.r.t. the embeddings only: no parameter gradient is computed, and pruning
    reparametrizations (weight = weight_orig * mask, recomputed every forward) do not keep a
    graph-attached weight that would make the model impossible to deepcopy afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


def quantized_parameter(model: nn.Module) -> str | None:
    """Name of the first parameter stored in a quantized form (a tensor subclass such as
    torchao's int8 tensors, or an integer/4-bit dtype), None for a plain float model."""
    for name, param in model.named_parameters():
        data = param.data
        if type(data) is not torch.Tensor or not data.is_floating_point():
            return f"{name}: {type(data).__name__}"
    return None


def check_gradient_flow(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor,
                        word_positions: torch.Tensor) -> None:
    """Raise `NotExplainable` unless the logits have a non-zero gradient w.r.t. the embeddings
    of the word tokens (`word_positions`, a bool mask).

    Quantized int8 kernels run outside autograd: only the residual path of the [CLS] position
    keeps a gradient, so Captum returns word attributions that are all exactly zero, which would
    read as "no word mattered". One probe pass catches that up front.
    """
    quantized = quantized_parameter(model)
    if quantized is not None:
        # a zero-gradient probe is not enough: with mean pooling the residual path still carries
        # a (wrong) gradient to every word while the quantized matmuls carry none
        raise NotExplainable(f"no gradient through quantized weights ({quantized})")
    captured: list[torch.Tensor] = []

    def as_leaf(module, inputs, output):
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = embedding_layer(model).register_forward_hook(as_leaf)
    try:
        with torch.enable_grad():
            logits = model(input_ids, mask).logits.float()
            (grad,) = torch.autograd.grad(logits.sum(), captured[0], allow_unused=True)
    except (RuntimeError, NotImplementedError, TypeError, AttributeError) as exc:
        raise NotExplainable(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}") from exc
    finally:
        handle.remove()
    if grad is None or not bool(torch.any(grad[word_positions] != 0)):
        raise NotExplainable("no gradient reaches the embeddings (quantized kernels run outside "
                             "autograd)")


def _encode(tokenizer, texts: Sequence[str], max_length: int) -> dict:
    if not getattr(tokenizer, "is_fast", False):
        raise NotExplainable("a slow (Python) tokenizer has no character offsets to map tokens "
                             "to words")
    return tokenizer(list(texts), truncation=True, max_length=max_length,
                     return_offsets_mapping=True, return_special_tokens_mask=True)


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, getattr(tokenizer, "unk_token_id", None)):
        if isinstance(candidate, int):
            return candidate
    return 0


def explain_words(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str],
    targets: Sequence[Sequence[int]],
    *,
    steps: int = 32,
    max_length: int = 128,
    batch_size: int = 8,
) -> list[WordExplanation]:
    """IG word scores of `model` for every text and each of its target classes.

    `targets[i]` lists the classes to explain for `texts[i]` (one for single-label tasks, the
    active labels for multilabel). Raises `NotExplainable` when the model cannot be
    differentiated or its attributions are not finite.
    """
    from captum.attr import LayerIntegratedGradients

    enc = _encode(tokenizer, texts, max_length)
    pad = _pad_id(tokenizer)
    items = [(i, int(t)) for i, ts in enumerate(targets) for t in ts]
    was_training = model.training
    model.eval()

    def forward(input_ids, attention_mask):
        return model(input_ids, attention_mask).logits.float()

    lig = LayerIntegratedGradients(forward, embedding_layer(model))
    out: list[WordExplanation] = []
    try:
        with torch.enable_grad(), frozen_parameters(model):
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                width = max(len(enc["input_ids"][i]) for i, _ in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                base = torch.full((len(chunk), width), pad, dtype=torch.long)
                for row, (i, _) in enumerate(chunk):
                    seq = torch.tensor(enc["input_ids"][i], dtype=torch.long)
                    special = torch.tensor(enc["special_tokens_mask"][i], dtype=torch.bool)
                    ids[row, : len(seq)] = seq
                    mask[row, : len(seq)] = 1
                    base[row, : len(seq)] = torch.where(special, seq, torch.full_like(seq, pad))
                if start == 0:
                    check_gradient_flow(model, ids, mask, ids != base)
                try:
                    attr = lig.attribute(ids, baselines=base, target=[t for _, t in chunk],
                                         additional_forward_args=(mask,), n_steps=int(steps),
                                         internal_batch_size=len(chunk) * int(steps))
                except (RuntimeError, NotImplementedError, TypeError, AttributeError) as exc:
                    raise NotExplainable(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}") \
                        from exc
                token_scores = (attr.float().sum(-1) * mask).detach()
                if not torch.isfinite(token_scores).all():
                    raise NotExplainable("attributions are not finite")
                for row, (i, target) in enumerate(chunk):
                    spans = word_spans(texts[i])
                    words = token_words(enc["offset_mapping"][i], spans)
                    scores, seen = to_word_scores(token_scores[row, : len(words)].tolist(), words,
                                                  len(spans))
                    out.append(WordExplanation(i, target, scores, seen))
    finally:
        model.train(was_training)
    return out


def similarity(reference: list[WordExplanation], other: list[WordExplanation]) -> dict:
    """Mean and std of the per-(example, class) cosine and top-5 overlap; `n` pairs compared and
    `n_undefined` pairs with an all-zero explanation (left out, not counted as 0)."""
    others = {(e.example, e.target): e for e in other}
    cosines, overlaps, undefined = [], [], 0
    for ref in reference:
        match = others.get((ref.example, ref.target))
        if match is None:
            continue
        cos, top = compare(ref, match)
        if cos is None or top is None:
            undefined += 1
            continue
        cosines.append(cos)
        overlaps.append(top)

    def stats(values: list[float]) -> tuple[float | None, float | None]:
        if not values:
            return None, None
        return float(np.mean(values)), float(np.std(values))

    cos_mean, cos_std = stats(cosines)
    top_mean, top_std = stats(overlaps)
    return {"cosine_mean": cos_mean, "cosine_std": cos_std, "top5_overlap_mean": top_mean,
            "top5_overlap_std": top_std, "n": len(cosines), "n_undefined": undefined}

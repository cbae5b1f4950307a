"""Tokenizer helpers the data module builds batches with: which tokenizers are the same (one
tokenization serves both), their padding id and real length limit, and the text prefix every
tokenizer keeps (`shared_prefixes`: teacher and student must read the same words).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hate_compress.errors import ConfigError


def tokenizer_config(tok: Any) -> str:
    """The tokenizer's full pipeline (minus per-call truncation/padding state) as a string."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        return json.dumps(sorted(tok.get_vocab().items()))
    cfg = json.loads(backend.to_str())
    cfg.pop("truncation", None)
    cfg.pop("padding", None)
    return json.dumps(cfg, sort_keys=True)


def same_tokenizer(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if type(a) is not type(b) or getattr(a, "name_or_path", None) != getattr(b, "name_or_path", None):
        return False
    if len(a) != len(b) or padding_id(a) != padding_id(b) or a.padding_side != b.padding_side:
        return False
    return tokenizer_config(a) == tokenizer_config(b)


def padding_id(tok: Any) -> int:
    """Padding id; models without a pad token (GPT-style) get eos/0 — masked out anyway."""
    for candidate in (tok.pad_token_id, getattr(tok, "eos_token_id", None)):
        if isinstance(candidate, int):
            return candidate
    return 0


def token_limit(tok: Any, max_length: int) -> int:
    """`max_length`, capped at the tokenizer's own limit when it has a real one."""
    limit = getattr(tok, "model_max_length", None)
    return min(max_length, limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else max_length


def _kept_chars(tok: Any, texts: list[str], max_length: int) -> list[int]:
    """Per text, how many leading characters survive truncation at `max_length` tokens."""
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"{type(tok).__name__}: aligning the text of teacher and student needs "
                          "fast tokenizers (character offsets)")
    budget = token_limit(tok, max_length) - tok.num_special_tokens_to_add(pair=False)
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True,
              return_attention_mask=False, return_token_type_ids=False)
    return [len(text) if len(offsets) <= budget else offsets[max(budget, 1) - 1][1]
            for text, offsets in zip(texts, enc["offset_mapping"], strict=True)]


def shared_prefixes(texts: list[str], tokenizers: Sequence[Any], max_length: int) -> list[str]:
    """Each text cut to the longest prefix every tokenizer keeps whole within `max_length`.

    The cut goes back to a space when the prefix has one, so no tokenizer sees a split word;
    re-tokenizing a cut text can still differ at its end, so it repeats until every tokenizer
    keeps every text whole (the texts only shrink, so it ends).
    """
    texts = list(texts)
    pending = list(range(len(texts)))
    while pending:
        ends = [min(kept) for kept in zip(*(_kept_chars(t, [texts[i] for i in pending], max_length)
                                            for t in tokenizers), strict=True)]
        still = []
        for i, end in zip(pending, ends, strict=True):
            if end < len(texts[i]):
                space = texts[i].rfind(" ", 0, end + 1)
                texts[i] = texts[i][:space if space > 0 else end].rstrip()
                still.append(i)
        pending = still
    return texts

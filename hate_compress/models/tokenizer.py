"""Offline WordPiece tokenizers for models trained from scratch, built deterministically.

The `tokenizers` WordPiece trainer breaks ties between equally frequent merges by hash-map
order, so the same texts give a different vocabulary in every process — and a different model
for the same seed on a fresh machine. We keep its normalizer, pre-tokenizer and WordPiece model
but choose the vocabulary ourselves, by a rule with a total order: every character (as a word
start and as a `##` continuation), then the word-start prefixes and `##` continuations that save
the most characters over the corpus (count x (length - 1)), ties broken alphabetically.
Tokenizers are cached on disk by a hash of the texts and settings, and reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from hate_compress.storage import CACHE_KEY, writing

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_VERSION = "greedy-saving-v2"  # part of the cache key: change it when the rule changes
MAX_PIECE = 16  # longer pieces are rare and only bloat the candidate table


def _pipeline(lowercase: bool):
    """NFC (+ lowercase). No accent stripping: in Bangla (and Hindi, ...) the vowel signs and the
    virama are combining marks, and BERT's StripAccents would delete them from every word."""
    from tokenizers import normalizers, pre_tokenizers

    norm = [normalizers.NFC(), normalizers.Lowercase()] if lowercase else [normalizers.NFC()]
    return normalizers.Sequence(norm), pre_tokenizers.BertPreTokenizer()


def word_counts(texts: Sequence[str], lowercase: bool) -> Counter:
    normalizer, pre_tokenizer = _pipeline(lowercase)
    counts: Counter = Counter()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[word] += 1
    return counts


def choose_vocab(counts: Counter, vocab_size: int, min_frequency: int) -> list[str]:
    """Specials, the alphabet, then the pieces that save the most characters (see module doc)."""
    chars: Counter = Counter()
    pieces: Counter = Counter()
    for word, n in counts.items():
        for ch in word:
            chars[ch] += n
        for end in range(2, min(len(word), MAX_PIECE) + 1):
            pieces[word[:end]] += n
        for start in range(1, len(word)):
            for end in range(start + 2, min(len(word), start + MAX_PIECE) + 1):
                pieces["##" + word[start:end]] += n
    alphabet = sorted(chars, key=lambda c: (-chars[c], c))
    vocab = list(SPECIAL_TOKENS)
    for ch in alphabet:
        if len(vocab) + 2 > vocab_size:
            break
        vocab += [ch, "##" + ch]
    ranked = sorted(
        (p for p, n in pieces.items() if n >= min_frequency),
        key=lambda p: (-pieces[p] * (len(p.removeprefix("##")) - 1), p),
    )
    return vocab + ranked[: max(0, vocab_size - len(vocab))]


def _cache_key(texts: Sequence[str], settings: dict) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def train_wordpiece_tokenizer(
    texts: Sequence[str],
    cache_dir: str | os.PathLike,
    *,
    vocab_size: int = 8000,
    lowercase: bool = True,
    min_frequency: int = 2,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer for `texts` (from `cache_dir` when already built)."""
    from tokenizers import Tokenizer, decoders, models, processors

    settings = {"kind": "wordpiece", "rule": VOCAB_VERSION, "vocab_size": vocab_size,
                "lowercase": lowercase, "min_frequency": min_frequency,
                "model_max_length": model_max_length}
    target = Path(cache_dir) / f"wordpiece-{_cache_key(texts, settings)}"
    if (target / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(str(target))

    log.info("building a WordPiece vocabulary (%d) from %d texts", vocab_size, len(texts))
    vocab = choose_vocab(word_counts(texts, lowercase), vocab_size, min_frequency)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = _pipeline(lowercase)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=model_max_length,
    )
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    with writing(Path(cache_dir), CACHE_KEY):
        fast.save_pretrained(str(tmp))
    try:
        tmp.rename(target)  # atomic: parallel runs never see a half-written tokenizer
    except OSError:
        pass  # another process won the race; its copy is identical
    return PreTrainedTokenizerFast.from_pretrained(str(target))

"""Perturbed copies of the training texts, for teacher-labelled augmentation in KD.

A small student distilled on a few thousand posts sees each teacher output once per epoch.
Perturbed copies (words dropped, neighbours swapped, typo-like character noise) give it more
inputs on which to match the teacher: the teacher's soft targets label every copy (it reads
the perturbed text), the gold label is the source post's. Noise of this kind is also what
moderation text looks like (misspellings, obfuscation), so the copies stay on the data's
distribution rather than off it.

Seeded per (seed, copy): the same settings give the same copies in every process (DDP ranks,
reruns), so cache keys built from the texts stay valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hate_compress.data.labeled import LabeledTexts
from hate_compress.errors import ConfigError


@dataclass(frozen=True)
class AugmentSettings:
    """`kd.augment`: how many perturbed copies of each training text, and how much noise."""

    copies: int = 0
    word_dropout: float = 0.1  # chance each word is dropped (one word always stays)
    word_swap: float = 0.1     # chance each word trades places with the next one
    char_noise: float = 0.02   # chance each character is deleted, doubled or replaced
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> AugmentSettings:
        """Validated settings from a `kd.augment` mapping (None or no `copies`: off)."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"kd.augment: unknown key(s) {', '.join(unknown)}; choose from "
                              f"{', '.join(cls.__dataclass_fields__)}")
        settings = cls(**cfg)
        if not isinstance(settings.copies, int) or isinstance(settings.copies, bool) \
                or settings.copies < 0:
            raise ConfigError(f"kd.augment.copies={settings.copies!r}: an integer >= 0")
        for key in ("word_dropout", "word_swap", "char_noise"):
            value = getattr(settings, key)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"kd.augment.{key}={value!r}: a probability in [0, 1)")
        return settings

    @property
    def enabled(self) -> bool:
        return self.copies > 0

    def describe(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def perturb(text: str, rng: np.random.Generator, settings: AugmentSettings) -> str:
    """One noisy copy of `text`: words dropped, adjacent words swapped, characters edited."""
    words = text.split()
    if not words:
        return text
    keep = rng.random(len(words)) >= settings.word_dropout
    if not keep.any():
        keep[rng.integers(len(words))] = True
    words = [w for w, k in zip(words, keep) if k]
    i = 0
    while i < len(words) - 1:
        if rng.random() < settings.word_swap:
            words[i], words[i + 1] = words[i + 1], words[i]
            i += 2  # a word moves at most one place
        else:
            i += 1
    return " ".join(noisy_word(w, rng, settings.char_noise) for w in words)


def noisy_word(word: str, rng: np.random.Generator, rate: float) -> str:
    if rate <= 0:
        return word
    out = []
    for ch, roll, edit in zip(word, rng.random(len(word)), rng.integers(0, 3, len(word))):
        if roll >= rate:
            out.append(ch)
        elif edit == 1:  # doubled
            out.append(ch + ch)
        elif edit == 2:  # replaced by another character of the same word
            out.append(word[int(rng.integers(len(word)))])
        # edit == 0: deleted
    return "".join(out) or word


def augment_split(train: LabeledTexts, settings: AugmentSettings) -> LabeledTexts:
    """`train` followed by `settings.copies` perturbed copies of every example, each copy with
    the source's label, file row and meta (so errors and reports point to the original post)."""
    if not settings.enabled:
        return train
    n = len(train)
    extended = train.subset(list(range(n)) * (1 + settings.copies))
    texts = list(train.texts)
    for copy in range(1, settings.copies + 1):
        rng = np.random.default_rng([settings.seed, copy])
        texts += [perturb(t, rng, settings) for t in train.texts]
    extended.texts = texts
    return extended

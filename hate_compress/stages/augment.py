"""Teacher-labelled augmentation for the kd stage (`kd.augment.copies > 0`).

While the student (or assistant) is distilled, `run.data` is a view whose train split holds the
real examples followed by perturbed copies (`hate_compress.data.augment`); the teacher's soft
targets for every copy come through the usual teacher source (live, or the output cache keyed
by the augmented split's content), the CE side uses the source post's gold label. Dev and test
are untouched, so model selection and every reported number stay on real data, and after the
stage the later stages (prune fine-tuning, quantization) see the real train split again.
"""

from __future__ import annotations

import contextlib
import logging

from hate_compress.data.augment import AugmentSettings, augment_split
from hate_compress.errors import ConfigError
from hate_compress.kd.text_teacher import TEXT_KINDS, teacher_kind
from hate_compress.stages.common import plain
from hate_compress.stages.state import Run

log = logging.getLogger(__name__)


def augment_settings(run: Run) -> AugmentSettings:
    return AugmentSettings.from_config(plain(run.cfg.kd.get("augment")))


def check_augment(run: Run) -> None:
    """Before anything trains: the settings are valid, and no cross-fitted teacher is asked to
    label copies (its out-of-fold targets exist for the real rows only; the copies would get
    the in-sample model's near-memorised outputs without a word)."""
    settings = augment_settings(run)
    if not settings.enabled:
        return
    teacher = run.cfg.teacher
    cross_fitted = [str(teacher.name)] if int(teacher.get("cross_fit") or 0) else []
    if teacher_kind(teacher) in TEXT_KINDS:
        overrides = plain(teacher.get("member_overrides") or {})
        cross_fitted += [f"{teacher.name}.{m}" for m, o in overrides.items()
                         if int((o or {}).get("cross_fit") or 0)]
    if cross_fitted:
        raise ConfigError(f"kd.augment.copies={settings.copies} with a cross-fitted teacher "
                          f"({', '.join(cross_fitted)}): its out-of-fold targets cover the real "
                          "train rows only; set kd.augment.copies=0 or teacher cross_fit=0")


@contextlib.contextmanager
def augmented_training(run: Run):
    """`run.data` with the augmented train split for the duration of the block; afterwards the
    real data again, with the tokenizers the block registered (the student's among them)."""
    settings = augment_settings(run)
    if not settings.enabled:
        yield None
        return
    real = run.data
    train = real.split("train")
    run.data = real.with_train(augment_split(train, settings))
    log.info("[kd] teacher-labelled augmentation: %d real + %d perturbed copies of the train "
             "texts (word dropout %.2f, swap %.2f, char noise %.3f)", len(train),
             settings.copies * len(train), settings.word_dropout, settings.word_swap,
             settings.char_noise)
    try:
        yield settings
    finally:
        tokenizers = run.data.tokenizers
        run.data = real
        if tokenizers:
            real.set_tokenizers(tokenizers)

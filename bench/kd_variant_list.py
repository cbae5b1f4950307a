"""The cells of `bench/kd_variants.py`: one `Variant` per row of the table (its Hydra overrides),
kept apart from the runner so adding a lever is one entry here. Standard library only."""

from __future__ import annotations

from dataclasses import dataclass

TEACHER_SEED = 42
MEMBER_SEEDS = ("+teacher.member_overrides.tiny_teacher.seed=42",
                "+teacher.member_overrides.char_ngram.seed=42")


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    overrides: tuple[str, ...]


ENSEMBLE_KD = ("pipeline=teacher_kd", "kd=logit", "teacher=ensemble", *MEMBER_SEEDS)
OWN_1K_VOCABULARY = "student.backbone.tokenizer={train:true,vocab_size:1000}"
STUDENT_4X256 = ("student.backbone.scratch.num_hidden_layers=4",
                 "student.backbone.scratch.hidden_size=256",
                 "student.backbone.scratch.intermediate_size=1024",
                 "student.backbone.scratch.num_attention_heads=4", "student.head.hidden=256")


def ensemble(name: str, label: str, *changes: str) -> Variant:
    """A lever on the ensemble-KD row: its overrides plus `changes`, nothing else."""
    return Variant(name, label, (*ENSEMBLE_KD, *changes))


VARIANTS = {v.name: v for v in (
    Variant("none", "labels only (kd=none)", ("pipeline=teacher_kd", "kd=none")),
    Variant("tiny_teacher", "logit KD from tiny_teacher", ("pipeline=teacher_kd", "kd=logit")),
    Variant("char_ngram", "logit KD from char_ngram",
            ("pipeline=teacher_kd", "kd=logit", "teacher=char_ngram")),
    Variant("char_ngram_cf5", "logit KD from char_ngram, cross-fitted (k=5)",
            ("pipeline=teacher_kd", "kd=logit", "teacher=char_ngram", "teacher.cross_fit=5")),
    ensemble("ensemble", "logit KD from ensemble(tiny_teacher, char_ngram)"),
    ensemble("ensemble_aug", "ensemble KD + 2 teacher-labelled perturbed copies (kd.augment)",
             "kd.augment.copies=2"),
    Variant("char_ngram_aug", "char_ngram KD + 2 teacher-labelled perturbed copies (kd.augment)",
            ("pipeline=teacher_kd", "kd=logit", "teacher=char_ngram", "kd.augment.copies=2")),
    Variant("none_aug", "labels only + 2 perturbed copies (augmentation control)",
            ("pipeline=teacher_kd", "kd=none", "kd.augment.copies=2")),
    *(ensemble(f"ensemble_alpha{a.replace('.', '')}", f"ensemble KD, alpha {a}", f"kd.alpha={a}")
      for a in ("0.3", "0.7", "0.9")),
    ensemble("ensemble_t8", "ensemble KD, T 8 (softer targets than the default 4)",
             "kd.temperature=8"),
    ensemble("ensemble_cf5", "ensemble KD, char_ngram member cross-fitted (k=5)",
             "+teacher.member_overrides.char_ngram.cross_fit=5"),
    ensemble("ensemble_t1", "ensemble KD, T 1 (sharper targets than the default 4)",
             "kd.temperature=1"),
    ensemble("ensemble_vocab1k", "ensemble KD into a student with its own 1k WordPiece "
             "vocabulary (near character level)", OWN_1K_VOCABULARY),
    # data.max_length is 64 tokens: the 8k vocabulary truncates 15% of GermEval's train tweets
    # there, the 1k one 44% (the char_ngram teacher always reads the whole text)
    ensemble("ensemble_len128", "ensemble KD, 128 tokens per text (teachers too) instead of 64",
             "data.max_length=128"),
    ensemble("ensemble_vocab1k_len128", "ensemble KD, student's own 1k vocabulary, 128 tokens",
             OWN_1K_VOCABULARY, "data.max_length=128"),
    ensemble("ensemble_4x256", "ensemble KD into a 4x256 student (the teacher's size)",
             *STUDENT_4X256),
    Variant("assistant", "assistant chain tiny_teacher -> tiny_assistant -> student",
            ("pipeline=assistant_kd", "kd=logit")),
    Variant("mutual", "mutual learning (kd=mutual, 2 peers)", ("pipeline=teacher_kd", "kd=mutual")),
)}
# `bench/compression.py` arguments: the `ensemble` row's students (same store, same teachers)
# continued through pruning + ONNX INT8, 3 seeds in one run (a `make bench` step and a table)
ENSEMBLE_COMPRESSION_ARGS = ("--data", "germeval_coarse", "--tag", "ensemble", "--", "kd=logit",
                             "teacher=ensemble", *MEMBER_SEEDS, f"teacher.seed={TEACHER_SEED}",
                             "seeds=[1,2,3]", "measure.explain=false",
                             "paths.cache_dir=bench/results/work/kd_variants_store")
# the order they run in: the headline comparison (none vs ensemble) first
DEFAULT_VARIANTS = ("none", "ensemble", "char_ngram", "tiny_teacher", "assistant", "mutual")

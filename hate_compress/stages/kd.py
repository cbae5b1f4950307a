"""KD stage: train the `student` under the frozen teacher with the loss composed by `kd`.

`distil` is the one KD routine: the assistant stage (teacher -> assistant -> student) runs it
too, and `kd.method` picks another registered way to train the student (`mutual`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer

from hate_compress import distributed
from hate_compress.artifacts import encoder_config
from hate_compress.errors import ConfigError
from hate_compress.kd.teacher import (
    CACHEABLE_NEEDS,
    CACHED_SPLITS,
    CachedTeacher,
    LiveTeacher,
    TeacherSource,
    outputs_key,
    tokenizer_fingerprint,
)
from hate_compress.kd.terms import (
    HIDDEN_NEEDS,
    CompositeLoss,
    build_composite_loss,
    check_tokenizer_needs,
)
from hate_compress.kd.text_teacher import TEXT_KINDS, teacher_kind, text_teacher_source
from hate_compress.measure.evaluate import score
from hate_compress.models.backbone import build_tokenizer, resolve_encoder_config
from hate_compress.models.classifier import is_text_level
from hate_compress.registry import Registry
from hate_compress.stages.augment import augmented_training, check_augment
from hate_compress.stages.common import build_classifier, fit, loss_for, plain, save
from hate_compress.stages.measure import measure_stage
from hate_compress.stages.state import Run, Trained, register_preflight, register_stage

log = logging.getLogger(__name__)


def shares_tokenizer(a, b) -> bool:
    return tokenizer_fingerprint(a) == tokenizer_fingerprint(b)


def teacher_source(run: Run, loss, shared: bool) -> TeacherSource:
    """Live teacher, plus a disk cache of its outputs when every term's needs are cacheable."""
    needs = loss.needs
    teacher = run.teacher
    if is_text_level(teacher.model):  # logits from the raw texts, every split (preflight
        # rejected the terms that would need more); rank 0 writes the cache, the others read it
        return distributed.rank_zero_first(lambda: text_teacher_source(run, needs))
    if "attentions" in needs:
        teacher.model.use_eager_attention()
    live = LiveTeacher(teacher.model, teacher.key, hidden=bool(needs & HIDDEN_NEEDS),
                       attentions="attentions" in needs)
    # one cache file holds one pooling of the hidden states
    poolings = {t.pooling for t in loss.terms.values() if "pooled_hidden_states" in t.needs}
    cacheable = needs <= CACHEABLE_NEEDS and len(poolings) <= 1
    if not (run.cfg.kd.get("cache", True) and cacheable and teacher.path is not None):
        if run.cfg.kd.get("cache", True) and not cacheable:
            log.info("[kd] %s need the live teacher: teacher output cache off",
                     ", ".join(sorted(needs - CACHEABLE_NEEDS)) or "two hidden poolings")
        return TeacherSource(live)
    pooling = next(iter(poolings), None)
    key = outputs_key(Path(teacher.path) / "model.safetensors", run.data, teacher.key,
                      teacher.tokenizer, pooling)
    loaders = {split: run.data.dataloader(split) for split in CACHED_SPLITS}
    path = Path(run.cfg.paths.cache_dir) / "teacher_outputs" / f"{key}.safetensors"
    device = distributed.training_device(run.cfg.trainer)  # the GPU when training on one
    cache = distributed.rank_zero_first(lambda: CachedTeacher.build(
        teacher.model, loaders, teacher.key, path, pooling=pooling, device=device))
    return TeacherSource(live, cache)


def encoder_shape(config) -> tuple[int, int]:
    """(layers, hidden size) of an HF encoder config."""
    layers = getattr(config, "num_hidden_layers", getattr(config, "n_layers", 0))
    return int(layers), int(config.hidden_size)


def approx_encoder_params(config) -> int:
    """Embeddings plus ~12*H^2 per transformer layer: enough to tell which model is bigger."""
    layers, hidden = encoder_shape(config)
    return 12 * layers * hidden * hidden + int(getattr(config, "vocab_size", 0) or 0) * hidden


def teacher_encoder_config(run: Run):
    checkpoint = run.cfg.teacher.get("checkpoint")
    if checkpoint:
        return encoder_config(Path(checkpoint).expanduser())
    return resolve_encoder_config(plain(run.cfg.teacher.backbone), role="teacher")


def check_kd_models(run: Run) -> None:
    """Before the teacher trains: the student (and teacher) resolve, and every KD term accepts
    their shapes (layer maps, hidden projections), so a bad `student.backbone.name_or_path` or
    an impossible term costs seconds, not a trained teacher. Also warns when the "student" is
    the bigger model: a swapped teacher/student pair looks like a run that merely did badly.
    A text-level teacher (char_ngram, ensemble) has no encoder to resolve: the teacher preflight
    already limited its terms to logits, so only the student is checked."""
    if teacher_kind(run.cfg.teacher) in TEXT_KINDS:
        student = resolve_encoder_config(plain(run.cfg.student.backbone), role="student")
        build_composite_loss(plain(run.cfg.kd), task=run.data.task, num_labels=run.data.num_labels,
                             student_dims=encoder_shape(student), teacher_dims=(0, 0))
        return
    teacher = teacher_encoder_config(run)  # first: the teacher is what would run first
    student = resolve_encoder_config(plain(run.cfg.student.backbone), role="student")
    build_composite_loss(plain(run.cfg.kd), task=run.data.task, num_labels=run.data.num_labels,
                         student_dims=encoder_shape(student), teacher_dims=encoder_shape(teacher))
    if approx_encoder_params(student) > approx_encoder_params(teacher):
        warn = log.info if run.cfg.get("smoke") else log.warning  # debug=tiny shrinks the teacher
        warn("student %s (%d layers x %d) is larger than teacher %s (%d layers x %d): "
                    "distillation is meant to go from a larger model to a smaller one; are "
                    "teacher= and student= swapped?", run.cfg.student.name, *encoder_shape(student),
                    run.cfg.teacher.name, *encoder_shape(teacher))


def preflight_distil(run: Run) -> None:
    if "assistant" not in run.cfg.stages:  # else the assistant's preflight checks both hops
        check_kd_models(run)
    check_kd_tokenizers(run)
    check_augment(run)


def check_kd_tokenizers(run: Run) -> None:
    """Before the teacher trains: reject KD terms that compare tokens one by one when the
    teacher's and the student's tokenizers differ (hours of teacher training would otherwise
    end in that error). Builds only the tokenizers, and only when such a term is configured."""
    terms = plain(run.cfg.kd.get("terms") or {})
    token_terms = {n: o or {} for n, o in terms.items()
                   if (n == "attention" and (o or {}).get("on_mismatch", "error") == "error")
                   or (n == "hidden" and (o or {}).get("token_level", "auto") is True)}
    if not token_terms or run.cfg.student.backbone.get("tokenizer") == "teacher":
        return
    cache = run.cfg.paths.cache_dir
    if run.cfg.teacher.get("checkpoint"):
        teacher_tok = AutoTokenizer.from_pretrained(str(Path(run.cfg.teacher.checkpoint).expanduser()))
    else:
        teacher_tok = build_tokenizer(plain(run.cfg.teacher.backbone), role="teacher",
                                      train_texts=run.data.train_texts, cache_dir=cache)
    student_tok = build_tokenizer(plain(run.cfg.student.backbone), role="student",
                                  train_texts=run.data.train_texts, cache_dir=cache,
                                  teacher_tokenizer=teacher_tok)
    shared = shares_tokenizer(student_tok, teacher_tok)
    for name, opts in token_terms.items():
        check_tokenizer_needs(name, opts, shared)


@dataclass
class PreparedKD:
    """What `fit_kd` trains: the student (or assistant), its composed loss, where the teacher's
    outputs come from (live, or the disk cache built by `prepare_kd`) and whether both read one
    tokenization. Split from the stage so other stages (the assistant chain) and the benchmarks
    reuse exactly this code instead of a copy of it."""

    student: Trained
    loss: CompositeLoss
    source: TeacherSource | None
    shared: bool
    role: str = "student"


def attach_student_tokenizer(run: Run, tokenizer) -> tuple:
    """Batches carry the student's tokens under `student` beside the teacher's; returns the
    tokenizer to use (the teacher's own when both tokenize alike) and whether it is shared."""
    text_teacher = is_text_level(run.teacher.model)
    shared = not text_teacher and shares_tokenizer(tokenizer, run.teacher.tokenizer)
    if shared:
        tokenizer = run.teacher.tokenizer  # one tokenization serves both models
    if text_teacher:  # it reads the raw texts itself: batches carry the student's tokens only
        run.data.set_tokenizers({"student": tokenizer})
    else:
        run.data.set_tokenizers({"teacher": run.teacher.tokenizer, "student": tokenizer})
    if not shared and not text_teacher:  # both now read the texts cut to what both
        # tokenizers keep (`model_texts`): agreement on the text the student sees
        run.teacher_logits = distributed.on_rank_zero(lambda: score(run, run.teacher)[1], share=False)
    return tokenizer, shared


def prepare_kd(run: Run, role: str = "student") -> PreparedKD:
    """Build the `role` model (the `student` config, or the `assistant` one), its loss and the
    teacher source (the output cache is built here) for distillation from `run.teacher`."""
    if run.teacher is None:
        raise ConfigError("stages: kd needs the teacher stage before it (e.g. stages=[teacher,kd])")
    model, tokenizer = build_classifier(run, role)
    tokenizer, shared = attach_student_tokenizer(run, tokenizer)
    log.info("[kd] %s %s (%d layers x %d); tokenizer %s the teacher's", role,
             run.cfg[role].name, model.num_layers, model.hidden_size,
             "shared with" if shared else "differs from")
    student = Trained(role, model, tokenizer, "student")
    loss = loss_for(run, run.cfg.kd, model, run.teacher.model, shared,
                    bool(run.cfg[role].train.class_weights))
    if "attentions" in loss.needs:  # not when the attention term is skipped across tokenizers
        model.use_eager_attention()
    source = teacher_source(run, loss, shared) if loss.needs else None
    return PreparedKD(student, loss, source, shared, role)


def fit_kd(run: Run, prepared: PreparedKD, stage: str = "kd"):
    """Train the prepared model in place (checkpoints and logs under `run.stage_dir(stage)`)."""
    return fit(run, stage, prepared.student, prepared.loss,
               train_cfg=run.cfg[prepared.role].train, teacher_source=prepared.source,
               shared_tokenizer=prepared.shared)


def teacher_name(run: Run) -> str:
    """The config name of the model teaching now: the teacher's, or the assistant's."""
    role = run.teacher.name if run.teacher.name in ("teacher", "assistant") else "teacher"
    return str(run.cfg[role].name)


def distil(run: Run, stage: str = "kd", role: str = "student") -> Trained:
    """Distil the `role` model from `run.teacher`, save it as `<stage>/model`, measure it as the
    row `stage`; it becomes `run.current`. The kd stage and the assistant stage both run this."""
    with augmented_training(run) as augment:  # the real data again once the student is fit
        prepared = prepare_kd(run, role)
        fit_kd(run, prepared, stage)
    student, source, loss = prepared.student, prepared.source, prepared.loss
    save(run, student, run.stage_dir(stage) / "model")
    run.current = student
    measure_stage(run, stage, student, extra={
        "kd": run.cfg.kd.name, "student": run.cfg[role].name, "teacher": teacher_name(run),
        "shared_tokenizer": prepared.shared, "teacher_cache": bool(source and source.cache),
        "skipped_terms": [n for n, t in loss.terms.items() if getattr(t, "skipped", False)],
        **({"augment": augment.describe()} if augment else {}),
    })
    return student


# How the kd stage trains the student (`kd.method`): `distil` from the teacher (default), or a
# registered alternative such as `mutual` (hate_compress/stages/mutual.py). Each entry is a
# stage function; its `preflight` (registry meta) runs before any stage does.
KD_METHODS: Registry = Registry("kd method", "kd.method")
KD_METHODS.add("distil", distil, preflight=preflight_distil)


def kd_method(run: Run) -> str:
    return str(run.cfg.kd.get("method") or "distil")


@register_preflight("kd")
def preflight_kd(run: Run) -> None:
    name = kd_method(run)
    KD_METHODS.get(name)  # a typo: one line naming the choices
    KD_METHODS.meta[name]["preflight"](run)


@register_stage("kd", rank=10)
def kd_stage(run: Run) -> None:
    KD_METHODS.get(kd_method(run))(run)

"""KD stage: train the `student` under the frozen teacher with the loss composed by `kd`."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoTokenizer

from hate_compress.errors import ConfigError
from hate_compress.evaluation import measure_stage, score
from hate_compress.kd.teacher import (
    CACHED_SPLITS,
    CachedTeacher,
    LiveTeacher,
    TeacherSource,
    outputs_key,
    tokenizer_fingerprint,
)
from hate_compress.kd.terms import check_tokenizer_needs
from hate_compress.models.backbone import build_tokenizer
from hate_compress.run import Run, Trained, register_preflight, register_stage
from hate_compress.stages.common import build_classifier, fit, loss_for, plain, save

log = logging.getLogger(__name__)


def shares_tokenizer(a, b) -> bool:
    return tokenizer_fingerprint(a) == tokenizer_fingerprint(b)


def hidden_is_pooled(loss, shared: bool) -> bool:
    hidden = loss.terms["hidden"] if "hidden" in loss.terms else None
    if hidden is None:
        return False
    token = shared if hidden.token_level == "auto" else hidden.token_level
    return not token


def teacher_source(run: Run, loss, shared: bool) -> TeacherSource:
    """Live teacher, plus a disk cache of its outputs when no term needs it token by token."""
    needs = loss.needs
    teacher = run.teacher
    if "attentions" in needs:
        teacher.model.use_eager_attention()
    live = LiveTeacher(teacher.model, teacher.key, hidden="hidden_states" in needs,
                       attentions="attentions" in needs)
    cacheable = "attentions" not in needs and (
        "hidden_states" not in needs or hidden_is_pooled(loss, shared))
    if not (run.cfg.kd.get("cache", True) and cacheable and teacher.path is not None):
        if run.cfg.kd.get("cache", True) and not cacheable:
            log.info("[kd] token-level terms need the live teacher: teacher output cache off")
        return TeacherSource(live)
    pooling = loss.terms["hidden"].pooling if "hidden_states" in needs else None
    key = outputs_key(Path(teacher.path) / "model.safetensors", run.data, teacher.key,
                      teacher.tokenizer, pooling)
    loaders = {split: run.data.dataloader(split) for split in CACHED_SPLITS}
    path = Path(run.cfg.paths.cache_dir) / "teacher_outputs" / f"{key}.safetensors"
    cache = CachedTeacher.build(teacher.model, loaders, teacher.key, path, pooling=pooling)
    return TeacherSource(live, cache)


@register_preflight("kd")
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


@register_stage("kd")
def kd_stage(run: Run) -> None:
    if run.teacher is None:
        raise ConfigError("stages: kd needs the teacher stage before it (e.g. stages=[teacher,kd])")
    model, tokenizer = build_classifier(run, "student")
    shared = shares_tokenizer(tokenizer, run.teacher.tokenizer)
    if shared:
        tokenizer = run.teacher.tokenizer  # one tokenization serves both models
    run.data.set_tokenizers({"teacher": run.teacher.tokenizer, "student": tokenizer})
    if not shared:  # both now read the texts cut to what both tokenizers keep (`model_texts`):
        run.teacher_logits = score(run, run.teacher)[1]  # agreement on the text the student sees
    log.info("[kd] student %s (%d layers x %d); tokenizer %s the teacher's",
             run.cfg.student.name, model.num_layers, model.hidden_size,
             "shared with" if shared else "differs from")
    student = Trained("student", model, tokenizer, "student")
    loss = loss_for(run, run.cfg.kd, model, run.teacher.model, shared,
                    bool(run.cfg.student.train.class_weights))
    if "attentions" in loss.needs:  # not when the attention term is skipped across tokenizers
        model.use_eager_attention()
    source = teacher_source(run, loss, shared) if loss.needs else None
    fit(run, "kd", student, loss, train_cfg=run.cfg.student.train, teacher_source=source,
        shared_tokenizer=shared)
    save(run, student, run.stage_dir("kd") / "model")
    run.current = student
    measure_stage(run, "kd", student, extra={
        "kd": run.cfg.kd.name, "student": run.cfg.student.name, "teacher": run.cfg.teacher.name,
        "shared_tokenizer": shared, "teacher_cache": bool(source and source.cache),
        "skipped_terms": [n for n, t in loss.terms.items() if getattr(t, "skipped", False)],
    })

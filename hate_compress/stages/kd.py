"""KD stage: train the `student` under the frozen teacher with the loss composed by `kd`."""

from __future__ import annotations

import logging
from pathlib import Path

from hate_compress.errors import ConfigError
from hate_compress.evaluation import measure_stage
from hate_compress.kd.teacher import (
    CACHED_SPLITS,
    CachedTeacher,
    LiveTeacher,
    TeacherSource,
    outputs_key,
    tokenizer_fingerprint,
)
from hate_compress.run import Run, Trained, register_stage
from hate_compress.stages.common import build_classifier, fit, loss_for, save

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


@register_stage("kd")
def kd_stage(run: Run) -> None:
    if run.teacher is None:
        raise ConfigError("stages: kd needs the teacher stage before it (e.g. stages=[teacher,kd])")
    needs_attn = "attention" in (run.cfg.kd.get("terms") or {})
    model, tokenizer = build_classifier(run, "student", eager_attention=needs_attn)
    shared = shares_tokenizer(tokenizer, run.teacher.tokenizer)
    if shared:
        tokenizer = run.teacher.tokenizer  # one tokenization serves both models
    run.data.set_tokenizers({"teacher": run.teacher.tokenizer, "student": tokenizer})
    log.info("[kd] student %s (%d layers x %d); tokenizer %s the teacher's",
             run.cfg.student.name, model.num_layers, model.hidden_size,
             "shared with" if shared else "differs from")
    student = Trained("student", model, tokenizer, "student")
    loss = loss_for(run, run.cfg.kd, model, run.teacher.model, shared,
                    bool(run.cfg.student.train.class_weights))
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

"""Assistant stage: progressive distillation, teacher -> assistant -> student (issue 16, item 3).

A large capacity gap makes a student learn less from its teacher than from a smaller,
intermediate one (Mirzadeh et al., "teacher assistant" KD). `pipeline=assistant_kd` runs
`stages=[teacher, assistant, kd]`: the `assistant` config (a student config in conf/assistant/,
e.g. tiny_assistant, 3x192 between the 4x256 teacher and the 2x128 student) is distilled from
the teacher with the `kd` loss by the very routine the kd stage uses (`distil`), saved to
`assistant/model`, measured as its own row; then it *is* the teacher of every later stage: the
student's KD (whose teacher-output cache is keyed by the assistant's weights, so it can never
serve the teacher's logits) and the pruning fine-tune's KD. Speedups, size reduction and F1
retention stay relative to the original teacher's row; so does agreement when the student
shares the assistant's tokenizer (the usual case; otherwise the kd stage re-scores its teacher,
the assistant, on the texts both tokenizers keep).
"""

from __future__ import annotations

import logging

from hate_compress.errors import ConfigError
from hate_compress.kd.terms import build_composite_loss
from hate_compress.kd.text_teacher import TEXT_KINDS, teacher_kind
from hate_compress.models.backbone import resolve_encoder_config
from hate_compress.stages.common import plain
from hate_compress.stages.kd import (
    approx_encoder_params,
    distil,
    encoder_shape,
    teacher_encoder_config,
)
from hate_compress.stages.state import Run, Trained, register_preflight, register_stage
from hate_compress.training.module import build_optimizer

log = logging.getLogger(__name__)


def check_train(cfg, role: str) -> None:
    """What validate_config checks for the student's `train`, for the assistant's."""
    train = cfg.train
    for key in ("lr", "warmup_ratio", "weight_decay"):
        value = float(train.get(key))
        if value < 0 or (key == "lr" and value == 0) or (key == "warmup_ratio" and value > 1):
            raise ConfigError(f"{role}.train.{key}={value} is out of range")
    if int(train.epochs) < 1:
        raise ConfigError(f"{role}.train.epochs={train.epochs} must be >= 1")
    build_optimizer(train, key=f"{role}.train.optimizer")


def check_hop(run: Run, teacher: tuple[str, object], student: tuple[str, object]) -> None:
    """Every KD term accepts this teacher -> student pair; warn when the "student" is bigger."""
    (t_name, t_cfg), (s_name, s_cfg) = teacher, student
    t_dims = (0, 0) if t_cfg is None else encoder_shape(t_cfg)
    build_composite_loss(plain(run.cfg.kd), task=run.data.task, num_labels=run.data.num_labels,
                         student_dims=encoder_shape(s_cfg), teacher_dims=t_dims)
    if t_cfg is not None and approx_encoder_params(s_cfg) > approx_encoder_params(t_cfg):
        warn = log.info if run.cfg.get("smoke") else log.warning  # debug=tiny shrinks the teacher
        warn("%s (%d layers x %d) is larger than %s (%d layers x %d), which teaches it: "
                    "an assistant sits between the teacher and the student in size",
                    s_name, *encoder_shape(s_cfg), t_name, *t_dims)


@register_preflight("assistant")
def preflight_assistant(run: Run) -> None:
    """Before the teacher trains: an assistant is configured, resolves, and the KD terms accept
    both hops (teacher -> assistant, assistant -> student)."""
    cfg = run.cfg
    if cfg.get("assistant") is None:
        raise ConfigError("stages include assistant but no assistant is configured: use "
                          "pipeline=assistant_kd, or assistant=<name> (conf/assistant/, e.g. "
                          "assistant=tiny_assistant)")
    check_train(cfg.assistant, "assistant")
    if cfg.kd.get("method", "distil") != "distil":
        raise ConfigError(f"kd.method={cfg.kd.method}: the assistant chain distils (kd.method="
                          "distil); mutual learning trains its peers from scratch, no assistant")
    assistant = resolve_encoder_config(plain(cfg.assistant.backbone), role="assistant")
    text_teacher = teacher_kind(cfg.teacher) in TEXT_KINDS
    teacher = None if text_teacher else teacher_encoder_config(run)
    check_hop(run, (f"teacher {cfg.teacher.name}", teacher),
              (f"assistant {cfg.assistant.name}", assistant))
    if "kd" in cfg.stages:
        student = resolve_encoder_config(plain(cfg.student.backbone), role="student")
        check_hop(run, (f"assistant {cfg.assistant.name}", assistant),
                  (f"student {cfg.student.name}", student))


@register_stage("assistant", rank=5)
def assistant_stage(run: Run) -> None:
    """Distil the assistant from the teacher (its row: `assistant`), then make it the teacher."""
    run.metrics.setdefault("run", {})["assistant"] = str(run.cfg.assistant.name)
    trained = distil(run, stage="assistant", role="assistant")
    # from here on it teaches: read through the batches' `teacher` tokenization (the kd stage
    # sets it to the assistant's tokenizer), and named for what it is in the kd row
    run.teacher = Trained("assistant", trained.model, trained.tokenizer, "teacher", trained.path)

"""What the training stages share: building a classifier from a role config, and fitting it.

Teacher fine-tuning, KD and the pruning fine-tune differ only in the loss, the teacher source
and the callbacks; `fit` is the one place that turns those into a Lightning run with resumable
checkpoints, dev-best weights and a NaN guard.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hate_compress import distributed
from hate_compress.artifacts import ModelCard, save_classifier
from hate_compress.kd.terms import build_composite_loss
from hate_compress.models.backbone import build_backbone
from hate_compress.models.classifier import HateClassifier
from hate_compress.stages.state import Run, Trained
from hate_compress.storage import OUTPUT_KEY, writing
from hate_compress.training.fsdp import plain_after_fit, plain_copy
from hate_compress.training.module import ClassifierModule, build_optimizer
from hate_compress.training.trainer import load_best_weights, make_trainer, resume_path

log = logging.getLogger(__name__)


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def build_classifier(run: Run, role: str) -> tuple:
    """`(HateClassifier, tokenizer)` for the `teacher` or `student` config group (attention KD
    switches to eager attention afterwards, only when a term really compares attention maps)."""
    role_cfg = run.cfg[role]
    backbone = plain(role_cfg.backbone)
    if backbone.get("tokenizer") == "teacher" and run.teacher is not None \
            and getattr(run.teacher.model, "text_level", False):
        # a text-level teacher (char_ngram, ensemble) has no tokenizer to share
        backbone["tokenizer"] = plain(run.cfg.teacher.student_tokenizer)
    encoder, tokenizer = distributed.rank_zero_first(lambda: build_backbone(  # caches a tokenizer
        backbone, role=role, train_texts=run.data.train_texts,
        cache_dir=run.cfg.paths.cache_dir,
        teacher_tokenizer=run.teacher.tokenizer if run.teacher else None,
    ))
    head = role_cfg.head
    model = HateClassifier(encoder, run.data.num_labels, pooling=head.pooling,
                           head_hidden=head.hidden, dropout=head.dropout)
    return model, tokenizer


def about(run: Run, artifact: str) -> dict:
    """What the model card says about where an artifact comes from (hate_compress/models/card.py)."""
    data = plain(run.cfg.data)
    keys = ("name", "licence", "train_file", "dev_file", "test_file", "dev_size", "test_size", "split_seed")
    roles = {role: {"name": run.cfg[role].get("name"), "backbone": plain(run.cfg[role].backbone)}
             for role in ("teacher", "student") if run.cfg.get(role) is not None}
    return {"artifact": artifact, "data": {k: data.get(k) for k in keys}, **roles}


def model_card(run: Run, metrics: dict | None = None, artifact: str = "model", **extra) -> ModelCard:
    return ModelCard(task=run.data.task, label_names=list(run.data.label_names),
                     positive_label=run.data.schema.positive_label, max_length=run.data.max_length,
                     metrics=metrics or {}, extra={"about": about(run, artifact), **extra})


def save(run: Run, trained: Trained, directory: Path, setting: str = OUTPUT_KEY, **extra) -> Trained:
    card = model_card(run, artifact=trained.name, **extra)

    def write() -> None:
        with writing(directory, setting):
            save_classifier(trained.model, directory, trained.tokenizer, card)

    distributed.on_rank_zero(write, share=False)  # once; the other ranks wait for it
    trained.path = directory
    return trained


def loss_for(run: Run, kd_cfg, student: HateClassifier, teacher: HateClassifier | None,
             shared_tokenizer: bool, class_weights: bool):
    weights = run.data.class_weights() if class_weights else None
    return build_composite_loss(
        plain(kd_cfg), task=run.data.task, num_labels=run.data.num_labels,
        class_weights=weights, student_dims=(student.num_layers, student.hidden_size),
        teacher_dims=None if teacher is None else (teacher.num_layers, teacher.hidden_size),
        shared_tokenizer=shared_tokenizer,
    )


def fit(
    run: Run,
    stage: str,
    trained: Trained,
    loss,
    *,
    train_cfg,
    teacher_source=None,
    shared_tokenizer: bool = True,
    callbacks=(),
    epochs: int | None = None,
    lr: float | None = None,
    module_cls: type[ClassifierModule] = ClassifierModule,
) -> ClassifierModule:
    """Train `trained.model` in place; resumes from the stage's `last.ckpt` when asked.
    `module_cls`: a ClassifierModule subclass with its own steps (mutual learning's)."""
    stage_dir = run.stage_dir(stage)
    # Lightning keeps each module's train/eval mode; a model reloaded from disk (a stored
    # teacher fine-tuned by pruning) is in eval mode and would train without dropout
    trained.model.train()
    if train_cfg.get("freeze_encoder"):
        trained.model.freeze_encoder()
    module = module_cls(
        trained.model, loss, task=run.data.task, label_names=run.data.label_names,
        positive_index=run.data.positive_index, input_key=trained.key,
        teacher_source=teacher_source, shared_tokenizer=shared_tokenizer,
        optimizer=build_optimizer(train_cfg, lr), warmup_ratio=float(train_cfg.warmup_ratio),
        stage=stage,
    )
    trainer = make_trainer(run.cfg, stage_dir, max_epochs=int(epochs or train_cfg.epochs),
                           callbacks=[*callbacks, *run.callbacks.get(stage, [])])
    log.info("[%s] training %s for %d epoch(s) on %d examples", stage, trained.name,
             trainer.max_epochs, run.data.split_sizes["train"])
    unwrapped = plain_copy(trained.model, trainer.strategy)  # FSDP wraps blocks in place
    try:
        with writing(stage_dir, OUTPUT_KEY):  # checkpoints and logs: a full disk is one line
            trainer.fit(module, datamodule=run.data,
                        ckpt_path=resume_path(stage_dir, bool(run.cfg.resume)))
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into sys.exit(1) after its shutdown
            raise KeyboardInterrupt from None
        raise
    if unwrapped is not None:  # continue with a plain model holding the fit's weights
        trained.model = module.model = plain_after_fit(unwrapped, trainer, last=bool(callbacks))
    elif trainer.checkpoint_callback is not None and not callbacks:
        # compression callbacks change the architecture mid-fit; keep their final weights
        load_best_weights(module, trainer)
    return module

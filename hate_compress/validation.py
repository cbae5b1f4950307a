"""Config checks that run before any model is loaded.

A bad `prune.sparsity` must not surface after an hour of teacher training and KD: every stage's
options are checked here, up front, with the same one-line messages the stages themselves use.
Keys no config group defines (`+kd.alpa=0.5`) are refused (`config_keys`). That includes
things only a later stage reads (the student's architecture, KD loss terms,
pruning/quantization options, Lightning Trainer arguments) and a `teacher.checkpoint`
directory, whose weights are refused here if they are not safetensors.
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hate_compress.config_keys import unknown_key_message, unknown_keys
from hate_compress.errors import ConfigError, ModelLoadError
from hate_compress.registry import with_defaults

log = logging.getLogger(__name__)

# Trainer arguments make_trainer sets itself, per stage
_TRAINER_OWNED = {"max_epochs": "the stage's epochs (teacher.train.epochs, student.train.epochs, "
                                "prune.finetune_epochs)",
                  "default_root_dir": "the run directory", "logger": "the logger group",
                  "callbacks": "the stage", "enable_checkpointing": "the stage"}


def _number(node, key: str) -> float:
    """`node[last part of key]` as a finite float; `key` is the full dotted name for messages."""
    value = node.get(key.rsplit(".", 1)[-1])
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key}={value!r} must be finite")
    return number


def validate_config(cfg: DictConfig) -> None:
    from hate_compress.compress.pruning import PRUNERS
    from hate_compress.compress.quantization import QUANTIZERS
    from hate_compress.training.module import build_optimizer

    _check_known_keys(cfg)
    stages = list(cfg.stages)
    uses_kd = "kd" in stages or ("prune" in stages and cfg.prune.method != "none"
                                 and cfg.prune.get("kd", True))
    if uses_kd:
        alpha = _number(cfg.kd, "kd.alpha")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"kd.alpha={alpha} is outside [0, 1] (the weight of the teacher side)")
        temperature = _number(cfg.kd, "kd.temperature")
        if temperature <= 0:
            raise ConfigError(f"kd.temperature={temperature} must be > 0")
        _check_kd_terms(cfg.kd)
    if "prune" in stages and cfg.prune.method != "none":
        PRUNERS.get(cfg.prune.method)
        sparsity = _number(cfg.prune, "prune.sparsity")
        if not 0.0 <= sparsity < 1.0:
            raise ConfigError(f"prune.sparsity={sparsity} is outside [0, 1)")
        if int(cfg.prune.finetune_epochs) < 0:
            raise ConfigError(f"prune.finetune_epochs={cfg.prune.finetune_epochs} must be >= 0")
        _check_prune_options(cfg.prune)
    if "quant" in stages:
        QUANTIZERS.get(cfg.quant.method)
    if "quant" in stages and cfg.quant.method != "none":
        _check_quant_options(cfg.quant)
    text_teacher = str(cfg.teacher.get("kind") or "neural") != "neural"
    for role in ("student",) if text_teacher else ("teacher", "student"):
        train = cfg[role].train
        for key in ("lr", "warmup_ratio", "weight_decay"):
            value = _number(train, f"{role}.train.{key}")
            if value < 0 or (key == "lr" and value == 0) or (key == "warmup_ratio" and value > 1):
                raise ConfigError(f"{role}.train.{key}={value} is out of range")
        if int(train.epochs) < 1:
            raise ConfigError(f"{role}.train.epochs={train.epochs} must be >= 1")
        build_optimizer(train, key=f"{role}.train.optimizer")
    gate = _number(cfg.teacher, "teacher.min_f1")
    if not 0.0 <= gate <= 1.0:
        raise ConfigError(f"teacher.min_f1={gate} is outside [0, 1]")
    if cfg.teacher.get("checkpoint"):
        check_teacher_checkpoint(Path(str(cfg.teacher.checkpoint)).expanduser())
    elif not text_teacher:  # char_ngram / ensemble: checked by the teacher preflight
        _check_backbone(cfg.teacher.backbone, "teacher")
    if "kd" in stages:
        _check_backbone(cfg.student.backbone, "student")
    _check_trainer(cfg)
    _check_explain(cfg.get("measure"))


def _check_explain(measure) -> None:
    """measure.explain_n / explain_steps: whole numbers a run can use (checked even when
    explain is off, so switching it on later does not fail after training)."""
    if measure is None:
        return
    if measure.get("baseline", False) not in (True, False, "auto"):
        raise ConfigError(f"measure.baseline={measure.get('baseline')!r} must be true, false or "
                          "auto")
    if not isinstance(measure.get("explain", False), bool):
        raise ConfigError(f"measure.explain={measure.get('explain')!r} must be true or false")
    for key, low in (("explain_n", 1), ("explain_steps", 2)):
        value = measure.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"measure.{key}={value!r} must be a whole number >= {low}")


def _check_known_keys(cfg: DictConfig) -> None:
    """A key no config group defines was appended with `+` (a typo such as `+kd.alpa=0.5`):
    the run would silently ignore it."""
    unknown = unknown_keys(OmegaConf.to_container(cfg, resolve=False))
    if unknown:
        raise ConfigError(unknown_key_message(unknown[0]))


def check_teacher_checkpoint(directory: Path) -> None:
    """A saved teacher must be one of ours, with safetensors weights — checked before any data
    is read, and without unpickling anything a stranger may have put there."""
    from hate_compress.artifacts import META_FILE, WEIGHTS_FILE
    from hate_compress.safety import check_safetensors, pickle_weight_files

    key = f"teacher.checkpoint={directory}"
    if not directory.is_dir():
        raise ConfigError(f"{key}: no saved hate_compress model there (directory does not exist)")
    weights = directory / WEIGHTS_FILE
    pickles = pickle_weight_files(directory)
    if not weights.exists() and pickles:
        raise ModelLoadError(
            f"{key}: refusing to load {', '.join(pickles)}: pickle-based weights can run code when "
            f"loaded; only {WEIGHTS_FILE} is read — convert them to safetensors, or point "
            "teacher.checkpoint at a directory saved by hate_compress"
        )
    if not (directory / META_FILE).exists():
        raise ConfigError(f"{key}: no saved hate_compress model there (no {META_FILE})")
    from hate_compress.models.char_ngram import WEIGHTS_FILE as CHAR_NGRAM_WEIGHTS
    from hate_compress.models.char_ngram import is_char_ngram_dir

    if is_char_ngram_dir(directory):  # a char_ngram teacher: JSON + its own safetensors
        weights = directory / CHAR_NGRAM_WEIGHTS
    if not weights.exists():
        raise ModelLoadError(f"{key}: {weights.name} is missing")
    check_safetensors(weights, what="weights file")


def _check_kd_terms(kd) -> None:
    from hate_compress.kd.terms import TERMS

    terms = kd.get("terms")
    if terms is None:
        return
    if not isinstance(terms, (DictConfig, dict)):
        raise ConfigError("kd.terms must be a mapping of term name -> options")
    for name in terms:
        TERMS.get(name)


def _check_prune_options(prune) -> None:
    """The registered pruner's declared options, and (fine-tune path) the same value checks the
    prune stage's callback applies, minus the model."""
    from hate_compress.compress.pruning import PruningCallback, checked_options

    options = OmegaConf.to_container(prune.get("options") or {}, resolve=True)
    checked_options(prune.method, options, key="prune.options")
    if int(prune.finetune_epochs) > 0:
        PruningCallback(prune.method, float(prune.sparsity), **options)


def _check_quant_options(quant) -> None:
    from hate_compress.compress.quantization import get_quantizer

    with_defaults(quant.get("options") or {}, get_quantizer(quant.method).options, "quant",
                  f"quant.method={quant.method!r}")
    if int(quant.get("calibration_batches", 0)) < 0:
        raise ConfigError(f"quant.calibration_batches={quant.calibration_batches} must be >= 0")


def _check_backbone(backbone, role: str) -> None:
    """What `build_backbone` would reject — but for the student that is only after the teacher
    has trained, so it is checked here too."""
    name_or_path, scratch = backbone.get("name_or_path"), backbone.get("scratch")
    if bool(name_or_path) == bool(scratch):
        raise ConfigError(
            f"{role}.backbone: set exactly one of name_or_path (pretrained) or scratch (random init)"
        )
    if backbone.get("trust_remote_code"):
        log.warning("%s.backbone.trust_remote_code=true: the model repository's own Python code "
                    "will run on this machine", role)
    if scratch:
        hidden, heads = scratch.get("hidden_size"), scratch.get("num_attention_heads")
        if isinstance(hidden, int) and isinstance(heads, int):
            if heads < 1 or hidden < 1:
                raise ConfigError(f"{role}.backbone.scratch: hidden_size={hidden} and "
                                  f"num_attention_heads={heads} must be >= 1")
            if hidden % heads:
                raise ConfigError(
                    f"{role}.backbone.scratch: hidden_size={hidden} is not divisible by "
                    f"num_attention_heads={heads}"
                )


def _check_trainer(cfg: DictConfig) -> None:
    """An unknown `trainer.*` key would otherwise be a TypeError traceback from pl.Trainer."""
    import lightning.pytorch as pl

    accepted = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    for key in cfg.get("trainer") or {}:
        if key in _TRAINER_OWNED:
            raise ConfigError(f"trainer.{key} cannot be set: it comes from {_TRAINER_OWNED[key]}")
        if key not in accepted:
            raise ConfigError(f"trainer.{key} is not a Lightning Trainer argument")
    from hate_compress.distributed import launch_problem
    from hate_compress.training.fsdp import check_fsdp

    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    prune = OmegaConf.to_container(cfg.prune, resolve=True) if cfg.get("prune") else None
    check_fsdp(trainer, prune, list(cfg.stages))
    problem = launch_problem(trainer)
    if problem:
        raise ConfigError(problem)

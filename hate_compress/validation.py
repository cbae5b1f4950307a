"""Config checks that run before any model is loaded.

A bad `prune.sparsity` must not surface after an hour of teacher training and KD: every stage's
options are checked here, up front, with the same one-line messages the stages themselves use.
"""

from __future__ import annotations

import math

from omegaconf import DictConfig

from hate_compress.errors import ConfigError


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

    stages = list(cfg.stages)
    if "kd" in stages or ("prune" in stages and cfg.prune.get("kd", True)):
        alpha = _number(cfg.kd, "kd.alpha")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"kd.alpha={alpha} is outside [0, 1] (the weight of the teacher side)")
        temperature = _number(cfg.kd, "kd.temperature")
        if temperature <= 0:
            raise ConfigError(f"kd.temperature={temperature} must be > 0")
    if "prune" in stages and cfg.prune.method != "none":
        if cfg.prune.method not in PRUNERS:
            raise ConfigError(f"prune.method={cfg.prune.method!r} is not one of {sorted(PRUNERS)}")
        sparsity = _number(cfg.prune, "prune.sparsity")
        if not 0.0 <= sparsity < 1.0:
            raise ConfigError(f"prune.sparsity={sparsity} is outside [0, 1)")
        if int(cfg.prune.finetune_epochs) < 0:
            raise ConfigError(f"prune.finetune_epochs={cfg.prune.finetune_epochs} must be >= 0")
    if "quant" in stages and cfg.quant.method not in {"none", *QUANTIZERS}:
        raise ConfigError(f"quant.method={cfg.quant.method!r} is not one of "
                          f"{sorted({'none', *QUANTIZERS})}")
    for role in ("teacher", "student"):
        train = cfg[role].train
        for key in ("lr", "warmup_ratio", "weight_decay"):
            value = _number(train, f"{role}.train.{key}")
            if value < 0 or (key == "lr" and value == 0) or (key == "warmup_ratio" and value > 1):
                raise ConfigError(f"{role}.train.{key}={value} is out of range")
        if int(train.epochs) < 1:
            raise ConfigError(f"{role}.train.epochs={train.epochs} must be >= 1")
    gate = _number(cfg.teacher, "teacher.min_f1")
    if not 0.0 <= gate <= 1.0:
        raise ConfigError(f"teacher.min_f1={gate} is outside [0, 1]")

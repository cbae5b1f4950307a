"""FSDP for teachers and students too large for one GPU: the strategy `hardware=fsdp` builds.

Lightning's `FSDPStrategy` shards parameters, gradients and optimizer state across GPUs. The
unit of sharding here is one transformer block (`auto_wrap_policy` = the encoder layer classes
of every backbone the configs ship: BERT, XLM-R, ELECTRA, ALBERT, DistilBERT): a block is
gathered, run and freed in turn, so peak memory holds one block's full weights plus every
rank's shard. The same classes are the activation-checkpointing units when that is switched on.

What it needs, and why it is not run here:
* CUDA GPUs: Lightning refuses FSDP with `accelerator=cpu` ("The strategy `fsdp` requires a GPU
  accelerator"), so on this CPU machine only the wiring is tested (tests/test_fsdp.py).
* an external launcher (torchrun / srun): FSDP's own launcher reruns the command line at the
  first fit, which a multi-stage pipeline cannot join (`distributed.launch_problem`).
* `state_dict_type: full`: checkpoints are one consolidated file written by rank 0, loadable
  without FSDP. After a fit the model's blocks are FSDP-wrapped in place (flat, sharded
  parameters), but saving, measuring and compressing need a plain model: `fit` continues with
  an unwrapped copy taken before the fit, loaded from that checkpoint (`plain_after_fit`).
* no pruning fine-tune: masks and physically shrunk blocks on sharded flat parameters are not
  supported; `check_fsdp` refuses it before anything trains.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from hydra.utils import get_class
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from hate_compress.errors import ConfigError
from hate_compress.safety import safe_torch_load

# the transformer block of each encoder family the configs ship
ENCODER_LAYERS = (
    "transformers.models.bert.modeling_bert.BertLayer",
    "transformers.models.xlm_roberta.modeling_xlm_roberta.XLMRobertaLayer",
    "transformers.models.electra.modeling_electra.ElectraLayer",
    "transformers.models.albert.modeling_albert.AlbertLayer",
    "transformers.models.distilbert.modeling_distilbert.TransformerBlock",
)
TARGET = "hate_compress.training.fsdp.fsdp_strategy"


def import_layer_classes(names: Iterable[str]) -> set[type[nn.Module]]:
    classes = set()
    for name in names:
        try:
            cls = get_class(str(name))
        except Exception:  # noqa: BLE001 - hydra wraps ImportError/AttributeError differently
            raise ConfigError(f"trainer.strategy.layer_classes: cannot import {name}") from None
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ConfigError(f"trainer.strategy.layer_classes: {name} is not a torch module class")
        classes.add(cls)
    return classes


def fsdp_strategy(layer_classes: Iterable[str] = ENCODER_LAYERS, *, sharding_strategy: str = "FULL_SHARD",
                  state_dict_type: str = "full", activation_checkpointing: bool = False,
                  cpu_offload: bool = False, **kwargs: Any) -> FSDPStrategy:
    """Lightning's FSDPStrategy sharding (and optionally checkpointing) per encoder block."""
    classes = import_layer_classes(layer_classes)
    return FSDPStrategy(
        auto_wrap_policy=classes,
        activation_checkpointing_policy=classes if activation_checkpointing else None,
        sharding_strategy=sharding_strategy, state_dict_type=state_dict_type,
        cpu_offload=cpu_offload, **kwargs,
    )


def is_fsdp(strategy: Any) -> bool:
    return isinstance(strategy, FSDPStrategy)


def uses_fsdp(trainer: Mapping[str, Any]) -> bool:
    strategy = trainer.get("strategy")
    if isinstance(strategy, Mapping):
        return str(strategy.get("_target_", "")).endswith(("FSDPStrategy", "fsdp_strategy"))
    return str(strategy).startswith("fsdp")


def check_fsdp(trainer: Mapping[str, Any], prune: Mapping[str, Any] | None, stages: list[str]) -> None:
    """Before anything trains: an FSDP config that cannot run says so in one line."""
    if not uses_fsdp(trainer):
        return
    if str(trainer.get("accelerator")) not in ("gpu", "cuda", "auto"):
        raise ConfigError(f"trainer.strategy=FSDP needs GPUs (trainer.accelerator="
                          f"{trainer.get('accelerator')}): Lightning runs FSDP on CUDA only; use "
                          "hardware=ddp_cpu to train on several CPU processes")
    strategy = trainer.get("strategy")
    if isinstance(strategy, Mapping) and str(strategy.get("_target_")) == TARGET:
        import_layer_classes(strategy.get("layer_classes", ENCODER_LAYERS))
        if strategy.get("state_dict_type", "full") != "full":
            raise ConfigError("trainer.strategy.state_dict_type must be full: the pipeline reloads "
                              "each stage's checkpoint into a plain model to save and measure it")
    if prune and "prune" in stages and prune.get("method") != "none" \
            and int(prune.get("finetune_epochs") or 0) > 0:
        raise ConfigError(f"prune={prune.get('name')} fine-tunes under FSDP, which pruning masks and "
                          "shrunk blocks do not support: run pipeline=teacher_kd with "
                          "hardware=fsdp, or prune with prune.finetune_epochs=0 (one-shot)")


def plain_copy(model: nn.Module, strategy: Any) -> nn.Module | None:
    """An unwrapped copy of `model` to continue with after an FSDP fit (None otherwise)."""
    return copy.deepcopy(model) if is_fsdp(strategy) else None


def plain_after_fit(plain: nn.Module, trainer: Any, *, last: bool = False) -> nn.Module:
    """`plain` with the fit's weights: the dev-best (or last) full checkpoint, keys `model.*`."""
    callback = trainer.checkpoint_callback
    path = getattr(callback, "last_model_path" if last else "best_model_path", "") or \
        getattr(callback, "last_model_path", "")
    if not path:
        raise ConfigError("FSDP: the fit wrote no checkpoint to take the trained weights from")
    state = safe_torch_load(path, what="checkpoint", hint="rerun the stage")["state_dict"]
    plain.load_state_dict({k.removeprefix("model."): v for k, v in state.items()
                           if k.startswith("model.")})
    return plain

"""`hardware=fsdp`: composes, validates, and builds the strategy the pipeline needs — without a GPU.

Lightning runs FSDP on CUDA only, so what is tested here is the wiring (hate_compress/training/
fsdp.py): the strategy object, the auto-wrap policy choosing exactly the encoder blocks of our
models, bf16-mixed precision in the hardware group and in the teacher store key, the checks that
refuse what cannot run, and how a plain model is recovered from an FSDP fit's checkpoint. A fit
under FSDP needs a GPU node (README "Scaling out").
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from transformers.models.bert.modeling_bert import BertLayer

from hate_compress.errors import ConfigError
from hate_compress.pipeline.runner import make_data
from hate_compress.stages.common import build_classifier
from hate_compress.stages.state import Run
from hate_compress.stages.teacher import teacher_key
from hate_compress.training.fsdp import plain_after_fit
from hate_compress.validation import validate_config
from tests.test_distributed import SLURM_VARS, TORCHRUN_VARS, torchrun_env


@pytest.fixture
def under_torchrun(monkeypatch):
    for name in (*TORCHRUN_VARS, *SLURM_VARS):
        monkeypatch.delenv(name, raising=False)
    torchrun_env(monkeypatch, rank=0, world=4)
    return monkeypatch


def test_fsdp_config_composes_and_validates_under_torchrun(tiny_cfg, under_torchrun):
    cfg = tiny_cfg("hardware=fsdp", "pipeline=teacher_kd")
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    validate_config(cfg)  # no error: the config is runnable as launched


def test_fsdp_without_a_launcher_says_how_to_start_it(tiny_cfg, monkeypatch):
    for name in (*TORCHRUN_VARS, *SLURM_VARS):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"torchrun --nproc_per_node=N -m hate_compress"):
        validate_config(tiny_cfg("hardware=fsdp", "pipeline=teacher_kd"))


@pytest.mark.parametrize("overrides, message", [
    (("trainer.accelerator=cpu",), r"needs GPUs .*hardware=ddp_cpu"),
    (("pipeline=kd_prune", "prune=magnitude"), r"prune=magnitude fine-tunes under FSDP"),
    (("trainer.strategy.layer_classes=[transformers.NoSuchLayer]",),
     r"trainer.strategy.layer_classes: cannot import transformers.NoSuchLayer"),
    (("trainer.strategy.state_dict_type=sharded",), r"state_dict_type must be full"),
])
def test_fsdp_configs_that_cannot_run_are_refused_in_one_line(tiny_cfg, under_torchrun, overrides,
                                                               message):
    with pytest.raises(ConfigError, match=message):
        validate_config(tiny_cfg("hardware=fsdp", "pipeline=teacher_kd", *overrides))


def test_one_shot_pruning_is_allowed_under_fsdp(tiny_cfg, under_torchrun):
    validate_config(tiny_cfg("hardware=fsdp", "pipeline=kd_prune", "prune=magnitude",
                             "prune.finetune_epochs=0"))


def test_strategy_shards_per_encoder_block(tiny_cfg, tmp_path):
    cfg = tiny_cfg("hardware=fsdp", "trainer.strategy.activation_checkpointing=true")
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.sharding_strategy.name == "FULL_SHARD"
    assert strategy._state_dict_type == "full"
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy)
    assert BertLayer in policy._module_classes and len(policy._module_classes) == 5
    # activation checkpointing uses the same units
    assert strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == \
        policy._module_classes
    # on the real tiny teacher the policy picks exactly its encoder blocks (one per layer)
    run = Run(cfg, tmp_path / "run", make_data(cfg))
    model, _ = build_classifier(run, "teacher")
    wrapped = policy._run_policy(model, set(), {})
    blocks = [m for m in wrapped if m is not model]
    assert blocks and all(isinstance(m, BertLayer) for m in blocks)
    assert len(blocks) == cfg.teacher.backbone.scratch.num_hidden_layers


def test_bf16_mixed_is_part_of_the_teacher_store_key(tiny_cfg, tmp_path):
    def key(*overrides):
        cfg = tiny_cfg("pipeline=teacher", *overrides)
        return teacher_key(Run(cfg, tmp_path / "run", make_data(cfg)))

    fsdp = key("hardware=fsdp")
    assert fsdp != key("hardware=fsdp", "trainer.precision=32-true")
    assert fsdp != key("hardware=fsdp", "trainer.strategy.sharding_strategy=SHARD_GRAD_OP")
    assert fsdp != key()


def test_a_plain_model_is_recovered_from_the_fsdp_checkpoint(tmp_path):
    """After an FSDP fit the pipeline continues with an unwrapped copy holding the fit's
    weights, read from the consolidated (state_dict_type=full) checkpoint."""
    trained = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    plain = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    best, last = tmp_path / "best.ckpt", tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}}, best)
    torch.save({"state_dict": {f"model.{k}": v * 0 for k, v in trained.state_dict().items()}}, last)
    trainer = SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_path=str(best),
                                                                  last_model_path=str(last)))
    restored = plain_after_fit(plain, trainer)
    for a, b in zip(restored.state_dict().values(), trained.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert all(float(v.abs().sum()) == 0 for v in plain_after_fit(plain, trainer, last=True)
               .state_dict().values())

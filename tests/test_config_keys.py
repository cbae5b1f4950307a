"""Unknown config keys: a typo fails with the closest known key, every shipped config passes.

The known keys are read from the group yaml files (`hate_compress/config_keys.py`); these tests
make sure that derivation accepts every option and experiment we ship, keeps the free-form
subtrees open, and that the pre-Hydra check sees the same keys.
"""

from __future__ import annotations

from itertools import zip_longest

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hate_compress.cli import group_options, unknown_override_key
from hate_compress.config_keys import FREE_FORM, known_tree, unknown_key_message, unknown_keys
from tests.conftest import CONF

GROUPS = ["data", "teacher", "student", "kd", "prune", "quant", "hardware", "trainer", "logger",
          "measure", "paths", "pipeline", "debug", "extras"]


def shipped_choices() -> list[list[str]]:
    """Override lists that together select every option of every group (one option of each
    group per list, to keep the number of compositions small), every experiment and the sweep."""
    columns = [[f"{g}={o}" for o in group_options(g)] for g in GROUPS]
    together = [[c for c in row if c] for row in zip_longest(*columns)]
    return [*together, *([f"experiment={e}"] for e in group_options("experiment")),
            ["hparams_search=kd_optuna"]]


def test_every_shipped_config_has_only_known_keys():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for overrides in shipped_choices():
            cfg = compose("config", overrides=overrides)
            assert unknown_keys(OmegaConf.to_container(cfg, resolve=False)) == [], overrides


@pytest.mark.parametrize(("key", "message"), [
    ("kd.alpa", "unknown key kd.alpa, did you mean kd.alpha?"),
    ("seeed", "unknown key seeed, did you mean seed?"),
    ("teacher.lr", "unknown key teacher.lr, did you mean teacher.train.lr?"),
    ("data.txt_column", "unknown key data.txt_column, did you mean data.text_column?"),
    ("prune.sparsityy", "unknown key prune.sparsityy, did you mean prune.sparsity?"),
    ("targets.f1", "unknown key targets.f1; targets keys: min_f1_retention, min_size_reduction"),
    ("hardware.precision", "unknown key hardware.precision, did you mean trainer.precision? "
                           "(the hardware group writes there)"),
])
def test_unknown_key_names_the_closest_known_one(key, message):
    assert unknown_key_message(key) == message


@pytest.mark.parametrize("key", [
    "kd.alpha", "quant.calibration_batches",  # defined by some option of the group
    "teacher.backbone.scratch.hidden_dropout_prob", "kd.terms.hidden.pooling",
    "prune.options.anything", "trainer.precision", "trainer.strategy.find_unused_parameters",
    "data.binary_from.negative", "logger.save_dir",
])
def test_known_and_free_form_keys_pass(key):
    assert unknown_key_message(key) is None


def test_free_form_subtrees_exist_in_the_configs():
    """A renamed subtree must not leave a stale entry that no longer opens anything."""
    def has(node, keys: list[str]) -> bool:
        return not keys or (isinstance(node, dict) and keys[0] in node and has(node[keys[0]], keys[1:]))

    for path in FREE_FORM - {"hydra", "hparams_search", "logger", "trainer"}:
        group, *rest = path.split(".")
        # the group's options as composed (conf/assistant/ takes its keys from student/_base)
        assert has(known_tree().get(group), rest), path


def test_command_line_check_skips_what_hydra_or_validation_handles():
    assert unknown_override_key(["kd=logit", "kd.alpa=0.5"]) == ("unknown key kd.alpa, did you "
                                                                 "mean kd.alpha?")
    assert unknown_override_key(["-m", "kd.alpha=0.1,0.5", "teacher=tiny_teacher,gbert",
                                 "+kd.alpa=1", "~kd.cache", "hydra.verbose=true",
                                 "hydra/launcher=local_parallel", "trainer.limit_val_batches=1",
                                 "student.backbone.scratch.num_hidden_layers=1"]) is None

"""The config tree's conventions (lightning-hydra-template style): `debug=tiny`, every
experiment runnable, `hardware` inside `trainer`, the `extras` group, the optimizer as a
`_partial_` config, the MLflow logger, and aliases that compose to what they alias."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hate_compress.cli import group_options, unknown_override_key
from hate_compress.errors import ConfigError
from hate_compress.extras import apply_extras
from hate_compress.pipeline.runner import run_pipeline
from hate_compress.training.module import build_optimizer
from hate_compress.training.trainer import make_trainer
from hate_compress.validation import validate_config
from tests.conftest import CONF, ROOT, compose_cfg

ALIAS_MARK = "# Alias kept for the first experiment grid's short name"


def aliases(group: str) -> dict[str, str]:
    """`{"baseline_v1": "bangla_teacher_finetune", ...}`: alias files and what they pull in."""
    found = {}
    for path in (CONF / group).glob("*.yaml"):
        if ALIAS_MARK in path.read_text():
            found[path.stem] = OmegaConf.load(path).defaults[0]
    return found


def plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=False)


# -- experiments ---------------------------------------------------------------------------------
RUNNABLE = sorted(set(group_options("experiment")) - set(aliases("experiment")))


def hub_free(cfg_overrides: list[str], tmp_path: Path) -> list[str]:
    """Swap hub models (gbert, mdistilbert, ...) for the offline tiny ones: no internet here."""
    cfg = compose_cfg(tmp_path, cfg_overrides)
    extra = []
    if cfg.teacher.backbone.get("name_or_path"):
        extra.append("teacher=tiny_teacher")
    if cfg.student.backbone.get("name_or_path"):
        extra.append("student=tiny_student")
    return extra


def sweep_cells(cfg) -> list[list[str]]:
    """The command-line overrides of every cell of a `hydra.mode: MULTIRUN` experiment."""
    params = cfg.hydra.sweeper.params
    axes = [[f"{key}={value}" for value in str(values).split(",")] for key, values in params.items()]
    return [list(cell) for cell in itertools.product(*axes)]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache (tokenizers, teacher store) for all experiments: equal teachers train once."""
    return tmp_path_factory.mktemp("experiment_cache")


@pytest.mark.parametrize("experiment", RUNNABLE)
def test_every_experiment_runs_with_debug_tiny(experiment, tmp_path, shared_cache):
    """No experiment can rot: each one composes, validates and (single runs) runs end to end
    with debug=tiny data=synthetic; a multirun experiment has each cell composed and validated
    (the tiny matrix runs end to end in tests/test_matrix.py)."""
    base = [f"experiment={experiment}", f"paths.cache_dir={shared_cache}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*base, "data=synthetic", "debug=tiny"],
                      return_hydra_config=True)
    if str(cfg.hydra.mode) == "RunMode.MULTIRUN":
        for cell in sweep_cells(cfg):
            overrides = [*base, *cell]
            cell_cfg = compose_cfg(tmp_path, [*overrides, *hub_free(overrides, tmp_path)])
            validate_config(cell_cfg)
        return
    cfg = compose_cfg(tmp_path, [*base, *hub_free(base, tmp_path)])
    assert cfg.teacher.min_f1 == 0.0 and cfg.teacher.train.epochs == 1
    metrics = run_pipeline(cfg, tmp_path / "run")
    assert metrics["run"]["status"] == "ok", metrics["run"]
    assert [s for s in cfg.stages if s in metrics] == list(cfg.stages)


@pytest.mark.parametrize(("group", "alias"), [(g, a) for g in ("experiment", "kd")
                                               for a in sorted(aliases(g))])
def test_aliases_compose_to_what_they_name(group, alias):
    target = aliases(group)[alias]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert plain(compose("config", overrides=[f"{group}={alias}"])) == plain(
            compose("config", overrides=[f"{group}={target}"]))


def test_seed_names_are_all_kept_as_aliases():
    names = {*(f"baseline_v{i}" for i in range(1, 5)), *(f"kd_v{i}" for i in range(1, 4)),
             *(f"prune_v{i}" for i in range(1, 4)), *(f"quant_v{i}" for i in range(1, 5))}
    assert names <= set(aliases("experiment"))
    assert {"kd_v1", "kd_v2", "kd_v3"} <= set(aliases("kd"))


def test_kd_options_share_base_defaults():
    """alpha/temperature/per_label_alpha/cache live in kd/_base.yaml, not in each option."""
    for path in (CONF / "kd").glob("*.yaml"):
        node = OmegaConf.load(path)
        if path.stem == "_base":
            continue
        assert "per_label_alpha" not in node and "cache" not in node, path.name
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            kd = compose("config", overrides=[f"kd={path.stem}"]).kd
        assert {"alpha", "temperature", "per_label_alpha", "cache", "terms"} <= set(kd), path.name


# -- debug, hardware ----------------------------------------------------------------------------
def test_debug_tiny_is_a_smoke_sized_run_that_passes_the_gate(tiny_cfg):
    cfg = tiny_cfg()
    assert cfg.teacher.min_f1 == 0.0
    assert cfg.teacher.backbone.scratch.num_hidden_layers == 1
    assert cfg.trainer.limit_train_batches == 4 and cfg.measure.latency is False
    assert tiny_cfg(tiny=False).teacher.min_f1 > 0  # only the debug config lowers the gate


def test_hardware_is_merged_into_the_trainer(tiny_cfg, tmp_path):
    cfg = tiny_cfg("hardware=ddp_cpu")
    assert "hardware" not in cfg
    assert cfg.trainer.devices == 2 and cfg.trainer.accelerator == "cpu"
    trainer = make_trainer(cfg, tmp_path / "teacher", max_epochs=1)
    assert type(trainer.strategy).__name__ == "DDPStrategy"
    assert tiny_cfg("trainer.precision=bf16-mixed").trainer.precision == "bf16-mixed"


def test_old_hardware_keys_point_at_the_trainer():
    assert unknown_override_key(["hardware.devices=2"]) == (
        "unknown key hardware.devices, did you mean trainer.devices? (the hardware group writes "
        "there)")


# -- extras -------------------------------------------------------------------------------------
LEAFSPEC = r".*isinstance\(treespec, LeafSpec\).*"


def test_importing_the_package_changes_no_warning_filter():
    code = ("import warnings, hate_compress.pipeline.runner; "
            "print(sum('LeafSpec' in str(f[1]) for f in warnings.filters))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "0"


def test_extras_install_the_configured_filters(tiny_cfg, monkeypatch):
    import logging
    import warnings

    monkeypatch.setattr(warnings, "filters", list(warnings.filters))
    monkeypatch.setattr(logging.getLogger("torchao"), "level", logging.NOTSET)
    apply_extras(tiny_cfg("extras=none").extras)
    assert not any(LEAFSPEC == getattr(f[1], "pattern", None) for f in warnings.filters)
    apply_extras(tiny_cfg().extras)
    apply_extras(tiny_cfg().extras)  # idempotent
    assert sum(LEAFSPEC == getattr(f[1], "pattern", None) for f in warnings.filters) == 1
    assert logging.getLogger("torchao").level == logging.ERROR


# -- optimizer ----------------------------------------------------------------------------------
def test_optimizer_is_a_partial_config_following_train_lr(tiny_cfg):
    cfg = tiny_cfg("student.train.lr=0.123", "student.train.weight_decay=0.05")
    factory = build_optimizer(cfg.student.train)
    assert isinstance(factory, functools.partial)
    optimizer = factory([torch.nn.Parameter(torch.zeros(2, 2))])
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 0.123 and optimizer.defaults["weight_decay"] == 0.05
    assert build_optimizer(cfg.student.train, lr=0.5).keywords["lr"] == 0.5  # prune.lr


def test_optimizer_class_can_be_swapped(tiny_cfg):
    cfg = tiny_cfg("student.train.optimizer._target_=torch.optim.SGD",
                   "+student.train.optimizer.momentum=0.9", "student.train.lr=0.01")
    validate_config(cfg)
    optimizer = build_optimizer(cfg.student.train)([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9


def test_module_uses_the_configured_optimizer_without_decay_on_biases(tiny_cfg):
    from hate_compress.training.module import ClassifierModule

    cfg = tiny_cfg("student.train.optimizer._target_=torch.optim.SGD")
    model = torch.nn.Sequential(torch.nn.Linear(3, 3))
    module = ClassifierModule(model, torch.nn.Identity(), task="binary", label_names=["a", "b"],
                              optimizer=build_optimizer(cfg.student.train))
    module.trainer = type("T", (), {"estimated_stepping_batches": 10})()
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]


def test_bad_optimizer_is_one_config_error(tiny_cfg):
    with pytest.raises(ConfigError, match=r"^student\.train\.optimizer: Invalid learning rate"):
        build_optimizer(tiny_cfg("student.train.optimizer.lr=-1").student.train,
                        key="student.train.optimizer")
    assert instantiate(tiny_cfg().teacher.train.optimizer).func is torch.optim.AdamW


# -- logger=mlflow ------------------------------------------------------------------------------
def test_mlflow_logger_writes_a_run_per_stage_with_metrics(tiny_cfg, tmp_path):
    from mlflow import MlflowClient

    cfg = tiny_cfg("logger=mlflow", "pipeline=teacher", "run_name=mlf")
    run_pipeline(cfg, tmp_path / "run")
    store = tmp_path / "outputs" / "mlruns" / "mlflow.db"
    assert store.exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("hate_compress")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.data.tags["stage"] for r in runs] == ["teacher"]
    assert {"train/loss", "val/macro_f1"} <= set(runs[0].data.metrics)
    assert runs[0].info.run_name == "run/teacher"


# -- comments -----------------------------------------------------------------------------------
MISSING_DOCS = ("walkthrough", "experiment_plan", "experiment plan", "kd_insights", "seeds/",
                "not_true_distillation")


RESULTS = ROOT / "bench" / "results"


def test_no_comment_cites_a_document_outside_the_repo():
    """Comments and docs say the fact, or point into docs/: the seed project's notes are not
    shipped, so "see the walkthrough" tells a reader nothing."""
    this = Path(__file__).resolve()
    files = [p for folder in ("hate_compress", "conf", "tests", "bench", "docs")
             for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".yaml", ".md"}
             and RESULTS not in p.parents]  # run outputs (gitignored) hold local paths
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in [*files, ROOT / "README.md"] if p.resolve() != this
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if any(word in line.lower() for word in MISSING_DOCS)]
    assert hits == []

"""One registry mechanism, and plugins: a user's module adds a loss term without editing us.

The plugin test runs the custom-term example exactly as `hate_compress/kd/terms.py` documents
it, from a module outside the package, through the real command line with the teacher-output
cache on (the default): a term that needs the teacher's pooled head input must be served by the
cache, not crash on it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

from hate_compress.errors import ConfigError
from hate_compress.kd import terms
from hate_compress.registry import Registry, import_plugins
from tests.conftest import ROOT, TINY, cli_env


def test_registry_refuses_a_second_owner_and_accepts_the_same_one_again():
    registry: Registry = Registry("widget", "widgets")

    def first():
        pass

    registry.register("a")(first)
    registry.add("a", first)  # the same function again (a module reloaded): fine
    other = type("Other", (), {})
    with pytest.raises(ValueError, match="widget 'a' is already registered by .*first"):
        registry.add("a", other)
    assert registry.get("a") is first


def test_registry_lookup_names_the_choices_in_one_line():
    registry: Registry = Registry("widget", "widgets")
    for name in ("b", "a", "c"):
        registry.add(name, lambda: None)
    with pytest.raises(ConfigError) as info:
        registry.get("foo")
    assert str(info.value) == "widgets: unknown widget 'foo'; choose from a, b, c"
    with pytest.raises(ConfigError):
        registry.get(["unhashable"])


def test_a_plugin_that_cannot_be_imported_is_one_line():
    with pytest.raises(ConfigError) as info:
        import_plugins(["no_such_plugin_module"])
    assert str(info.value).startswith("plugins: cannot import 'no_such_plugin_module'")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="must be a list"):
        import_plugins("no_such_plugin_module")


def documented_term_example() -> str:
    """The code block of the "Adding a term" example in `hate_compress.kd.terms`' docstring."""
    doc = terms.__doc__
    start = doc.index("::\n\n", doc.index("Adding a term")) + 4
    lines = []
    for line in doc[start:].splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_the_documented_custom_term_runs_as_a_plugin_from_the_command_line_with_the_cache(
        tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "my_terms.py").write_text(documented_term_example())
    env = cli_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(plugins), env.get("PYTHONPATH", "")])
    args = ["data=synthetic", f"paths.output_root={tmp_path / 'outputs'}", "run_name=plugin",
            *TINY, "pipeline=teacher_kd", "plugins=[my_terms]",
            "+kd.terms.pooled_cos={weight: 0.5}"]
    out = subprocess.run([sys.executable, "-m", "hate_compress", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "outputs" / "runs" / "plugin"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"]["status"] == "ok"
    assert metrics["kd"]["teacher_cache"] is True  # served from the cache, not the live teacher
    logged = set()
    for path in (run_dir / "kd").rglob("metrics.csv"):
        with open(path, newline="") as fh:
            logged.update(next(csv.reader(fh)))
    assert "train/pooled_cos" in logged  # the plugin's term was part of the loss


def test_a_registered_pruner_declares_its_options_and_validation_asks_it(tiny_cfg):
    from hate_compress.compress.pruning import PRUNERS, MagnitudePruner, register_pruner
    from hate_compress.validation import validate_config

    @register_pruner
    class TestEveryOther(MagnitudePruner):
        name = "test_every_other"
        options = {**MagnitudePruner.options, "stride": 2}

    try:
        base = ("pipeline=full", "prune=magnitude", "prune.method=test_every_other")
        validate_config(tiny_cfg(*base, "+prune.options.stride=3"))
        with pytest.raises(ConfigError, match=r"prune\.options\.stride is not an option of "
                                              r"prune\.method='magnitude'"):
            validate_config(tiny_cfg("pipeline=full", "prune=magnitude", "+prune.options.stride=3"))
        with pytest.raises(ConfigError, match=r"prune\.options\.strid is not an option.*stride"):
            validate_config(tiny_cfg(*base, "+prune.options.strid=3"))
    finally:
        PRUNERS.pop("test_every_other")


def test_pruners_accept_only_their_own_options(tiny_cfg):
    """The schedule belongs to `gradual`: magnitude used to accept (and ignore) it."""
    from hate_compress.validation import validate_config

    validate_config(tiny_cfg("pipeline=full", "prune=gradual", "prune.options.every=2"))
    with pytest.raises(ConfigError, match=r"prune\.options\.every is not an option of "
                                          r"prune\.method='magnitude' \(options: \['include_"):
        validate_config(tiny_cfg("pipeline=full", "prune=magnitude", "+prune.options.every=2"))


def test_stage_order_comes_from_the_registered_ranks():
    from hate_compress.pipeline.runner import validate_stages
    from hate_compress.stages.state import STAGES, register_stage, stage_order

    assert stage_order() == ["teacher", "assistant", "kd", "prune", "quant"]
    register_stage("test_audit", rank=25)(lambda run: None)
    try:
        assert stage_order() == ["teacher", "assistant", "kd", "prune", "test_audit", "quant"]
        assert validate_stages(["teacher", "test_audit", "quant"]) == [
            "teacher", "test_audit", "quant"]
        with pytest.raises(ConfigError, match=r"run in the order \['teacher', 'assistant', 'kd', "
                                              r"'prune', 'test_audit', 'quant'\]"):
            validate_stages(["teacher", "quant", "test_audit"])
    finally:
        STAGES.pop("test_audit")


def test_the_summary_lists_stages_in_the_order_the_run_recorded():
    from hate_compress.measure.outcome import final_stage, stage_order

    metrics = {"run": {"stages": ["teacher", "audit", "quant"]}, "quant": {"skipped": "x"},
               "teacher": {}, "audit": {}, "targets": {}}
    assert stage_order(metrics) == ["teacher", "audit", "quant"]
    assert final_stage(metrics) == "audit"
    assert stage_order({"teacher": {}, "kd": {}, "targets": {}}) == ["teacher", "kd"]


def test_pooled_hidden_matching_is_served_by_the_cache_token_level_is_not():
    from hate_compress.kd.teacher import CACHEABLE_NEEDS
    from hate_compress.kd.terms import build_composite_loss

    def needs(shared, **opts):
        cfg = {"terms": {"logit": {}, "hidden": opts}}
        return build_composite_loss(cfg, task="binary", num_labels=2, student_dims=(2, 8),
                                    teacher_dims=(4, 16), shared_tokenizer=shared).needs

    assert needs(False) <= CACHEABLE_NEEDS  # auto across tokenizers: pooled per sequence
    assert needs(True, token_level=False) <= CACHEABLE_NEEDS
    assert not needs(True) <= CACHEABLE_NEEDS  # token by token: the live teacher
    assert not needs(None) <= CACHEABLE_NEEDS  # not known yet: the safe answer

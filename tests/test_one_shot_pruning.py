"""One-shot pruning (`prune.finetune_epochs=0`): the saved model is plain, small, honest about
its sparsity and reloadable, whichever pruner made it — and a crash never leaves "running"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hate_compress.artifacts import ModelCard, load_classifier, save_classifier
from hate_compress.compress import pruning as P
from hate_compress.pipeline.runner import make_data, run_pipeline
from hate_compress.predict import load_predictor, predict_texts
from tests.conftest import compose_cfg
from tests.test_pruning import logits, make_batches, tiny_model

PRUNERS = ["magnitude", "gradual", "wanda", "structured"]
TARGET = 0.5


def saved_keys(model_dir: Path) -> list[str]:
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as fh:
        return list(fh.keys())


@pytest.mark.parametrize("method", PRUNERS)
def test_one_shot_model_saves_plain_weights_and_reloads_identically(method, tmp_path):
    model = tiny_model()
    P.prune_model(model, method, TARGET, make_batches(2))  # masks left installed, as the stage does
    batch = make_batches(1, seed=7)[0]
    before = logits(model, batch)
    save_classifier(model, tmp_path / "m", None, ModelCard(task="binary", label_names=["a", "b"]))
    assert not [k for k in saved_keys(tmp_path / "m") if k.endswith(("_orig", "_mask"))]
    loaded, _, _ = load_classifier(tmp_path / "m", with_tokenizer=False)
    torch.testing.assert_close(logits(loaded, batch), before, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One teacher store for the module: every pruner compresses the same stored teacher."""
    return tmp_path_factory.mktemp("store")


def one_shot_cfg(store: Path, tmp_path: Path, *overrides: str):
    return compose_cfg(tmp_path, ["stages=[teacher,prune,quant]", "prune.finetune_epochs=0",
                                  f"prune.sparsity={TARGET}", f"paths.teacher_store={store}",
                                  *overrides])


@pytest.mark.parametrize("method", PRUNERS)
def test_one_shot_pipeline_saves_a_plain_reloadable_model(method, store, tmp_path):
    cfg = one_shot_cfg(store, tmp_path, f"prune={method}")
    metrics = run_pipeline(cfg, tmp_path / "run")
    assert metrics["run"]["status"] == "ok"
    prune = metrics["prune"]
    model_dir = Path(prune["artifact"])
    assert not [k for k in saved_keys(model_dir) if k.endswith(("_orig", "_mask"))]
    teacher_dir = Path(metrics["teacher"]["artifact"])
    assert (model_dir / "model.safetensors").stat().st_size <= (
        teacher_dir / "model.safetensors").stat().st_size
    if method == "structured":
        layers = prune["pruning"]["layers"]
        removed = 1 - sum(x["ffn"] for x in layers) / sum(x["ffn_before"] for x in layers)
        assert removed == pytest.approx(TARGET, abs=0.02)
        assert prune["params_total"] < metrics["teacher"]["params_total"]
    else:
        assert prune["pruning"]["prunable_sparsity"] == pytest.approx(TARGET, abs=0.01)
        # the whole-model figure counts the (unpruned) embeddings too, but not the mask's copy
        assert prune["sparsity"] == pytest.approx(prune["pruning"]["sparsity"], abs=1e-6)
        pruned_share = prune["pruning"]["prunable_params"] / prune["params_total"]
        assert prune["sparsity"] >= TARGET * pruned_share - 0.01
    # the reloaded model predicts what the stage measured before saving
    data = make_data(cfg)
    rows = predict_texts(load_predictor(model_dir), data.texts("dev"))
    gold = [data.label_names[y] for y in data.labels("dev")]
    accuracy = sum(r["label"] == g for r, g in zip(rows, gold, strict=True)) / len(gold)
    assert accuracy == pytest.approx(prune["dev"]["accuracy"], abs=1e-6)


def test_one_shot_prune_then_dynamic_int8_finishes(store, tmp_path):
    """The issue's repro: masks baked at save, so quantization swaps plain weights."""
    cfg = one_shot_cfg(store, tmp_path, "prune=magnitude", "quant=dynamic_int8")
    metrics = run_pipeline(cfg, tmp_path / "run")
    assert metrics["run"]["status"] == "ok"
    assert "skipped" not in metrics["quant"]
    assert metrics["quant"]["sparsity"] == pytest.approx(metrics["prune"]["sparsity"], abs=0.01)
    load_classifier(metrics["quant"]["artifact"])


def test_an_unexpected_crash_records_failed_not_running(store, tmp_path, monkeypatch):
    from hate_compress.stages import state as run_module

    def boom(run):
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(run_module.STAGES, "prune", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_pipeline(one_shot_cfg(store, tmp_path, "prune=magnitude"), tmp_path / "run")
    status = json.loads((tmp_path / "run" / "metrics.json").read_text())["run"]
    assert status["status"] == "failed"
    assert status["error"] == "RuntimeError: disk on fire"

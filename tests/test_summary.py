"""The summary names both sparsities (issue 12, item 7).

The README said "prunes 50% of the student's weights" next to a table whose single `sparsity`
column read 0.137: that column divided by all parameters, while pruning only touches the encoder's
Linear weights. Both figures are reported now, each named for what it divides by, in metrics.json
and in the summary table.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertModel

from hate_compress.compress.pruning import prune_model, sparsity_report
from hate_compress.compress.quantization import quantize_model
from hate_compress.measure.footprint import count_parameters
from hate_compress.models.classifier import HateClassifier
from hate_compress.pipeline.runner import run_pipeline
from hate_compress.report.summary import summary_table
from tests.conftest import ROOT, compose_cfg

PRUNABLE, ALL = "sparsity (prunable weights)", "sparsity (all params)"


def tiny_model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128)
    return HateClassifier(BertModel(config, add_pooling_layer=False), num_labels=2).eval()


def table_cells(table: str, stage: str) -> dict[str, str]:
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| stage |"))
    row = next(line for line in lines if line.startswith(f"| {stage} "))  # "prune (DEGENERATE)"
    return dict(zip([c.strip() for c in header.strip("|").split("|")],
                    [c.strip() for c in row.strip("|").split("|")], strict=True))


def test_counts_name_both_sparsities_and_agree_with_the_pruner():
    model = tiny_model()
    dense = count_parameters(model)
    assert dense["sparsity_prunable_weights"] == 0.0
    assert dense["sparsity_all_params"] < 0.02  # biases start at zero
    prune_model(model, "magnitude", 0.5, permanent=True)
    counts = count_parameters(model)
    report = sparsity_report(model)
    assert counts["sparsity_prunable_weights"] == pytest.approx(report["prunable_sparsity"], abs=1e-9)
    assert counts["sparsity_prunable_weights"] == pytest.approx(0.5, abs=0.01)
    assert counts["sparsity_all_params"] == pytest.approx(report["sparsity"], abs=1e-9)
    assert 0 < counts["sparsity_all_params"] < 0.4  # embeddings, biases, norms, head: never pruned
    assert counts["sparsity"] == counts["sparsity_all_params"]  # the old name, for old readers


def test_prunable_sparsity_survives_int8_quantization():
    model = tiny_model()
    prune_model(model, "magnitude", 0.5, permanent=True)
    before = count_parameters(model)["sparsity_prunable_weights"]
    after = count_parameters(quantize_model(model, "dynamic_int8"))["sparsity_prunable_weights"]
    assert after == pytest.approx(before, abs=0.02)


def test_table_shows_both_columns_and_reads_old_metrics():
    metrics = {
        "run": {"stages": ["teacher", "prune"]},
        "teacher": {"test": {"macro_f1": 0.7}, "params_total": 1000, "sparsity": 0.001},
        "prune": {"test": {"macro_f1": 0.69}, "params_total": 1000, "sparsity": 0.137,
                  "sparsity_all_params": 0.137, "sparsity_prunable_weights": 0.5},
    }
    table = summary_table(metrics)
    pruned = table_cells(table, "prune")
    assert (pruned[PRUNABLE], pruned[ALL]) == ("0.5000", "0.1370")
    assert "sparsity" not in [c for c in pruned if c not in (PRUNABLE, ALL)]
    old = table_cells(table, "teacher")  # metrics.json written before both were recorded
    assert (old[PRUNABLE], old[ALL]) == ("-", "0.0010")


def test_a_pruning_run_records_both_in_metrics_and_summary(tmp_path):
    cfg = compose_cfg(tmp_path, ["stages=[teacher,prune]", "prune=magnitude", "prune.sparsity=0.5",
                                 "prune.finetune_epochs=0"])
    metrics = run_pipeline(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    prune = saved["prune"]
    assert prune["sparsity_prunable_weights"] == pytest.approx(0.5, abs=0.01)
    assert prune["sparsity_prunable_weights"] == pytest.approx(
        prune["pruning"]["prunable_sparsity"], abs=1e-6)
    assert prune["sparsity_all_params"] < prune["sparsity_prunable_weights"]
    assert saved["teacher"]["sparsity_prunable_weights"] == pytest.approx(0.0, abs=1e-3)
    cells = table_cells((tmp_path / "run" / "summary.md").read_text(), "prune")
    assert float(cells[PRUNABLE]) == pytest.approx(0.5, abs=0.01)
    assert float(cells[ALL]) == pytest.approx(metrics["prune"]["sparsity_all_params"], abs=1e-4)


def test_readme_table_uses_the_same_names():
    readme = (ROOT / "README.md").read_text()
    assert f"| {PRUNABLE} | {ALL} |" in readme
    assert "| sparsity |" not in readme

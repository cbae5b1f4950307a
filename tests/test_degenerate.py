"""Degenerate models (one class for almost every text) are flagged in the metrics, the summary
and metrics.json, on dev — see `measure.quality.DEGENERATE_SHARE` for the rule."""

from __future__ import annotations

import json

import pytest
import torch

from hate_compress.measure.outcome import degenerate
from hate_compress.measure.quality import DEGENERATE_SHARE, classification_metrics
from hate_compress.pipeline.runner import run_pipeline
from hate_compress.report.summary import summary_table

NAMES = ["OTHER", "OFFENSE"]


def one_hot_logits(preds: list[int], classes: int = 2) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(preds), classes).float()


def score(preds, gold, task="binary", names=NAMES, teacher=None):
    return classification_metrics(one_hot_logits(preds) if task != "multilabel" else preds,
                                  torch.tensor(gold), task=task, label_names=names,
                                  positive_index=1 if task == "binary" else None,
                                  teacher_logits=teacher)


def test_all_one_class_on_balanced_gold_is_degenerate_even_with_full_agreement():
    gold = [0] * 70 + [1] * 30
    collapsed = one_hot_logits([0] * 100)
    m = score([0] * 100, gold, teacher=collapsed)  # an equally collapsed teacher
    assert m["hate_f1"] == 0.0 and m["agreement"] == 1.0
    assert m["top_prediction_share"] == 1.0 and m["degenerate"] is True


@pytest.mark.parametrize(("preds", "gold", "expected"), [
    ([0] * 96 + [1] * 4, [0] * 70 + [1] * 30, True),     # 96% one class, gold 70%
    ([1] * 100, [0] * 97 + [1] * 3, True),               # all the *minority* class
    ([0] * 94 + [1] * 6, [0] * 70 + [1] * 30, False),    # below the share
    ([0] * 98 + [1] * 2, [0] * 97 + [1] * 3, False),     # gold itself that skewed: can't tell
    ([0] * 70 + [1] * 30, [0] * 70 + [1] * 30, False),
])
def test_the_rule_at_its_edges(preds, gold, expected):
    assert DEGENERATE_SHARE == 0.95
    assert score(preds, gold)["degenerate"] is expected


def test_multilabel_one_label_set_for_everything_is_degenerate():
    names = ["a", "b", "c"]
    gold = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]] * 10)
    same = torch.full((40, 3), -5.0)
    same[:, 0] = 5.0  # always exactly {a}
    m = classification_metrics(same, gold, task="multilabel", label_names=names)
    assert m["degenerate"] is True
    assert classification_metrics(gold.float() * 10 - 5, gold, task="multilabel",
                                  label_names=names)["degenerate"] is False


def stage(dev_share: float, flag: bool) -> dict:
    return {"dev": {"macro_f1": 0.41, "top_prediction_share": dev_share},
            "test": {"macro_f1": 0.40}, "degenerate": flag}


def test_summary_marks_degenerate_stages():
    metrics = {"teacher": stage(0.6, False), "kd": stage(1.0, True)}
    table = summary_table(metrics)
    assert "| kd (DEGENERATE) |" in table and "| teacher |" in table
    assert "DEGENERATE kd: predicts one class for 1.0000 of dev" in table
    assert degenerate(metrics) is True
    assert degenerate({"teacher": stage(0.6, False)}) is False


def test_pipeline_records_the_flag_per_stage_on_dev(tiny_cfg, tmp_path):
    metrics = run_pipeline(tiny_cfg("pipeline=teacher"), tmp_path / "run")
    teacher = metrics["teacher"]
    assert isinstance(teacher["degenerate"], bool)
    assert teacher["degenerate"] == teacher["dev"]["degenerate"]  # judged on dev, not test
    assert "degenerate" in teacher["test"]  # reported on test too
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["teacher"]["degenerate"] == teacher["degenerate"]
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert ("teacher (DEGENERATE)" in summary) == teacher["degenerate"]

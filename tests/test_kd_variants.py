"""The seeds' other distillation variants (issue 16): the assistant chain (teacher -> assistant
-> student), Deep Mutual Learning (`kd=mutual`) and the char_ngram baseline reference row.

Each runs the real pipeline on tiny models and the synthetic sample; the assertions are what
would be wrong if the variant were only wired up by name: three measured rows from three
different models, a student cache that holds the assistant's logits (not the teacher's), two
peers that really learn from each other's predictions, and a baseline that is the stored
char_ngram model's own score.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hate_compress.artifacts import load_classifier
from hate_compress.models.classifier import predict_logits
from hate_compress.pipeline.runner import make_data, run_pipeline

# 1x64 debug teacher -> 1x48 assistant -> 1x32 student
TINY_ASSISTANT = ("assistant.backbone.scratch={model_type: bert, num_hidden_layers: 1, "
                  "hidden_size: 48, num_attention_heads: 2, intermediate_size: 96, "
                  "max_position_embeddings: 512}", "assistant.head.hidden=32",
                  "assistant.train.epochs=1")
TINY_STUDENT = ("student.backbone.scratch={model_type: bert, num_hidden_layers: 1, "
                "hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, "
                "max_position_embeddings: 512}", "student.head.hidden=32")


def test_assistant_chain_writes_three_measured_rows(tiny_cfg, tmp_path):
    cfg = tiny_cfg("pipeline=assistant_kd", *TINY_ASSISTANT, *TINY_STUDENT)
    run_dir = tmp_path / "run"
    metrics = run_pipeline(cfg, run_dir)
    assert metrics["run"]["stages"] == ["teacher", "assistant", "kd"]
    assert metrics["run"]["assistant"] == "tiny_assistant"
    rows = {stage: metrics[stage] for stage in ("teacher", "assistant", "kd")}
    for stage, values in rows.items():
        assert 0 <= values["test"]["macro_f1"] <= 1, stage
        assert values["params_total"] > 0 and Path(values["artifact"]).exists(), stage
    # three different models: the assistant is neither the teacher nor the student
    sizes = [rows[stage]["params_total"] for stage in ("teacher", "assistant", "kd")]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3, sizes
    assert metrics["assistant"]["teacher"] == cfg.teacher.name
    assert metrics["kd"]["teacher"] == "tiny_assistant" and metrics["kd"]["student"] == "tiny_student"
    assistant, tokenizer, _ = load_classifier(run_dir / "assistant" / "model")
    assert (assistant.num_layers, assistant.hidden_size) == (1, 48)
    # the summary shows the three rows, retention of both relative to the original teacher
    summary = (run_dir / "summary.md").read_text()
    table = [line.split(" | ")[0] for line in summary.splitlines() if line.startswith("| ")]
    assert [cell.split()[1] for cell in table[1:]] == ["teacher", "assistant", "kd"], summary
    for stage in ("assistant", "kd"):
        expected = rows[stage]["test"]["macro_f1"] / rows["teacher"]["test"]["macro_f1"]
        assert rows[stage]["f1_retention"] == pytest.approx(expected)
    # the student learnt from the assistant's logits: two caches, and the student's one holds
    # exactly the saved assistant's train logits (its key is the assistant's weights)
    caches = sorted((Path(cfg.paths.cache_dir) / "teacher_outputs").glob("*.safetensors"))
    assert len(caches) == 2, caches
    data = make_data(cfg)
    data.set_tokenizers({"a": tokenizer})
    served = predict_logits(assistant, data.dataloader("train"), "a")[0]
    matching = [c for c in caches
                if torch.allclose(load_file(str(c))["train.logits"], served, atol=1e-4)]
    assert len(matching) == 1, "no teacher-output cache holds the assistant's logits"


@pytest.mark.parametrize("overrides,needle", [
    (("stages=[teacher,assistant,kd]",), "no assistant is configured"),
    (("pipeline=assistant_kd", "assistant.train.epochs=0"), "assistant.train.epochs=0"),
    (("pipeline=assistant_kd", "assistant.backbone.scratch=null"), "assistant.backbone"),
    (("pipeline=assistant_kd", "assistant.train.lrr=1"), "assistant.train.lr"),
])
def test_assistant_config_errors_before_training(tiny_cfg, overrides, needle, capsys):
    from hate_compress.pipeline.runner import guarded_run

    cfg = tiny_cfg(*overrides) if "lrr" not in overrides[-1] else tiny_cfg(
        overrides[0], "+" + overrides[1])
    run_dir = Path(cfg.paths.output_root) / "bad"
    with pytest.raises(SystemExit) as exc:
        guarded_run(cfg, run_dir)
    assert exc.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], errors
    assert not (run_dir / "teacher").exists()  # nothing trained
    assert json.loads((run_dir / "metrics.json").read_text())["run"]["status"] == "failed"


# -- mutual learning ----------------------------------------------------------------------------

def test_peer_loss_is_ce_plus_kl_to_the_other_peers_by_hand():
    import torch.nn.functional as F

    from hate_compress.kd.terms import build_composite_loss
    from hate_compress.models.outputs import ModelOutputs
    from hate_compress.training.mutual import peer_loss

    torch.manual_seed(0)
    alpha, t = 0.3, 2.0
    loss = build_composite_loss({"alpha": alpha, "temperature": t, "terms": {"logit": {}}},
                                task="multiclass", num_labels=3, student_dims=(1, 8),
                                teacher_dims=(1, 8))
    logits = [torch.randn(4, 3, requires_grad=True) for _ in range(3)]
    outs = [ModelOutputs(logits=z, attention_mask=torch.ones(4, 1)) for z in logits]
    labels = torch.tensor([0, 1, 2, 1])
    total, parts = peer_loss(loss, outs, 0, labels, "multiclass")

    def kl(p_logits, q_logits):  # KL(p || q) at temperature t, batch mean
        p = F.softmax(p_logits / t, -1)
        return (p * (F.log_softmax(p_logits / t, -1) - F.log_softmax(q_logits / t, -1))).sum(-1).mean()

    by_hand = (1 - alpha) * F.cross_entropy(logits[0], labels) + alpha * t**2 * 0.5 * (
        kl(logits[1].detach(), logits[0]) + kl(logits[2].detach(), logits[0]))
    torch.testing.assert_close(total, by_hand)
    total.backward()
    assert logits[0].grad is not None and logits[0].grad.abs().sum() > 0
    assert logits[1].grad is None and logits[2].grad is None  # the others are only targets
    assert set(parts) == {"ce", "logit"}


def test_mutual_trains_two_peers_and_the_better_continues(tiny_cfg, tmp_path):
    cfg = tiny_cfg("pipeline=teacher_kd", "kd=mutual", *TINY_STUDENT, "student.train.epochs=2")
    run_dir = tmp_path / "run"
    metrics = run_pipeline(cfg, run_dir)
    peers = [metrics["kd_peer0"], metrics["kd_peer1"]]
    for i, values in enumerate(peers):
        assert values["row_of"] == "kd" and values["peer"] == i
        assert 0 <= values["test"]["macro_f1"] <= 1
        assert (Path(values["artifact"]) / "model.safetensors").exists()
    # two different models (peer i starts from seed + i), trained together
    a, _, _ = load_classifier(peers[0]["artifact"])
    b, _, _ = load_classifier(peers[1]["artifact"])
    assert not torch.equal(a.head[0].weight, b.head[0].weight)
    logged = (run_dir / "kd" / "logs" / "metrics.csv").read_text().splitlines()[0]
    for column in ("train/peer0_logit", "train/peer1_logit", "val/peer0_macro_f1",
                   "val/peer1_macro_f1"):
        assert column in logged, logged
    # the kd row is the peer with the better dev macro F1, a copy in kd/model, and is final
    best = max((0, 1), key=lambda i: (peers[i]["dev"]["macro_f1"], -i))
    kd = metrics["kd"]
    assert kd["chosen_peer"] == f"kd_peer{best}" and kd["kd"] == "mutual"
    assert kd["dev"] == peers[best]["dev"] and kd["test"] == peers[best]["test"]
    assert set(kd["peers"]) == {"kd_peer0", "kd_peer1"}
    chosen, _, _ = load_classifier(kd["artifact"])
    for (name, x), (_, y) in zip(chosen.state_dict().items(),
                                 (a if best == 0 else b).state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert Path(metrics["run"]["final_model"]) == run_dir / "kd" / "model"
    table = [line.split(" | ")[0] for line in (run_dir / "summary.md").read_text().splitlines()
             if line.startswith("| ")]
    assert [cell.split()[1] for cell in table[1:]] == ["teacher", "kd_peer0", "kd_peer1", "kd"]


@pytest.mark.parametrize("overrides,needle", [
    (("pipeline=teacher_kd", "kd=mutual", "kd.peers=1"), "kd.peers=1"),
    (("pipeline=teacher_kd", "kd=mutual", "+kd.terms.hidden={}"), "kd.terms.hidden: kd=mutual"),
    (("pipeline=teacher_kd", "kd.method=born_again"), "kd.method: unknown kd method 'born_again'"),
    (("pipeline=assistant_kd", "kd=mutual"), "the assistant chain distils"),
])
def test_mutual_config_errors_before_training(tiny_cfg, overrides, needle, capsys):
    from hate_compress.pipeline.runner import guarded_run

    cfg = tiny_cfg(*overrides)
    run_dir = Path(cfg.paths.output_root) / "bad"
    with pytest.raises(SystemExit) as exc:
        guarded_run(cfg, run_dir)
    assert exc.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], errors
    assert not (run_dir / "teacher").exists()


# -- the char_ngram baseline reference row ------------------------------------------------------

def test_baseline_is_on_for_real_data_and_off_for_the_sample_and_debug(tiny_cfg):
    from hate_compress.stages.baseline import baseline_enabled

    assert baseline_enabled(tiny_cfg(tiny=False)) is False  # data=synthetic, measure default
    assert baseline_enabled(tiny_cfg("data.name=mine", tiny=False)) is True  # auto: real data
    assert baseline_enabled(tiny_cfg("data.name=mine")) is False  # debug=tiny switches it off
    assert baseline_enabled(tiny_cfg("measure.baseline=true")) is True


def test_baseline_row_in_metrics_summary_and_matrix_report(tiny_cfg, tmp_path):
    from hate_compress.measure.quality import classification_metrics
    from hate_compress.models.char_ngram import CharNgramModel
    from hate_compress.report.multirun import write_report

    root = tmp_path / "sweep"
    first = run_pipeline(tiny_cfg("pipeline=teacher_kd", "measure.baseline=true"), root / "0")
    second = run_pipeline(tiny_cfg("pipeline=teacher_kd", "measure.baseline=true", "seed=7"),
                          root / "1")
    base = first["baseline"]
    stored = Path(base["artifact"])
    assert stored.parent == Path(tiny_cfg().paths.teacher_store)
    assert stored.name.startswith("char_ngram-")
    assert second["baseline"]["artifact"] == base["artifact"]  # one baseline for every seed
    # its numbers are the stored model's own, measured like a stage
    data = make_data(tiny_cfg())
    model = CharNgramModel.load(stored)
    for split in ("dev", "test"):
        expected = classification_metrics(model.predict_texts(data.texts(split)),
                                          torch.as_tensor(data.labels(split)), task=data.task,
                                          label_names=data.label_names,
                                          positive_index=data.positive_index)["macro_f1"]
        assert base[split]["macro_f1"] == pytest.approx(expected)
    assert base["runtime"] == "sklearn" and base["params_total"] > 0
    assert "baseline" not in first["run"]["stages"]  # a reference, not a stage
    summary = (root / "0" / "summary.md").read_text()
    assert "| baseline char_ngram (reference) | sklearn |" in summary
    verdict = next(line for line in summary.splitlines() if line.startswith("baseline: "))
    assert f"test macro F1 {base['test']['macro_f1']:.4f}" in verdict
    kd_f1 = first["kd"]["test"]["macro_f1"]
    assert ("beats it" if kd_f1 >= base["test"]["macro_f1"] else "BELOW it") in verdict
    assert "baseline char_ngram (reference)" in (root / "0" / "report.html").read_text()
    # the matrix report: one reference row (same stored baseline), a line, never recommended
    report = write_report(root, plots=True)
    baselines = [r for r in report["rows"] if r["kind"] == "baseline"]
    assert len(baselines) == 1 and baselines[0]["macro_f1"] == base["test"]["macro_f1"]
    assert all(rec["row"] is None or rec["row"]["kind"] != "baseline"
               for rec in report["recommendations"])
    text = report["report"].read_text()
    assert "- Reference: char_ngram baseline (reference) on synthetic has dev macro F1" in text
    from hate_compress.report.rows import rows_from_csv

    assert [r["label"] for r in rows_from_csv(root / "report.csv") if r["kind"] == "baseline"] \
        == ["char_ngram baseline (reference)"]


def test_the_seed_summary_and_the_matrix_label_show_the_variants():
    from hate_compress.measure.outcome import aggregate_seeds
    from hate_compress.report.rows import cell_row
    from hate_compress.report.summary import seed_table

    def metrics(f1):
        return {"run": {"stages": ["teacher", "kd"], "status": "ok"},
                "teacher": {"test": {"macro_f1": 0.6}, "dev": {"macro_f1": 0.6}},
                "kd": {"test": {"macro_f1": f1}, "dev": {"macro_f1": f1}},
                "baseline": {"model": "char_ngram", "test": {"macro_f1": 0.69},
                             "dev": {"macro_f1": 0.7}}}

    aggregate = aggregate_seeds({1: metrics(0.64), 2: metrics(0.66)})
    assert aggregate["baseline"]["macro_f1"]["mean"] == pytest.approx(0.69)
    assert aggregate["kd"]["macro_f1"]["mean"] == pytest.approx(0.65)
    assert "| baseline | 2 | 0.6900 ± 0.0000 |" in seed_table(aggregate, [1, 2])
    chain = {"cell": "0", "overrides": None, "metrics": {**metrics(0.6), "assistant": {
        "test": {"macro_f1": 0.62}, "dev": {"macro_f1": 0.62}}},
             "run": {"stages": ["teacher", "assistant", "kd"], "status": "ok",
                     "teacher": "tiny_teacher", "assistant": "tiny_assistant",
                     "student": "tiny_student", "kd": "logit"}}
    assert cell_row(chain)["label"] == "tiny_teacher→tiny_assistant→tiny_student"

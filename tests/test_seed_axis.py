"""Seeds as an axis (issue 17): `seeds=[...]` runs the pipeline per seed and aggregates it.

Real pipeline, tiny models on the synthetic sample: two student seeds behind one stored teacher.
"""

from __future__ import annotations

import csv
import json
import statistics

import optuna
import pytest
import yaml

from hate_compress import seeds as seed_axis
from hate_compress.errors import ConfigError
from hate_compress.measure.outcome import spread
from hate_compress.report.summary import summary_table

GBERT_TEST_F1 = 0.80  # tests.test_report.GBERT's test macro F1

FAST = ["pipeline=teacher_kd", "student.backbone.scratch.num_hidden_layers=1",
        "student.backbone.scratch.hidden_size=32", "student.backbone.scratch.intermediate_size=64",
        "student.head.hidden=16", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "data.max_length=16", "logger=none"]


def test_seeds_run_once_each_and_aggregate_mean_std_min(tiny_cfg, tmp_path, capsys):
    cfg = tiny_cfg(*FAST, "seeds=[1,2]", "teacher.seed=7")
    run_dir = tmp_path / "run"
    agg = seed_axis.run_seeds(cfg, run_dir)

    per_seed = {s: json.loads((run_dir / f"seed_{s}" / "metrics.json").read_text())
                for s in (1, 2)}
    assert [m["run"]["seed"] for m in per_seed.values()] == [1, 2]
    # teacher.seed fixed: the store hands both seeds the same teacher
    assert per_seed[1]["teacher"]["artifact"] == per_seed[2]["teacher"]["artifact"]
    assert agg["run"]["teacher_seed"] == "7" and agg["run"]["final_stage"] == "kd"
    # ...and the students really differ (different init and dropout)
    student_f1 = [per_seed[s]["kd"]["test"]["macro_f1"] for s in (1, 2)]
    student_logits_differ = student_f1[0] != student_f1[1] or (
        per_seed[1]["kd"]["dev"] != per_seed[2]["kd"]["dev"])
    assert student_logits_differ

    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["run"]["kind"] == "seeds" and written["run"]["status"] == "ok"
    kd = written["aggregate"]["kd"]
    assert kd["seeds"] == [1, 2]
    assert kd["macro_f1"]["n"] == 2
    assert kd["macro_f1"]["mean"] == pytest.approx(statistics.fmean(student_f1))
    assert kd["macro_f1"]["std"] == pytest.approx(statistics.stdev(student_f1))
    assert kd["macro_f1"]["min"] == pytest.approx(min(student_f1))
    agreement = [per_seed[s]["kd"]["test"]["agreement"] for s in (1, 2)]
    assert kd["agreement"]["mean"] == pytest.approx(statistics.fmean(agreement))
    assert kd["f1_retention"]["min"] == pytest.approx(min(
        per_seed[s]["kd"]["f1_retention"] for s in (1, 2)))
    # one teacher for both seeds: no spread on the teacher row
    assert written["aggregate"]["teacher"]["macro_f1"]["std"] == pytest.approx(0.0)
    dev = [per_seed[s]["kd"]["dev"]["macro_f1"] for s in (1, 2)]
    assert seed_axis.objective(written) == pytest.approx(statistics.fmean(dev))

    summary = (run_dir / "summary.md").read_text()
    kd_row = next(line for line in summary.splitlines() if line.startswith("| kd |"))
    assert f"{statistics.fmean(student_f1):.4f} ± {statistics.stdev(student_f1):.4f}" in kd_row
    assert "| kd | 2 |" in kd_row
    assert "over seeds [1, 2]" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["[]", "[1,1]", "[a]", "[-1]"])
def test_bad_seeds_list_is_one_config_error(tiny_cfg, value):
    with pytest.raises(ConfigError, match=r"seeds=.*distinct non-negative integers"):
        seed_axis.parse_seeds(tiny_cfg(f"seeds={value}"))


def test_teacher_follows_the_seed_by_default(tiny_cfg):
    assert seed_axis.teacher_seed_mode(tiny_cfg("seeds=[1,2]")) == "per seed"
    sub = seed_axis.seed_config(tiny_cfg("seeds=[1,2]"), 2)
    assert sub.seed == 2 and sub.teacher.seed == 2 and sub.seeds is None


def test_single_run_summary_says_one_seed_stands_behind_it():
    stage = {"dev": {"macro_f1": 0.7}, "test": {"macro_f1": 0.7}}
    table = summary_table({"run": {"seed": 42}, "teacher": stage})
    assert "seeds: 1 (seed=42)" in table


def test_spread_of_one_value_has_no_std():
    assert spread([0.5]) == {"n": 1, "mean": 0.5, "std": None, "min": 0.5, "max": 0.5}
    assert spread([0.2, 0.4])["std"] == pytest.approx(statistics.stdev([0.2, 0.4]))


# ---------------------------------------------------------------------------------------------
# the matrix report: cells that differ only by seed are aggregated (fake cell metrics)


def fake_sweep(root):
    """`-m kd=logit,none seed=1,2,3` (kd=none seed 3 failed) plus one `seeds=[1,2]` run."""
    from tests.test_report import GBERT, run_info, student_stage, write_cell

    f1 = {("logit", 1): 0.70, ("logit", 2): 0.74, ("logit", 3): 0.78,
          ("none", 1): 0.60, ("none", 2): 0.66}
    n = 0
    for kd in ("logit", "none"):
        for seed in (1, 2, 3):
            info = run_info("gbert", "mdistilbert", ["teacher", "kd"], seed=seed, kd=kd)
            metrics = {"run": info, "teacher": GBERT}
            if (kd, seed) in f1:
                metrics["kd"] = student_stage(GBERT, f1[kd, seed], 6.0, 100.0, f"/mr/{n}/kd")
            else:
                metrics["run"].update(status="failed", error="kd: loss is nan")
            write_cell(root / "sweep", n, metrics, [f"kd={kd}", f"seed={seed}", "data=x"])
            n += 1
    seeds_run = root / "seeds_run"
    seeds_run.mkdir(parents=True)
    (seeds_run / "metrics.json").write_text(json.dumps(
        {"run": {"kind": "seeds", "seeds": [1, 2], "status": "ok"}, "aggregate": {}}))
    for seed, value in ((1, 0.50), (2, 0.56)):
        sub = seeds_run / f"seed_{seed}"
        sub.mkdir()
        info = run_info("gbert", "tiny_student", ["teacher", "kd"], seed=seed)
        (sub / "metrics.json").write_text(json.dumps(
            {"run": info, "teacher": GBERT,
             "kd": student_stage(GBERT, value, 3.0, 10.0, f"/s/{seed}/kd")}))
    return f1


def test_report_aggregates_cells_that_differ_only_by_seed(tmp_path):
    from hate_compress.report.multirun import write_report

    f1 = fake_sweep(tmp_path)
    result = write_report(tmp_path, plots=False)
    groups = {(g["label"], g["where"]): g for g in result["seed_groups"]}
    assert len(groups) == 3  # logit, none, the seeds=[1,2] run; never the aggregate itself
    assert not any(r["cell"] == "seeds_run" for r in result["rows"])

    logit = groups["gbert→mdistilbert [logit]", "kd=logit data=x"]
    values = [f1["logit", s] for s in (1, 2, 3)]
    assert logit["seeds"] == [1, 2, 3] and logit["failed"] == 0
    assert logit["macro_f1"]["mean"] == pytest.approx(statistics.fmean(values))
    assert logit["macro_f1"]["std"] == pytest.approx(statistics.stdev(values))
    assert logit["macro_f1"]["min"] == pytest.approx(0.70)
    assert logit["agreement"]["mean"] == pytest.approx(0.9)
    assert logit["f1_retention"]["min"] == pytest.approx(0.70 / GBERT_TEST_F1)

    none = groups["gbert→mdistilbert [none]", "kd=none data=x"]
    assert none["seeds"] == [1, 2] and none["failed"] == 1
    assert none["macro_f1"]["mean"] == pytest.approx(0.63)

    run = groups["gbert→tiny_student [logit]", "seeds of seeds_run"]
    assert run["seeds"] == [1, 2] and run["macro_f1"]["min"] == pytest.approx(0.50)

    report = result["report"].read_text()
    assert "## Across seeds" in report
    row = next(line for line in report.splitlines() if "[logit] | kd | 3 (1, 2, 3)" in line)
    assert f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}" in row
    assert "2 (1, 2), 1 failed" in report
    with open(tmp_path / "report_seeds.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert len(csv_rows) == 3
    logit_csv = next(r for r in csv_rows if r["where"] == "kd=logit data=x")
    assert logit_csv["seeds"] == "1 2 3"
    assert float(logit_csv["macro_f1_mean"]) == pytest.approx(statistics.fmean(values))


def test_cells_with_one_seed_each_are_not_aggregated(tmp_path):
    from hate_compress.report.seed_groups import seed_groups

    rows = [{"kind": "cell", "cell": str(i), "seed": 42, "status": "ok", "overrides": f"kd={kd}",
             "stage": "kd", "label": kd, "macro_f1": 0.5} for i, kd in enumerate(("a", "b"))]
    assert seed_groups(rows) == []


# ---------------------------------------------------------------------------------------------
# Optuna over noise: hparams_search.seeds_per_trial=k (faked pipeline, as in test_sweep.py)


def fake_runs(monkeypatch, outcome):
    """Replace the pipeline by `outcome(seed) -> (dev F1, degenerate)`; returns the calls."""
    import hate_compress.pipeline.runner

    calls = []

    def fake_pipeline(cfg, run_dir, callbacks=None):
        calls.append({"seed": int(cfg.seed), "teacher_seed": int(cfg.teacher.seed),
                      "run_dir": str(run_dir), "callbacks": callbacks})
        f1, degenerate = outcome(int(cfg.seed))
        stage = {"dev": {"macro_f1": f1, "top_prediction_share": 1.0 if degenerate else 0.5},
                 "degenerate": degenerate}
        return {"run": {"status": "ok"}, "teacher": {"dev": {"macro_f1": 0.9}}, "kd": stage}

    monkeypatch.setattr(hate_compress.pipeline.runner, "run_pipeline", fake_pipeline)
    return calls


def sweep_cfg(tmp_path, *overrides):
    from tests.conftest import compose_cfg
    from tests.test_sweep import FAST as SWEEP_FAST
    from tests.test_sweep import SEARCH

    return compose_cfg(tmp_path, [*SEARCH, *SWEEP_FAST, "seed=10", "teacher.seed=5", *overrides])


def test_trial_objective_is_the_mean_over_k_seeds(tmp_path, monkeypatch):
    from hate_compress import sweep

    f1 = {10: 0.60, 11: 0.70, 12: 0.65}
    calls = fake_runs(monkeypatch, lambda seed: (f1[seed], False))
    cfg = sweep_cfg(tmp_path, "hparams_search.n_trials=2", "hparams_search.seeds_per_trial=3",
                    "hparams_search.pruner.type=none")
    study = sweep.run_study(cfg)
    assert len(calls) == 6
    for trial in study.trials:
        assert trial.value == pytest.approx(statistics.fmean(f1.values()))
        assert trial.user_attrs["seeds"] == [10, 11, 12]
        assert trial.user_attrs["seed_values"] == {"10": 0.60, "11": 0.70, "12": 0.65}
        assert trial.user_attrs["metrics"]["seeds.dev_macro_f1_min"] == pytest.approx(0.60)
        assert trial.user_attrs["metrics"]["kd.dev.macro_f1"] == pytest.approx(0.65)
    # every run of a trial has its own seed and directory; the teacher keeps its fixed seed
    per_trial = [calls[:3], calls[3:]]
    for runs in per_trial:
        assert [c["seed"] for c in runs] == [10, 11, 12]
        assert len({c["run_dir"] for c in runs}) == 3
        assert {c["teacher_seed"] for c in runs} == {5}
    assert calls[0]["run_dir"].endswith("trial_0/seed_10")
    best = yaml.safe_load((sweep.study_dir(cfg, sweep.parse_search(cfg)) / "best_params.yaml")
                          .read_text())
    assert "mean over 3 seeds [10, 11, 12]" in best["objective"]


def test_trial_is_pruned_on_the_running_mean(tmp_path, monkeypatch):
    from hate_compress import sweep

    calls = fake_runs(monkeypatch, lambda seed: (0.2 if seed == 10 else 0.9, False))
    cfg = sweep_cfg(tmp_path, "hparams_search.n_trials=1", "hparams_search.seeds_per_trial=3",
                    "hparams_search.pruner.type=threshold", "hparams_search.pruner.lower=0.5",
                    "hparams_search.pruner.n_warmup_steps=0")
    (trial,) = sweep.run_study(cfg).trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values == {0: pytest.approx(0.2)}
    assert [c["seed"] for c in calls] == [10]  # the other seeds were never run


def test_a_degenerate_seed_makes_the_trial_degenerate(tmp_path, monkeypatch):
    from hate_compress import sweep

    calls = fake_runs(monkeypatch, lambda seed: (0.95, seed == 11))
    cfg = sweep_cfg(tmp_path, "hparams_search.n_trials=1", "hparams_search.seeds_per_trial=3",
                    "hparams_search.pruner.type=none")
    study = sweep.run_study(cfg)
    (trial,) = study.trials
    assert trial.value == 0.0 and trial.user_attrs["degenerate"] is True
    assert [c["seed"] for c in calls] == [10, 11]
    assert sweep.best_trial(study) is None


def test_seeds_list_and_search_together_is_refused(tmp_path):
    from hate_compress import sweep

    with pytest.raises(ConfigError, match="seeds_per_trial"):
        sweep.parse_search(sweep_cfg(tmp_path, "seeds=[1,2]"))
    with pytest.raises(ConfigError, match="seeds_per_trial=0 must be >= 1"):
        sweep.parse_search(sweep_cfg(tmp_path, "hparams_search.seeds_per_trial=0"))

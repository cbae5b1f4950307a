"""The teacher x student matrix: its configs compose, and the offline twin runs end to end as a real
Hydra multirun — two teachers trained once each, four KD cells, and the report the sweep callback
leaves behind agreeing with every cell's metrics.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from hydra.utils import instantiate

from hate_compress.report import MultirunReportCallback
from hate_compress.report.multirun import PLOTS
from hate_compress.report.rows import rows_from_csv
from tests.conftest import CONF, ROOT, TINY, cli_env


def hydra_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("experiment, teachers, students", [
    ("kd_matrix", "gbert,xlmr", "sahajbert,mdistilbert"),
    ("kd_matrix_tiny", "tiny_teacher,tiny_teacher_small", "tiny_student,tiny_student_xtok"),
])
def test_matrix_experiment_composes_as_a_2x2_sweep(experiment, teachers, students):
    cfg = hydra_cfg(f"experiment={experiment}")
    assert cfg.hydra.mode == RunMode.MULTIRUN  # no -m needed
    assert dict(cfg.hydra.sweeper.params) == {"teacher": teachers, "student": students}
    assert list(cfg.stages) == ["teacher", "kd"]
    assert cfg.data.name == "germeval_coarse" and cfg.kd.name == "logit"
    assert cfg.prune.name == "none" and cfg.quant.name == "none"


def test_every_tiny_cell_composes_with_logit_kd():
    for teacher in ("tiny_teacher", "tiny_teacher_small"):
        for student in ("tiny_student", "tiny_student_xtok"):
            cfg = hydra_cfg("experiment=kd_matrix_tiny", "data=synthetic", f"teacher={teacher}",
                            f"student={student}")
            assert (cfg.teacher.name, cfg.student.name) == (teacher, student)
            assert cfg.kd.terms.keys() == {"logit"}  # logit KD works across tokenizers
    assert hydra_cfg("student=tiny_student").student.backbone.tokenizer == "teacher"
    assert hydra_cfg("student=tiny_student_xtok").student.backbone.tokenizer.train is True


def test_launchers_compose():
    joblib = hydra_cfg("experiment=kd_matrix_tiny", "hydra/launcher=local_parallel").hydra.launcher
    assert joblib._target_.endswith("JoblibLauncher")
    assert joblib.n_jobs == 2 and joblib.backend == "loky"
    slurm = hydra_cfg("experiment=kd_matrix", "hydra/launcher=slurm",
                      "hydra.launcher.partition=gpu").hydra.launcher
    assert slurm._target_.endswith("submitit_launcher.SlurmLauncher")
    assert slurm.partition == "gpu"
    for key in ("timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "nodes",
                "tasks_per_node"):
        assert isinstance(slurm[key], int), key


def test_report_callback_is_registered():
    callback = hydra_cfg("hydra.callbacks.report.f1_floor=0.6").hydra.callbacks.report
    assert callback._target_ == "hate_compress.report.MultirunReportCallback"
    made = instantiate(callback)
    assert isinstance(made, MultirunReportCallback) and made.f1_floor == 0.6


def test_tiny_matrix_end_to_end(tmp_path):
    sweep = tmp_path / "mr"
    env = cli_env(tmp_path)
    # TINY shrinks whichever teacher a cell selects; the two stay distinct teachers because the
    # teacher name (and its tokenizer casing) is part of the teacher store key.
    args = [sys.executable, "-m", "hate_compress", "-m", "experiment=kd_matrix_tiny",
            "data=synthetic", *TINY, "measure.latency=true", "measure.runs=20",
            "measure.batch_sizes=[1,4]", "hydra.callbacks.report.f1_floor=0.1",
            f"hydra.sweep.dir={sweep}", f"paths.output_root={tmp_path / 'outputs'}"]
    run = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    cells = sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()),
                   key=lambda p: int(p.name))
    assert [c.name for c in cells] == ["0", "1", "2", "3"]
    metrics = {c.name: json.loads((c / "metrics.json").read_text()) for c in cells}
    pairs = [(m["run"]["teacher"], m["run"]["student"]) for m in metrics.values()]
    assert sorted(pairs) == sorted((t, s) for t in ("tiny_teacher", "tiny_teacher_small")
                                   for s in ("tiny_student", "tiny_student_xtok"))
    for m in metrics.values():
        assert m["run"]["status"] == "ok", m["run"].get("error")
        assert m["run"]["kd"] == "logit" and m["run"]["data"] == "synthetic"
        assert m["kd"]["shared_tokenizer"] == (m["run"]["student"] == "tiny_student")

    # each teacher trained exactly once: two store entries, the other two cells reused them
    store = Path(env["HATE_COMPRESS_CACHE_DIR"]) / "teachers"
    entries = sorted(p.name for p in store.iterdir() if p.is_dir())
    assert len(entries) == 2 and {e.rsplit("-", 1)[0] for e in entries} == {
        "tiny_teacher", "tiny_teacher_small"}
    reused = [c.name for c in cells
              if "reusing stored teacher" in "".join(p.read_text() for p in c.glob("*.log"))]
    assert len(reused) == 2
    artifacts = {m["teacher"]["artifact"] for m in metrics.values()}
    assert {Path(a).name for a in artifacts} == set(entries)

    # the report written by the Hydra callback when the sweep ended
    assert (sweep / "report.md").exists(), run.stdout[-2000:]
    rows = rows_from_csv(sweep / "report.csv")
    students = {r["cell"]: r for r in rows if r["kind"] == "cell"}
    assert sorted(students) == ["0", "1", "2", "3"]
    assert sum(r["kind"] == "teacher" for r in rows) == 2
    for cell, m in metrics.items():
        row, kd = students[cell], m["kd"]
        assert (row["teacher"], row["student"], row["stage"], row["status"]) == (
            m["run"]["teacher"], m["run"]["student"], "kd", "ok")
        assert row["macro_f1"] == kd["test"]["macro_f1"]
        assert row["hate_f1"] == kd["test"]["hate_f1"]
        assert row["agreement"] == kd["test"]["agreement"]
        for key in ("speedup_b1", "size_mb", "latency_ms_b1", "latency_ms_b4", "f1_retention"):
            assert row[key] == kd[key], key
    md = (sweep / "report.md").read_text()
    assert "4 cells (4 ok, 0 not ok)" in md
    # tiny models may collapse to one class: those are listed as degenerate, never recommended
    degenerate = {r["cell"] for r in students.values() if r.get("degenerate")}
    if len(degenerate) < len(students):
        assert "Fastest with dev macro F1 >= 0.1: **" in md
    if degenerate:
        assert "## Degenerate models" in md
    for name in PLOTS.values():
        assert (sweep / name).stat().st_size > 2000

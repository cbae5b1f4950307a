"""The sweep report on a hand-written multirun directory (no training): every number in the report
must be the number in the cell's metrics.json, and the recommendations must pick the right cell."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hate_compress.report import MultirunReportCallback
from hate_compress.report.__main__ import main
from hate_compress.report.multirun import PLOTS, write_report
from hate_compress.report.recommend import recommend
from hate_compress.report.rows import collect_rows, rows_from_csv
from tests.conftest import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def quality(macro: float, hate: float, agreement: float | None = None) -> dict:
    out = {"macro_f1": macro, "accuracy": macro + 0.01, "n": 400, "f1_OTHER": 2 * macro - hate,
           "f1_OFFENSE": hate, "hate_f1": hate}
    if agreement is not None:
        out["agreement"] = agreement
    return out


def teacher_stage(name: str, f1: float, latency: float, size: float) -> dict:
    return {
        "dev": quality(f1 + 0.02, f1 - 0.05), "test": quality(f1, f1 - 0.06),
        "params_total": int(size * 250_000), "params_nonzero": int(size * 249_000),
        "sparsity": 0.004, "size_mb": size, "latency_ms_b1": latency,
        "latency_ms_b32": latency * 12, "artifact": f"/store/teachers/{name}-abc123",
        "gate": {"min_f1": 0.4, "dev_macro_f1": f1 + 0.02, "passed": True},
    }


def student_stage(teacher: dict, f1: float, latency: float, size: float, artifact: str,
                  sparsity: float = 0.0) -> dict:
    return {
        "dev": quality(f1 + 0.01, f1 - 0.04, 0.91), "test": quality(f1, f1 - 0.05, 0.9),
        "params_total": int(size * 250_000), "params_nonzero": int(size * 250_000 * (1 - sparsity)),
        "sparsity": sparsity, "size_mb": size, "latency_ms_b1": latency,
        "latency_ms_b32": latency * 10, "speedup_b1": teacher["latency_ms_b1"] / latency,
        "speedup_b32": teacher["latency_ms_b32"] / (latency * 10),
        "size_reduction": teacher["size_mb"] / size,
        "f1_retention": f1 / teacher["test"]["macro_f1"], "artifact": artifact,
    }


def run_info(teacher: str, student: str, stages: list[str], status: str = "ok", **extra) -> dict:
    return {"stages": stages, "data": "germeval_coarse", "teacher": teacher, "student": student,
            "kd": "logit", "prune": "magnitude" if "prune" in stages else "none",
            "quant": "dynamic_int8" if "quant" in stages else "none", "seed": 42,
            "status": status, **extra}


def write_cell(root: Path, n: int, metrics: dict, overrides: list[str]) -> Path:
    cell = root / str(n)
    (cell / ".hydra").mkdir(parents=True)
    (cell / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (cell / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    return cell


GBERT = teacher_stage("gbert", 0.80, 20.0, 440.0)
XLMR = teacher_stage("xlmr", 0.82, 25.0, 1100.0)


@pytest.fixture
def sweep(tmp_path) -> Path:
    """2x2 matrix: cell 0 pruned (quant skipped), 1 and 3 plain KD, 2 failed in KD."""
    root = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    full = ["teacher", "kd", "prune", "quant"]
    cell0 = {
        "run": run_info("gbert", "sahajbert", full, stage_seconds={"teacher": 1.0}),
        "teacher": GBERT,
        "kd": student_stage(GBERT, 0.72, 9.0, 90.0, "/mr/0/kd/model"),
        "prune": student_stage(GBERT, 0.70, 8.0, 60.0, "/mr/0/prune/model", sparsity=0.5),
        "quant": {"skipped": "quant.method=none"},
        "targets": {},
    }
    cell1 = {"run": run_info("gbert", "mdistilbert", ["teacher", "kd"]), "teacher": GBERT,
             "kd": student_stage(GBERT, 0.76, 6.0, 100.0, "/mr/1/kd/model"), "targets": {}}
    cell2 = {"run": run_info("xlmr", "sahajbert", ["teacher", "kd"], status="failed",
                             error="kd: training diverged (loss is nan) at step 12"),
             "teacher": XLMR}
    cell3 = {"run": run_info("xlmr", "mdistilbert", ["teacher", "kd"]), "teacher": XLMR,
             "kd": student_stage(XLMR, 0.78, 10.0, 150.0, "/mr/3/kd/model"), "targets": {}}
    for n, (metrics, t, s) in enumerate([(cell0, "gbert", "sahajbert"),
                                         (cell1, "gbert", "mdistilbert"),
                                         (cell2, "xlmr", "sahajbert"),
                                         (cell3, "xlmr", "mdistilbert")]):
        write_cell(root, n, metrics, [f"teacher={t}", f"student={s}", "experiment=kd_matrix"])
    return root


def by_cell(rows, kind="cell"):
    return {r["cell"]: r for r in rows if r["kind"] == kind}


def test_csv_rows_equal_the_cells_final_stage(sweep):
    result = write_report(sweep)
    rows = rows_from_csv(result["csv"])
    cells = by_cell(rows)
    assert list(cells) == ["0", "1", "2", "3"]
    expected = {"0": ("prune", sweep / "0"), "1": ("kd", sweep / "1"), "3": ("kd", sweep / "3")}
    for cell, (stage, path) in expected.items():
        values = json.loads((path / "metrics.json").read_text())[stage]
        row = cells[cell]
        assert row["stage"] == stage and row["status"] == "ok" and row["split"] == "test"
        for key in ("macro_f1", "hate_f1", "agreement"):
            assert row[key] == values["test"][key], key
        for key in ("speedup_b1", "speedup_b32", "size_mb", "latency_ms_b1", "latency_ms_b32",
                    "f1_retention", "size_reduction", "params_total", "sparsity", "artifact"):
            assert row[key] == values[key], key
        assert row["dev_macro_f1"] == values["dev"]["macro_f1"]
        assert row["kd"] == "logit" and row["data"] == "germeval_coarse" and row["seed"] == 42
    # the skipped quant stage does not hide the pruned model; its method is recorded
    assert cells["0"]["prune"] == "magnitude" and cells["0"]["label"] == "gbert→sahajbert+magnitude"
    assert cells["1"]["prune"] is None and cells["1"]["label"] == "gbert→mdistilbert"
    assert cells["1"]["overrides"] == "teacher=gbert student=mdistilbert experiment=kd_matrix"


def test_failed_cell_is_a_row_with_its_error_not_a_gap(sweep):
    rows = rows_from_csv(write_report(sweep)["csv"])
    failed = by_cell(rows)["2"]
    assert failed["status"] == "failed"
    assert failed["error"] == "kd: training diverged (loss is nan) at step 12"
    assert (failed["teacher"], failed["student"]) == ("xlmr", "sahajbert")
    assert failed["macro_f1"] is None and failed["speedup_b1"] is None  # no half-numbers
    md = (sweep / "report.md").read_text()
    assert "| failed |" in md and "training diverged (loss is nan) at step 12" in md
    assert "3 ok, 1 not ok" in md


def test_one_teacher_row_per_distinct_teacher_artifact(sweep):
    rows = collect_rows(sweep)
    teachers = [r for r in rows if r["kind"] == "teacher"]
    assert [(t["teacher"], t["cell"]) for t in teachers] == [("gbert", "0"), ("xlmr", "2")]
    gbert = teachers[0]
    assert gbert["macro_f1"] == GBERT["test"]["macro_f1"] and gbert["size_mb"] == 440.0
    assert gbert["latency_ms_b1"] == 20.0 and gbert["speedup_b1"] == 1.0
    assert gbert["agreement"] is None
    # a teacher stored twice (different artifacts) is two rows
    metrics = json.loads((sweep / "3" / "metrics.json").read_text())
    metrics["teacher"]["artifact"] = "/elsewhere/xlmr-retrained"
    (sweep / "3" / "metrics.json").write_text(json.dumps(metrics))
    assert sum(r["kind"] == "teacher" for r in collect_rows(sweep)) == 3


def test_recommendations_pick_the_right_cells(sweep):
    rows = collect_rows(sweep)
    recs = {r["rule"]: r for r in recommend(rows, f1_floor=0.765)}
    assert recs["best_f1"]["row"]["cell"] == "3"       # dev 0.79 (teachers are references only)
    assert recs["fastest"]["row"]["cell"] == "1"       # 6 ms
    assert recs["smallest"]["row"]["cell"] == "0"      # 60 MB pruned
    assert recs["floor"]["row"]["cell"] == "1"         # dev 0.77 >= 0.765, faster than cell 3
    assert {r["rule"]: r for r in recommend(rows, 0.785)}["floor"]["row"]["cell"] == "3"
    assert {r["rule"]: r for r in recommend(rows, 0.70)}["floor"]["row"]["cell"] == "1"
    none = {r["rule"]: r for r in recommend(rows, 0.9)}["floor"]
    assert none["row"] is None and "none meets the floor" in none["text"]
    assert "no F1 floor given" in {r["rule"]: r for r in recommend(rows)}["floor"]["text"]


def test_report_md_holds_recommendations_and_table(sweep):
    write_report(sweep, f1_floor=0.785)
    md = (sweep / "report.md").read_text()
    section = md.split("## Recommendations")[1].split("## Results")[0]
    assert "Best dev macro F1: **xlmr→mdistilbert** (cell 3)" in section
    assert "Fastest (latency b1): **gbert→mdistilbert** (cell 1)" in section
    assert "Smallest (size MB): **gbert→sahajbert+magnitude** (cell 0)" in section
    assert "Fastest with dev macro F1 >= 0.785: **xlmr→mdistilbert** (cell 3)" in section
    assert "| gbert→mdistilbert | logit | kd | ok | - | 0.7600 | 0.7700 |" in md
    write_report(sweep, f1_floor=0.95)
    assert "none meets the floor (best dev macro F1 is 0.7900)" in (sweep / "report.md").read_text()


def test_plots_are_valid_pngs(sweep, tmp_path):
    out = tmp_path / "elsewhere"
    result = write_report(sweep, out=out)
    assert set(result["plots"]) == set(PLOTS)
    import matplotlib.image as mpimg

    for path in result["plots"].values():
        assert path.parent == out and path.stat().st_size > 2000
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert mpimg.imread(path).shape[0] > 100
    assert not (sweep / "report.md").exists()  # --out leaves the sweep untouched
    assert f"![pareto_size]({PLOTS['pareto_size']})" in (out / "report.md").read_text()


def test_split_dev_and_unreadable_cell(sweep):
    (sweep / "4").mkdir()
    (sweep / "4" / "metrics.json").write_text('{"run": {"status": "ok"')  # killed mid-write
    rows = collect_rows(sweep, split="dev")
    cells = by_cell(rows)
    metrics = json.loads((sweep / "1" / "metrics.json").read_text())
    assert cells["1"]["split"] == "dev" and cells["1"]["macro_f1"] == metrics["kd"]["dev"]["macro_f1"]
    assert cells["1"]["f1_retention"] == pytest.approx(
        metrics["kd"]["dev"]["macro_f1"] / metrics["teacher"]["dev"]["macro_f1"])
    assert cells["4"]["status"] == "failed" and "unreadable metrics.json" in cells["4"]["error"]


def test_teacher_only_sweep_recommends_teachers(tmp_path):
    root = tmp_path / "sweep"
    for n, (name, stage) in enumerate([("gbert", GBERT), ("xlmr", XLMR)]):
        write_cell(root, n, {"run": run_info(name, "sahajbert", ["teacher"]), "teacher": stage},
                   [f"teacher={name}"])
    rows = collect_rows(root)
    cells = by_cell(rows)
    assert cells["0"]["stage"] == "teacher" and cells["0"]["student"] is None
    assert cells["0"]["label"] == "gbert"
    recs = {r["rule"]: r for r in recommend(rows)}
    assert recs["best_f1"]["row"]["teacher"] == "xlmr"
    assert recs["fastest"]["row"]["teacher"] == "gbert"


def test_cli_writes_report_and_exit_codes(sweep, tmp_path, capsys):
    assert main([str(sweep), "--f1-floor", "0.765", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "Fastest with dev macro F1 >= 0.765: gbert→mdistilbert (cell 1)" in out
    assert (sweep / "report.csv").exists()
    with open(sweep / "report.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6  # 2 teachers + 4 cells

    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such directory" in err and "\n" not in err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no metrics.json found" in capsys.readouterr().err


def test_cli_as_module(sweep, tmp_path):
    run = subprocess.run([sys.executable, "-m", "hate_compress.report", str(sweep), "--out",
                          str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Best dev macro F1: xlmr→mdistilbert (cell 3)" in run.stdout
    assert (tmp_path / "o" / "report.md").exists()
    bad = subprocess.run([sys.executable, "-m", "hate_compress.report", str(tmp_path / "missing")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: no such directory"]


def test_callback_writes_report_and_never_raises(sweep, tmp_path, caplog):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    MultirunReportCallback(f1_floor=0.785).on_multirun_end(config=config)
    assert "Fastest with dev macro F1 >= 0.785: **xlmr→mdistilbert**" in (
        sweep / "report.md").read_text()
    with caplog.at_level(logging.WARNING, logger="hate_compress.report"):
        bad = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "gone")}}})
        MultirunReportCallback().on_multirun_end(config=bad)
        MultirunReportCallback().on_multirun_end(config=OmegaConf.create({}))
    assert sum("sweep report not written" in r.message for r in caplog.records) == 2
    MultirunReportCallback(enabled=False).on_multirun_end(config=bad)  # silent no-op


def with_dev(stage: dict, dev_f1: float, **dev) -> dict:
    return {**stage, "dev": {**stage["dev"], "macro_f1": dev_f1, **dev}}


def test_selection_uses_dev_never_test(tmp_path):
    """Cell 1 has the best *test* F1 but the worse dev F1: it must not be recommended, and the
    heatmap shows the dev-selected cell of each pair."""
    from hate_compress.report.plots import matrix

    root = tmp_path / "sweep"
    dev_best = with_dev(student_stage(GBERT, 0.70, 9.0, 90.0, "/a"), 0.80)
    test_best = with_dev(student_stage(GBERT, 0.78, 5.0, 80.0, "/b"), 0.72)
    for n, (stage, kd) in enumerate([(dev_best, "logit"), (test_best, "hidden")]):
        write_cell(root, n, {"run": {**run_info("gbert", "sahajbert", ["teacher", "kd"]), "kd": kd},
                             "teacher": GBERT, "kd": stage}, [f"kd={kd}"])
    rows = collect_rows(root)
    recs = {r["rule"]: r for r in recommend(rows, f1_floor=0.75)}
    assert recs["best_f1"]["row"]["cell"] == "0"
    assert recs["floor"]["row"]["cell"] == "0"  # test 0.78 >= 0.75 but dev 0.72 is not
    assert "dev macro F1 0.8000, test macro F1 0.7000" in recs["best_f1"]["text"]
    _, _, grid = matrix(rows, "macro_f1")
    assert grid == [[0.70]]


def test_degenerate_models_are_flagged_and_never_recommended(tmp_path):
    root = tmp_path / "sweep"
    collapsed = {**with_dev(student_stage(GBERT, 0.85, 2.0, 10.0, "/c"), 0.86, hate_f1=0.0,
                            top_prediction_share=1.0, degenerate=True), "degenerate": True}
    sound = {**student_stage(GBERT, 0.70, 9.0, 90.0, "/s"), "degenerate": False}
    for n, stage in enumerate([collapsed, sound]):
        write_cell(root, n, {"run": run_info("gbert", "sahajbert", ["teacher", "kd"]),
                             "teacher": GBERT, "kd": stage}, [f"seed={n}"])
    result = write_report(root, f1_floor=0.5, plots=False)
    for rec in result["recommendations"]:
        assert rec["row"]["cell"] == "1", rec["rule"]
    md = result["report"].read_text()
    assert "## Degenerate models" in md
    assert "- gbert→sahajbert [logit #0] (cell 0, kd): 1.0000 of dev predictions are one class" in md
    assert "| gbert→sahajbert [logit #0] | logit | kd | ok | True |" in md
    csv_rows = by_cell(rows_from_csv(result["csv"]))
    assert csv_rows["0"]["degenerate"] is True and csv_rows["1"]["degenerate"] is False

"""bench/seed_stability.py: the numbers of its table (median, fall below it, the default seed's
gap) are computed from finished sweep cells, so check them on hand-made cells — no training."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("seed_stability",
                                                  ROOT / "bench" / "seed_stability.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_cell(sweep: Path, index: int, seed: int, test: float, dev: float,
               curve=(0.5, 0.6), status: str = "ok") -> None:
    cell = sweep / str(index)
    (cell / "kd" / "logs").mkdir(parents=True)
    metrics = {"run": {"seed": seed, "status": status},
               "teacher": {"test": {"macro_f1": 0.77}},
               "kd": {"test": {"macro_f1": test, "f1_A": test - 0.1, "f1_B": test + 0.1},
                      "dev": {"macro_f1": dev}}}
    (cell / "metrics.json").write_text(json.dumps(metrics))
    lines = ["epoch,step,train/loss,val/macro_f1"]
    for epoch, value in enumerate(curve):
        lines += [f"{epoch},9,1.0,", f"{epoch},10,,{value}"]
    (cell / "kd" / "logs" / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_parse_seeds_takes_ranges_and_lists():
    bench = load_bench()
    assert bench.parse_seeds("1-3,42") == [1, 2, 3, 42]
    assert bench.parse_seeds("5") == [5]


def test_gap_below_median_and_default_seed(tmp_path):
    bench = load_bench()
    for i, (seed, test) in enumerate([(1, 0.80), (2, 0.79), (3, 0.78), (42, 0.72)]):
        write_cell(tmp_path, i, seed, test, dev=test - 0.01, curve=(0.4, test - 0.01))
    rows = bench.collect([tmp_path])
    assert rows[3]["dev_curve"] == [0.4, 0.77]
    assert rows[1]["test_class_f1"] == {"f1_A": pytest.approx(0.70), "f1_B": pytest.approx(0.90)}
    summary = bench.stability(rows, [1, 2, 3], check_seed=42, tolerance=0.02)
    assert summary["median"] == pytest.approx(0.79)
    assert summary["max_gap_below_median"] == pytest.approx(0.01)
    assert summary["stable"] is True
    assert summary["check_seed_gap"] == pytest.approx(0.07)
    assert summary["check_seed_ok"] is False
    out = bench.table(rows, summary)
    assert "| 42 (default) | 0.7200 | 0.7100 | +7.0 | 0.400 0.710 |" in out
    assert "OVER the 2-point bar" in out


def test_an_outlier_among_the_seeds_fails_the_bar(tmp_path):
    bench = load_bench()
    for i, (seed, test) in enumerate([(1, 0.80), (2, 0.79), (3, 0.75)]):
        write_cell(tmp_path, i, seed, test, dev=test)
    summary = bench.stability(bench.collect([tmp_path]), [1, 2, 3], None, 0.02)
    assert summary["max_gap_below_median"] == pytest.approx(0.04)
    assert summary["stable"] is False


def test_failed_cell_or_missing_seed_stops_the_table(tmp_path):
    bench = load_bench()
    write_cell(tmp_path, 0, 1, 0.8, 0.8)
    with pytest.raises(SystemExit, match="no finished run for seed"):
        bench.stability(bench.collect([tmp_path]), [1, 2], None, 0.02)
    write_cell(tmp_path, 1, 2, 0.8, 0.8, status="running")  # unfinished: skipped, not a result
    assert sorted(bench.collect([tmp_path])) == [1]
    write_cell(tmp_path, 2, 2, 0.8, 0.8, status="failed")
    with pytest.raises(SystemExit, match="cell failed"):
        bench.collect([tmp_path])

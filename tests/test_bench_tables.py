"""bench/tables.py: BENCHMARKS.md's tables come from bench/results/*.json and nowhere else.

A table between `<!-- table:NAME -->` markers is replaced by what its JSON says; `--check` fails
on a doc that no longer matches its JSON; a missing JSON leaves a visible "pending" line instead
of an old number; a broken marker is an exit-2 error naming it. No torch, no training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import results_io, tables
from bench.table_renderers import TABLES, kd_ablation, kd_variants, latency_realistic, pipeline_run

ROOT = Path(__file__).resolve().parents[1]

PLAIN = {"settings": {"warmup": 5, "batch_size": 32, "max_length": 64}, "torch_threads": 1,
         "steps": 60, "seconds": 4.0, "samples_per_s": 480.0, "ms_per_step": 66.7, "last_loss": 0.5}


def doc_with(*blocks: str, prose: str = "Some prose, 12.5 ms, kept as is.\n") -> str:
    body = "".join(f"<!-- table:{b} -->\nold 999.9 numbers\n<!-- /table:{b} -->\n" for b in blocks)
    return f"# Benchmarks\n\n{prose}\n{body}\n## A section without markers\n\n| a |\n|---|\n| 1 |\n"


@pytest.fixture
def paths(tmp_path):
    doc, results = tmp_path / "BENCH.md", tmp_path / "results"
    results.mkdir()
    return doc, results


def run(doc: Path, results: Path, *extra: str) -> int:
    return tables.main(["--doc", str(doc), "--results", str(results), *extra])


def write_plain(results: Path, **changes) -> None:
    results_io.write("plain_kd_loop", {**PLAIN, **changes}, command="python bench/plain_kd_loop.py",
                     results=results)


def test_render_replaces_only_the_marked_table(paths):
    doc, results = paths
    doc.write_text(doc_with("plain_kd_loop"))
    write_plain(results)
    assert run(doc, results) == 0
    text = doc.read_text()
    assert "| plain PyTorch KD loop | 480.0 | 67 |" in text
    assert "`python bench/plain_kd_loop.py`" in text  # provenance: the command behind the numbers
    assert "999.9" not in text
    # everything outside the markers is byte-for-byte what it was
    before = doc_with("plain_kd_loop")
    assert text.split("<!-- table:")[0] == before.split("<!-- table:")[0]
    assert text.split("<!-- /table:plain_kd_loop -->")[1] == before.split("<!-- /table:plain_kd_loop -->")[1]
    assert run(doc, results) == 0 and doc.read_text() == text  # idempotent


def test_check_detects_a_stale_doc_and_changes_nothing(paths, capsys):
    doc, results = paths
    doc.write_text(doc_with("plain_kd_loop"))
    write_plain(results)
    assert run(doc, results, "--check") == 1  # the doc still has the hand-written 999.9
    assert run(doc, results) == 0
    assert run(doc, results, "--check") == 0
    write_plain(results, samples_per_s=250.0)  # a rerun measured something else
    rendered = doc.read_text()
    capsys.readouterr()
    assert run(doc, results, "--check") == 1
    assert "plain_kd_loop" in capsys.readouterr().err
    assert doc.read_text() == rendered  # --check never writes


def test_missing_json_renders_pending_not_an_old_number(paths):
    doc, results = paths
    doc.write_text(doc_with("plain_kd_loop", "memory"))
    write_plain(results)
    assert run(doc, results) == 0
    text = doc.read_text()
    assert "**pending: run `python bench/memory.py`** (no bench/results/memory.json yet)" in text
    assert "999.9" not in text
    assert "480.0" in text
    assert run(doc, results, "--check") == 0  # pending is a rendered state, not a stale one


@pytest.mark.parametrize("text, fragment", [
    ("<!-- table:plain_kd_loop -->\nx\n", "<!-- table:plain_kd_loop --> is never closed"),
    ("<!-- table:no_such_table -->\nx\n<!-- /table:no_such_table -->\n", "unknown table 'no_such_table'"),
    ("x\n<!-- /table:memory -->\n", "closes table 'memory', which was never opened"),
    ("<!-- table:memory -->\n<!-- /table:plain_kd_loop -->\n", "closes 'plain_kd_loop' but"),
    ("<!-- table:memory -->\n<!-- table:plain_kd_loop -->\n", "opens inside <!-- table:memory -->"),
    ("<!-- table:memory -->\n<!-- /table:memory -->\n<!-- table:memory -->\n<!-- /table:memory -->\n",
     "table 'memory' appears twice"),
    ("<!-- table: -->\n", "marker without a table name"),
])
def test_bad_markers_exit_2_naming_the_marker(paths, capsys, text, fragment):
    doc, results = paths
    doc.write_text("# B\n\n" + text)
    assert run(doc, results) == 2
    err = capsys.readouterr().err
    assert fragment in err and "BENCH.md:" in err
    assert doc.read_text() == "# B\n\n" + text
    assert run(doc, results, "--check") == 2


def test_malformed_result_file_exits_2_naming_it(paths, capsys):
    doc, results = paths
    doc.write_text(doc_with("plain_kd_loop"))
    results_io.write("plain_kd_loop", {"settings": {}}, results=results)  # no numbers in it
    assert run(doc, results) == 2
    assert "plain_kd_loop.json" in capsys.readouterr().err
    (results / "plain_kd_loop.json").write_text("{not json")
    assert run(doc, results) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_results_io_records_command_date_and_machine(tmp_path, monkeypatch):
    for name in results_io.RELEVANT_ENV:  # CI exports HATE_COMPRESS_DATA_DIR, for one
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    record = results_io.Recorder("x", argv=[str(ROOT / "bench" / "memory.py"), "--modes", "live"])
    path = record.write({"value": 1.5}, results=tmp_path)
    doc = json.loads(path.read_text())
    assert doc["command"] == "OMP_NUM_THREADS=1 python bench/memory.py --modes live"
    assert doc["results"] == {"value": 1.5} and doc["date"][:2] == "20"
    assert doc["machine"]["cpu_cores"] and doc["machine"]["env"]["OMP_NUM_THREADS"] == "1"
    assert "shared" in doc["note"]
    with pytest.raises(ValueError, match="bare name"):
        results_io.write("a/b", {}, results=tmp_path)


def test_benchmarks_md_is_in_sync_with_its_results():
    """The committed doc says exactly what the committed JSON files say (run `make bench-tables`)."""
    assert tables.main(["--check"]) == 0
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert {b.name for b in tables.find_blocks(text)} <= set(TABLES)


# producers and renderers agree on the record's shape (hand-made inputs, no training)


def test_kd_table_record_renders():
    from bench import kd_table

    def cell(kd, seed, f1):
        explained = kd != "none"  # an old sweep's cells (no measure.explain) render "-"
        explain = {"status": "ok", "cosine_mean": 0.5 + 0.1 * seed, "top5_overlap_mean": 0.4}
        return {"run": {"status": "ok", "kd": kd, "seed": seed, "teacher": "tiny_teacher"},
                "teacher": {"test": {"macro_f1": 0.64}},
                "kd": {"test": {"macro_f1": f1, "hate_f1": f1 - 0.1, "agreement": 0.9},
                       "dev": {"macro_f1": f1 + 0.05},
                       "forgetting": {"flip_rate_lost": 0.1 * seed},
                       **({"explain": explain} if explained else {})}}

    rows = {kd: [cell(kd, s, 0.6 + 0.01 * s) for s in (1, 2, 3)] for kd in kd_table.KDS}
    out = kd_ablation(kd_table.aggregate(rows))
    assert ("| logit | 3 | 0.6200 ± 0.0100 | 0.5200 ± 0.0100 | 0.6700 ± 0.0100 | 0.9000 ± 0.0000 "
            "| 0.7000 ± 0.1000 | 0.4000 ± 0.0000 | 0.2000 ± 0.1000 |") in out
    assert "| none | 3 | 0.6200 ± 0.0100 | 0.5200 ± 0.0100 | 0.6700 ± 0.0100 | 0.9000 ± 0.0000 | - | - | 0.2000" in out
    assert "test hate F1" in out and "0.6400" in out



def test_kd_variants_record_renders_from_the_cells_run_dirs(tmp_path):
    """bench/kd_variants.py reads each cell's metrics.json (assistant and mutual rows included),
    aggregates, and the renderer shows mean ± std, the gain over labels only and the baseline gap;
    an unfinished cell is left out, a variant with none shows as not run."""
    from bench import kd_variants as kv

    def cell(variant, seed, f1, **extra):
        split = {"macro_f1": f1, "agreement": 0.8}
        metrics = {"run": {"status": "ok", "seed": seed, "teacher": "ensemble"},
                   "teacher": {"test": {"macro_f1": 0.70}}, "kd": {"test": split, "dev": {"macro_f1": f1 + 0.05}},
                   "baseline": {"test": {"macro_f1": 0.6930}}, **extra}
        path = kv.run_dir(tmp_path, variant, seed)
        path.mkdir(parents=True)
        (path / "metrics.json").write_text(json.dumps(metrics))

    for seed in (1, 2, 3):
        cell("none", seed, 0.63 + 0.01 * (seed - 2))
        cell("ensemble", seed, 0.66 + 0.01 * (seed - 2))
    cell("assistant", 1, 0.65, assistant={"test": {"macro_f1": 0.655}})
    cell("mutual", 1, 0.64, kd_peer0={"test": {"macro_f1": 0.64}}, kd_peer1={"test": {"macro_f1": 0.62}})
    running = kv.run_dir(tmp_path, "assistant", 2)
    running.mkdir(parents=True)
    (running / "metrics.json").write_text(json.dumps({"run": {"status": "running"}}))
    order = ["none", "ensemble", "char_ngram", "assistant"]  # mutual: found on disk, still shown
    (kv.run_dir(tmp_path, "none", 9).parent / "seed_9.lock").write_text("123")  # a killed run's lock
    cells = kv.collect(tmp_path, order, [1, 2])  # seed 3: finished by another invocation
    assert list(cells) == ["none", "char_ngram", "ensemble", "assistant", "mutual"] and list(cells["none"]) == [1, 2, 3]
    result = kv.aggregate(cells, list(cells))
    assert result["baseline_macro_f1"] == 0.6930 and result["baseline_values_agree"]
    result.update({"planned_seeds": [1, 2, 3], "teacher_seed": 42})
    out = kd_variants(result)
    assert ("| logit KD from ensemble(tiny_teacher, char_ngram) | 3 | 0.6600 ± 0.0100 | +3.0 | -3.3 "
            "| 0.8000 ± 0.0000 | 0.7100 ± 0.0100 | ensemble | 0.7000 |") in out
    assert "| labels only (kd=none) | 3 | 0.6300 ± 0.0100 | - | -6.3 |" in out
    assert "| logit KD from char_ngram | 0 | not run yet |" in out
    assert "| 1 | 0.6500 ± 0.0000 |" in out  # the assistant's one finished seed; seed 2 still running
    assert "test macro F1 **0.6930**" in out
    assert "Assistant (3x192) seed 1: test macro F1 0.6550" in out
    assert "Mutual peers seed 1: test macro F1 0.6400 / 0.6200" in out
    assert "Failed cells" not in out
    lock = kv.claim(running)
    assert lock is not None and kv.claim(running) is None  # one cell, one process at a time
    lock.unlink()
    cmd = kv.cell_command(kv.VARIANTS["ensemble"], "germeval_coarse", 1, tmp_path / "store", tmp_path, [])
    assert "teacher=ensemble" in cmd and "+teacher.member_overrides.char_ngram.seed=42" in cmd
    assert "teacher.seed=42" in cmd and "seed=1" in cmd and "measure.latency=false" in cmd


def test_kd_variants_keeps_recorded_cells_whose_run_dirs_are_gone(tmp_path, monkeypatch):
    """Run directories are scratch; a later invocation adding seeds keeps the committed JSON's
    cells (a fresh cell on disk wins), and only from a record with the same extra overrides."""
    from bench import kd_variants as kv

    ok = {"status": "ok", "split": "test", "test_macro_f1": 0.65, "dev_macro_f1": 0.7,
          "agreement": 0.8, "teacher": "ensemble", "teacher_test_macro_f1": 0.7}
    results_io.write("kd_variants_x", {"overrides": [], "rows": [
        {"variant": "ensemble", "runs": {"1": ok, "2": {**ok, "test_macro_f1": 0.66}}},
        {"variant": "none", "runs": {"1": {"status": "failed"}}}]}, results=tmp_path)
    monkeypatch.setattr(results_io, "RESULTS", tmp_path)
    recorded = kv.recorded_cells(kv.read_record("kd_variants_x"), [])
    assert kv.recorded_cells(kv.read_record("kd_variants_x"), ["student.train.epochs=2"]) == {}
    assert kv.recorded_cells(kv.read_record("kd_variants_missing"), []) == {}
    fresh = {"ensemble": {2: {**ok, "test_macro_f1": 0.61}, 3: None}, "none": {1: None}}
    cells, carried = kv.merge_recorded(fresh, recorded)
    assert carried == ["ensemble/1"]  # the failed one is not carried, seed 2 is on disk
    assert [cells["ensemble"][s]["test_macro_f1"] for s in (1, 2)] == [0.65, 0.61]
    assert cells["ensemble"][3] is None and cells["none"][1] is None
    # what runs: a cell finished on disk or in the record is skipped (unless --fresh)
    where = kv.finished_where(None, recorded["ensemble"][1], tmp_path, "kd_variants_x")
    assert where == "recorded in bench/results/kd_variants_x.json"
    assert kv.finished_where(fresh["ensemble"][2], None, tmp_path, "x") == str(tmp_path)
    assert kv.finished_where(None, recorded["none"][1], tmp_path, "x") is None  # failed: rerun


def test_kd_variants_keeps_the_commands_of_invocations_running_at_the_same_time():
    """Two invocations fill one table at once: each rewrites the record after every cell, so each
    must keep the other's command, not only the ones it saw when it started."""
    from bench import kd_variants as kv

    old = {"command": "python bench/kd_variants.py --seeds 1"}  # before `invocations` existed
    started = {"results": {"invocations": ["python bench/kd_variants.py --seeds 1", "a"]}}
    meanwhile = {"results": {"invocations": ["python bench/kd_variants.py --seeds 1", "a", "b"]}}
    assert kv.merge_invocations([old], "a") == ["python bench/kd_variants.py --seeds 1", "a"]
    assert kv.merge_invocations([started, meanwhile], "c") == [
        "python bench/kd_variants.py --seeds 1", "a", "b", "c"]
    assert kv.merge_invocations([started, meanwhile], "b")[-1] == "b"


def test_pipeline_summary_record_renders():
    from bench.compression import markdown_rows

    summary = ("quality on test\nseed 42\n\n| stage | macro F1 | size MB |\n|---|---|---|\n"
               "| teacher | 0.6426 | 21.8 |\n| kd | 0.6479 | 6.2061 |\n\ntarget x: 1 vs 0.95 -> met\n")
    headers, rows = markdown_rows(summary)
    out = pipeline_run({"headers": headers, "rows": rows, "split": "test",
                        "targets": {"f1_retention": {"value": 1.0083, "target": 0.95, "met": True}},
                        "stage_seconds": {"teacher": 18.2, "kd": 44.0}})
    assert "| kd | 0.6479 | 6.2061 |" in out
    assert "f1_retention 1.0083 vs 0.95 -> met" in out and "kd 44" in out
    assert "keeps" not in out  # kd is the last stage: nothing compressed it


def test_pipeline_record_says_what_compression_kept_of_the_kd_student():
    from bench.compression import markdown_rows

    summary = ("quality on test, over seeds [1, 2]\n\n| stage | seeds | macro F1 mean ± std |\n"
               "|---|---|---|\n| teacher | 2 | 0.6755 ± 0.0000 |\n| kd | 2 | 0.6500 ± 0.0020 |\n"
               "| prune | 2 | 0.6400 ± 0.0030 |\n| quant (DEGENERATE) | 2 | 0.6175 ± 0.0100 |\n"
               "| baseline char_ngram (reference) | 2 | 0.6906 ± 0.0000 |\n")
    headers, rows = markdown_rows(summary)
    out = pipeline_run({"headers": headers, "rows": rows, "split": "test"})
    assert "The final stage (quant (DEGENERATE)) keeps 0.950 of the KD student's macro F1 " \
           "(0.6175 vs 0.6500)." in out


def test_latency_record_renders():
    row = {"model": "m", "size_mb": 10.0}
    out = latency_realistic({"settings": {"seq": 64, "runs": 3, "warmup": 1}, "columns": ["b1 t1 ms"],
                             "rows": [{**row, "variant": "torch fp32", "b1 t1 ms": 100.0},
                                      {**row, "variant": "ORT INT8 dynamic", "b1 t1 ms": 40.0}]})
    assert "| m | ORT INT8 dynamic | 10.0 | 40.00 (2.5x) |" in out


def test_run_all_steps_write_every_table_and_only_known_steps_run():
    from bench import run_all

    produced = {name for step in run_all.STEPS for name in step.results}
    for table in TABLES.values():
        assert set(table.results) <= produced, f"no `make bench` step writes {table.results}"
        step = next(s for s in run_all.STEPS if set(table.results) <= set(s.results))
        if len(step.results) == 1:  # the pending line names the command that writes the file
            assert table.command == step.command, (table.command, step.command)
    assert [s.name for s in run_all.select("memory,kd_throughput")] == ["memory", "kd_throughput"]
    with pytest.raises(SystemExit, match="unknown step.*nope"):
        run_all.select("memory,nope")


def test_ensemble_teacher_record_renders_the_dev_choice():
    from bench.table_renderers import ensemble_teacher

    def row(mode, t, share, dev, test):
        return {"combine": mode, "temperature": t, "char_ngram_share": share,
                "dev_macro_f1": dev, "test_macro_f1": test}

    rows = [row("probs", 4.0, 0.5, 0.70, 0.675), row("probs", 4.0, 0.8, 0.74, 0.69),
            row("logits", None, 1.0, 0.72, 0.6906)]
    out = ensemble_teacher({"split": "test", "rows": rows, "best_by_dev": rows[1],
                            "default": rows[0], "default_temperature": 4.0})
    assert "| probs | 4 | 0.20 / 0.80 | 0.7400 | 0.6900 |" in out
    assert "| logits | - | 0.00 / 1.00 | 0.7200 | 0.6906 |" in out
    assert "Best by dev: combine=probs, T 4, weights 0.20 / 0.80: dev 0.7400, test 0.6900." in out
    assert "Default ensemble (equal weights, probs at T 4): combine=probs, T 4, weights 0.50 / 0.50" in out


def test_kd_variants_shows_both_teachers_when_seeds_split_between_two():
    from bench import kd_variants as kv

    def cell(teacher_f1):
        return {"status": "ok", "split": "test", "test_macro_f1": 0.65, "dev_macro_f1": 0.7,
                "agreement": 0.8, "teacher": "tiny_teacher", "teacher_test_macro_f1": teacher_f1}

    result = kv.aggregate({"tiny_teacher": {1: cell(0.6399), 2: cell(0.6426)}}, ["tiny_teacher"])
    result.update({"planned_seeds": [1, 2], "teacher_seed": 42})
    result["invocations"] = ["python bench/kd_variants.py --seeds 1", "python bench/kd_variants.py --seeds 2"]
    out = kd_variants(result)
    assert "| tiny_teacher | 0.6399 / 0.6426 |" in out and "trained twice" in out
    assert "Cells made by: `python bench/kd_variants.py --seeds 1`; `python bench/kd_variants.py --seeds 2`." in out
    same = kv.aggregate({"tiny_teacher": {1: cell(0.6399), 2: cell(0.6399)}}, ["tiny_teacher"])
    assert "trained twice" not in kd_variants({**same, "planned_seeds": [1, 2], "teacher_seed": 42})

"""Nothing stale: reused work (teacher store, teacher-output cache, a resumed run) must come from
the same configuration and data, or not be reused at all (issue 10, item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from hate_compress.data import sample_dir
from hate_compress.errors import ConfigError
from hate_compress.pipeline.runner import make_data, run_pipeline
from hate_compress.stages.state import Run
from hate_compress.stages.teacher import teacher_key


def dev_file(tmp_path: Path, rows: int) -> Path:
    """The first `rows` rows of the shipped synthetic test file, as a dev file."""
    lines = (Path(sample_dir()) / "synthetic_test.csv").read_text().splitlines(keepends=True)
    path = tmp_path / f"dev_{rows}.csv"
    path.write_text("".join(lines[: rows + 1]))
    return path


# -- (a) teacher-output cache ----------------------------------------------------------------


def test_teacher_output_cache_is_keyed_on_the_dev_split(tiny_cfg, tmp_path):
    """Same train, a different (longer) dev set: new cache entry, not the old dev logits
    (which used to give an IndexError, or silently wrong agreement for a same-size dev set)."""
    teacher = run_pipeline(tiny_cfg("pipeline=teacher"), tmp_path / "t")["teacher"]["artifact"]
    cache = tmp_path / "cache" / "teacher_outputs"
    for rows in (40, 80):
        cfg = tiny_cfg("pipeline=teacher_kd", f"teacher.checkpoint={teacher}",
                       f"data.dev_file={dev_file(tmp_path, rows)}")
        assert run_pipeline(cfg, tmp_path / f"kd_{rows}")["kd"]["teacher_cache"] is True
    dev_rows = sorted(len(load_file(str(p))["dev.logits"]) for p in cache.glob("*.safetensors"))
    assert dev_rows == [40, 80]


# -- (b) teacher store key -------------------------------------------------------------------


@pytest.fixture
def key_of(tiny_cfg, tmp_path):
    def key(*overrides: str) -> str:
        cfg = tiny_cfg("pipeline=teacher", *overrides)
        return teacher_key(Run(cfg, tmp_path / "run", make_data(cfg)))

    return key


@pytest.mark.parametrize("override", [
    "trainer.gradient_clip_val=0.25",
    "+trainer.accumulate_grad_batches=2",
    "trainer.precision=bf16-mixed",
    "hardware=ddp_cpu",
    "trainer.limit_val_batches=1",
    "DEV",
    "data.eval_batch_size=7",
    "teacher.seed=7",
])
def test_teacher_store_key_follows_every_training_setting(key_of, tmp_path, override):
    if override == "DEV":  # same train file, another dev file
        base = key_of(f"data.dev_file={dev_file(tmp_path, 40)}")
        assert key_of(f"data.dev_file={dev_file(tmp_path, 41)}") != base
        return
    assert key_of(override) != key_of()


@pytest.mark.parametrize("override", [
    "teacher.min_f1=0.3", "teacher.retrain=true", "logger=none", "trainer.log_every_n_steps=3",
    "trainer.enable_progress_bar=true", "data.num_workers=0", "kd.alpha=0.9",
    "student=tiny_student_xtok",
])
def test_teacher_store_key_ignores_harmless_settings(key_of, tmp_path, override):
    assert key_of(override) == key_of()


def test_teacher_store_key_ignores_where_outputs_and_data_files_live(key_of, tmp_path):
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    copy = moved / "dev.csv"
    copy.write_text(dev_file(tmp_path, 40).read_text())
    assert (key_of(f"paths.output_root={tmp_path / 'other'}", f"data.dev_file={copy}")
            == key_of(f"data.dev_file={dev_file(tmp_path, 40)}"))


# -- (c) resuming a run under a changed config ----------------------------------------------


def test_resuming_under_a_changed_config_is_refused_naming_the_keys(tiny_cfg, tmp_path):
    run_dir = tmp_path / "outputs" / "runs" / "r"
    run_pipeline(tiny_cfg("pipeline=teacher", "run_name=r"), run_dir)
    message = (r"^run_name=r was started with a different config \(kd\.alpha: 0\.5 -> 0\.7; "
               r"trainer\.gradient_clip_val: 1\.0 -> 0\.5\); use a new run_name, or resume=false "
               r"to start fresh$")
    with pytest.raises(ConfigError, match=message):
        run_pipeline(tiny_cfg("pipeline=teacher", "run_name=r", "kd.alpha=0.7",
                              "trainer.gradient_clip_val=0.5"), run_dir)
    # keys that cannot change a result may differ
    again = run_pipeline(tiny_cfg("pipeline=teacher", "run_name=r", "measure.latency=false",
                                  "trainer.log_every_n_steps=2", "logger=none"), run_dir)
    assert again["run"]["status"] == "ok"


def test_resume_false_starts_the_changed_run_fresh(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    run_pipeline(tiny_cfg("pipeline=teacher", "teacher.retrain=true"), run_dir)
    stale = run_dir / "teacher" / "checkpoints" / "stale-marker"
    stale.write_text("from the first run")
    changed = tiny_cfg("pipeline=teacher", "teacher.retrain=true", "kd.alpha=0.7", "resume=false")
    assert run_pipeline(changed, run_dir)["run"]["status"] == "ok"
    assert not stale.exists()  # the old stage directory went, the teacher was trained again
    assert (run_dir / "teacher" / "checkpoints" / "last.ckpt").exists()
    assert "alpha: 0.7" in (run_dir / "config_resolved.yaml").read_text()

"""Models resolve and KD terms fit them before anything trains (issue 12, item 5).

An unloadable student (bad path, unreachable hub) used to surface only in the kd stage, after
the teacher had trained (hours with a real teacher).
"""

from __future__ import annotations

import logging

import pytest

from hate_compress.errors import HateCompressError
from hate_compress.pipeline.runner import run_pipeline
from tests.conftest import compose_cfg

BAD_STUDENT = ["student.backbone.scratch=null", "student.backbone.tokenizer=null"]


def assert_nothing_trained(tmp_path):
    teachers = tmp_path / "cache" / "teachers"
    assert not teachers.exists() or not any(teachers.iterdir()), "a teacher was trained and stored"
    assert not (tmp_path / "run" / "teacher").exists()


def test_unloadable_student_fails_in_one_line_before_the_teacher_trains(tmp_path):
    missing = tmp_path / "no_such_model"
    cfg = compose_cfg(tmp_path, ["pipeline=teacher_kd", *BAD_STUDENT,
                                 f"student.backbone.name_or_path={missing}"])
    with pytest.raises(HateCompressError) as info:
        run_pipeline(cfg, tmp_path / "run")
    message = str(info.value)
    assert "student" in message and str(missing) in message and "\n" not in message
    assert_nothing_trained(tmp_path)


def test_student_dir_without_a_model_fails_before_the_teacher_trains(tmp_path):
    empty = tmp_path / "empty_model_dir"
    empty.mkdir()
    cfg = compose_cfg(tmp_path, ["pipeline=teacher_kd", *BAD_STUDENT,
                                 f"student.backbone.name_or_path={empty}"])
    with pytest.raises(HateCompressError, match="could not load student model"):
        run_pipeline(cfg, tmp_path / "run")
    assert_nothing_trained(tmp_path)


def test_impossible_kd_term_fails_before_the_teacher_trains(tmp_path):
    """A hidden-state layer map naming a student layer that does not exist."""
    cfg = compose_cfg(tmp_path, ["pipeline=teacher_kd", "kd=hidden",
                                 "kd.terms.hidden.layer_map=[{student:5,teacher:0}]"])
    with pytest.raises(HateCompressError) as info:
        run_pipeline(cfg, tmp_path / "run")
    assert "\n" not in str(info.value)
    assert_nothing_trained(tmp_path)


@pytest.mark.parametrize("smoke", [False, True])
def test_warns_when_the_student_is_larger_than_the_teacher(tmp_path, caplog, smoke):
    """A real run warns; a `debug=tiny` smoke run (`smoke=true`: its 1x64 teacher is smaller
    than every student) says it at info level only, so a newcomer's first run shows no alarm."""
    cfg = compose_cfg(tmp_path, ["pipeline=teacher_kd", "student.backbone.scratch.hidden_size=256",
                                 "student.backbone.scratch.num_hidden_layers=4", "stages=[kd]",
                                 f"smoke={str(smoke).lower()}"])
    from hate_compress.pipeline.runner import make_data
    from hate_compress.stages.kd import check_kd_models
    from hate_compress.stages.state import Run

    run = Run(cfg, tmp_path / "run", make_data(cfg))
    with caplog.at_level(logging.INFO):
        check_kd_models(run)
    found = [r for r in caplog.records if "is larger than teacher" in r.getMessage()]
    assert [r.levelno for r in found] == [logging.INFO if smoke else logging.WARNING]

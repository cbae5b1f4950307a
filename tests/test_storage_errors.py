"""Unwritable output or cache directory, a full disk, a read-only teacher store (issue 10,
item 7): one `error:` line naming the path, exit 2, no traceback.

Tests run as root, where chmod does not stop writes: an "unwritable" directory is a path below a
regular file (ENOTDIR), and a full disk or read-only mount is simulated by making the write
itself raise the OSError the kernel would give."""

from __future__ import annotations

import builtins
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hate_compress.pipeline.runner import guarded_run, run_pipeline
from hate_compress.training.trainer import SafeCheckpointIO
from tests.conftest import ROOT, TINY, cli_env


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "not_a_dir"
    path.write_text("a regular file")
    return path


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in lines), lines
    assert lines[-1].startswith("error: "), lines
    return lines[-1]


def fails_with_exit_2(cfg, run_dir: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        guarded_run(cfg, run_dir)
    assert exit_info.value.code == 2


def test_unwritable_output_root_is_one_line_from_the_cli(tmp_path):
    bad = a_file(tmp_path) / "outputs"
    out = subprocess.run(
        [sys.executable, "-m", "hate_compress", "data=synthetic", "pipeline=teacher", *TINY,
         f"paths.output_root={bad}", "run_name=r"],
        cwd=ROOT, env=cli_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert lines == [f"error: cannot write {bad / 'runs' / 'r'}: a parent of it is a file, not a "
                     "directory; set paths.output_root=<a writable directory>"]


def test_unwritable_cache_dir(tiny_cfg, tmp_path, capsys):
    cache = a_file(tmp_path) / "cache"
    cfg = tiny_cfg("pipeline=teacher", f"paths.cache_dir={cache}",
                   f"paths.teacher_store={tmp_path / 'store'}")
    fails_with_exit_2(cfg, tmp_path / "run")
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write {cache}")
    assert line.endswith("set paths.cache_dir=<a writable directory>")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["run"]["status"] == "failed"


def test_full_disk_while_checkpointing(tiny_cfg, tmp_path, capsys, monkeypatch):
    def disk_full(self, checkpoint, path, storage_options=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # write() names no file

    monkeypatch.setattr(SafeCheckpointIO, "save_checkpoint", disk_full)
    fails_with_exit_2(tiny_cfg("pipeline=teacher"), tmp_path / "run")
    assert one_error_line(capsys) == (
        f"error: cannot write {tmp_path / 'run' / 'teacher'}: no space left on the device; "
        "free some space, or set paths.output_root=<a writable directory>")


def test_full_disk_while_writing_the_teacher_output_cache(tiny_cfg, tmp_path, capsys,
                                                          monkeypatch):
    import hate_compress.kd.teacher as kd_teacher

    teacher = run_pipeline(tiny_cfg("pipeline=teacher"), tmp_path / "t")["teacher"]["artifact"]

    def disk_full(tensors, filename, metadata=None):  # how safetensors reports it
        raise type("SafetensorError", (Exception,), {})(
            "Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(kd_teacher, "save_file", disk_full)
    fails_with_exit_2(tiny_cfg("pipeline=teacher_kd", f"teacher.checkpoint={teacher}"),
                      tmp_path / "run")
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write {tmp_path / 'cache' / 'teacher_outputs'}: no space")


@pytest.fixture
def read_only(monkeypatch):
    """Make every write under the returned directories fail like a read-only mount (EROFS)."""
    roots: list[Path] = []
    real_open, real_write = builtins.open, Path.write_text

    def is_inside(path) -> bool:
        return any(Path(path).resolve().is_relative_to(r) for r in roots)

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and is_inside(file):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return real_open(file, mode, *args, **kwargs)

    def guarded_write(self, *args, **kwargs):
        if is_inside(self):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(Path, "write_text", guarded_write)
    return lambda path: roots.append(Path(path).resolve())


def test_read_only_store_without_the_teacher_is_one_line(tiny_cfg, tmp_path, capsys, read_only):
    store = tmp_path / "store"
    store.mkdir()
    read_only(store)
    fails_with_exit_2(tiny_cfg("pipeline=teacher", f"paths.teacher_store={store}"),
                      tmp_path / "run")
    assert one_error_line(capsys).startswith(f"error: cannot write {store}")


def test_read_only_store_still_serves_its_teachers(tiny_cfg, tmp_path, read_only):
    store = tmp_path / "store"
    first = run_pipeline(tiny_cfg("pipeline=teacher", f"paths.teacher_store={store}"),
                         tmp_path / "a")["teacher"]
    read_only(store)
    again = run_pipeline(tiny_cfg("pipeline=teacher", f"paths.teacher_store={store}"),
                         tmp_path / "b")["teacher"]
    assert again["artifact"] == first["artifact"]


def test_replacing_swaps_in_the_new_file_or_leaves_the_old_one(tmp_path):
    """The shared temp-then-rename of every cache, card and metrics file: a failed write keeps
    the old content and no temp file; the temp name keeps the suffix (matplotlib needs it)."""
    from hate_compress.storage import replacing

    target = tmp_path / "plot.png"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != target
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
    with replacing(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]

"""Runs that are killed, poisoned or diverge must not cost correctness or safety.

* resume: a run SIGKILLed during teacher training and again during KD, rerun with the same
  command each time, ends bit-for-bit where an uninterrupted run ends;
* safe loading: a malicious pickle in a run directory or a teacher directory is refused with one
  line and never executed;
* determinism: same seed and config, same metrics;
* NaN guard: a diverging loss stops the stage with one line and keeps the last good checkpoint.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hate_compress.errors import TrainingDiverged
from hate_compress.pipeline.runner import guarded_run, run_pipeline
from tests.conftest import CONF, ROOT, TINY, cli_env, compose_cfg

PACKAGE = ROOT / "hate_compress"

# -- resume after SIGKILL --------------------------------------------------------------------

# ≥3 epochs per stage, a few batches each (~1 s per epoch on a quiet CPU), and a learning rate
# at which the tiny models really learn, so the compared F1s are not a constant majority vote
RESUME_ARGS = [
    "pipeline=teacher_kd", "data=synthetic", *TINY,
    "teacher.train.epochs=3", "student.train.epochs=3",
    "teacher.train.lr=1e-3", "student.train.lr=1e-3",
    "trainer.limit_train_batches=6", "trainer.limit_val_batches=1",
]


def cli(root: Path, run_name: str, store: str) -> list[str]:
    return [sys.executable, "-m", "hate_compress", f"run_name={run_name}",
            f"paths.output_root={root / 'outputs'}", f"paths.teacher_store={root / store}",
            *RESUME_ARGS]


def run_to_end(root: Path, run_name: str, store: str) -> subprocess.CompletedProcess:
    out = subprocess.run(cli(root, run_name, store), cwd=ROOT, env=cli_env(root),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def run_and_kill(root: Path, run_name: str, store: str, stage: str) -> dict:
    """Start the CLI and SIGKILL its whole process group as soon as `stage` has written its
    first `last.ckpt` (end of its first epoch). Returns that checkpoint's loop position."""
    ckpt = root / "outputs" / "runs" / run_name / stage / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(cli(root, run_name, store), cwd=ROOT, env=cli_env(root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not ckpt.exists():
            assert proc.poll() is None, f"the run ended (rc={proc.returncode}) before {ckpt}"
            assert time.monotonic() < deadline, f"no {ckpt} after 600 s"
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    return {"epoch": state["epoch"], "global_step": state["global_step"]}


def safetensors_equal(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def teacher_weights(root: Path, store: str) -> Path:
    (found,) = (root / store).glob("*/model.safetensors")
    return found


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """One uninterrupted run, and one run killed during teacher training, rerun, killed during
    KD, and rerun to the end.

    Both share `paths.cache_dir` but have their own teacher store, so the killed run really
    trains — and resumes — its own teacher."""
    root = tmp_path_factory.mktemp("resume")
    run_to_end(root, "base", "store_base")
    killed_teacher = run_and_kill(root, "r1", "store_r1", "teacher")
    assert not list((root / "store_r1").glob("*/model.safetensors")), "teacher finished anyway"
    killed_kd = run_and_kill(root, "r1", "store_r1", "kd")
    after_kd_kill = json.loads((root / "outputs/runs/r1/metrics.json").read_text())
    final = run_to_end(root, "r1", "store_r1")
    runs = root / "outputs" / "runs"
    return {
        "root": root, "killed_teacher": killed_teacher, "killed_kd": killed_kd,
        "after_kd_kill": after_kd_kill, "final_log": final.stdout + final.stderr,
        "base": json.loads((runs / "base" / "metrics.json").read_text()),
        "r1": json.loads((runs / "r1" / "metrics.json").read_text()),
    }


def test_resume_after_kill_during_teacher_training(resumed):
    """Tolerance: exact (0). Resuming replays the same float operations in the same order —
    same weights, optimizer and scheduler state from `last.ckpt`, batch order from
    (seed, epoch), dropout masks from (seed, epoch, batch) — so anything but bitwise equality
    is a bug. (A wrong epoch order or RNG state moves dev F1 by multiples of 1/40 here.)"""
    assert resumed["killed_teacher"]["epoch"] < 2  # killed with teacher epochs still to run
    base, r1 = resumed["base"]["teacher"], resumed["after_kd_kill"]["teacher"]
    for split in ("dev", "test"):
        assert r1[split]["macro_f1"] == base[split]["macro_f1"]
        assert r1[split] == base[split]
    root = resumed["root"]
    assert safetensors_equal(teacher_weights(root, "store_r1"), teacher_weights(root, "store_base"))


def test_resume_after_kill_during_kd(resumed):
    """Tolerance: exact (0), for the reason given in the teacher test; the whole model is
    compared too, since two F1s can agree by chance."""
    assert resumed["killed_kd"]["epoch"] < 2  # KD epochs were still to run after the kill
    assert "resuming from " in resumed["final_log"]
    assert str(Path("r1") / "kd" / "checkpoints" / "last.ckpt") in resumed["final_log"]
    base, r1 = resumed["base"], resumed["r1"]
    assert r1["run"]["status"] == "ok"
    for split in ("dev", "test"):
        assert r1["kd"][split]["macro_f1"] == base["kd"][split]["macro_f1"]
        assert r1["kd"][split] == base["kd"][split]
        assert r1["teacher"][split] == base["teacher"][split]
    assert 0.0 < base["kd"]["dev"]["macro_f1"] < 1.0
    runs = resumed["root"] / "outputs" / "runs"
    assert safetensors_equal(runs / "r1/kd/model/model.safetensors",
                             runs / "base/kd/model/model.safetensors")


def _plain_leaves(obj, path="ckpt"):
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert isinstance(key, (str, int)), (path, key)
            yield from _plain_leaves(value, f"{path}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _plain_leaves(value, f"{path}[{i}]")
    else:
        yield path, obj


def test_checkpoints_hold_only_tensors_and_primitives(resumed):
    """What makes `weights_only=True` loading possible at all: if a hyper-parameter or callback
    state were an arbitrary object, the safe loader would refuse our own checkpoints."""
    runs = resumed["root"] / "outputs" / "runs" / "r1"
    for stage in ("teacher", "kd"):
        for name in ("last.ckpt", "best.ckpt"):
            state = torch.load(runs / stage / "checkpoints" / name, map_location="cpu",
                               weights_only=True)
            assert "hyper_parameters" not in state
            assert state["state_dict"] and state["optimizer_states"] and state["lr_schedulers"]
            for path, leaf in _plain_leaves(state):
                assert leaf is None or isinstance(leaf, (torch.Tensor, int, float, str, bool)), \
                    (path, type(leaf))


# -- safe loading -----------------------------------------------------------------------------


class Payload:
    """Unpickling this runs code (here: creates a marker file)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').close()",))


def write_payload(path: Path, marker: Path, *, zip_format: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / "payload.tmp"  # neutral name: torch.load dispatches on .safetensors
    if zip_format:  # what a doctored Lightning checkpoint looks like
        torch.save({"state_dict": {}, "epoch": 0, "hook": Payload(marker)}, staging)
    else:  # a bare pickle
        import pickle

        staging.write_bytes(pickle.dumps(Payload(marker)))
    # prove the payload is live: an unsafe load really does run it
    with contextlib.suppress(RuntimeError):  # a bare pickle then fails torch's format check
        torch.load(staging, weights_only=False)
    assert marker.exists()
    marker.unlink()
    staging.rename(path)
    return path


def run_failing(cfg, run_dir: Path) -> list[str]:
    with contextlib.redirect_stderr(io.StringIO()) as err:
        with pytest.raises(SystemExit) as info:
            guarded_run(cfg, run_dir)
    assert info.value.code == 2
    errors = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err.getvalue()[-3000:]
    return errors


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch_save", "raw_pickle"])
def test_malicious_last_ckpt_is_refused_on_resume(tiny_cfg, tmp_path, zip_format):
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    ckpt = write_payload(run_dir / "teacher" / "checkpoints" / "last.ckpt", marker,
                         zip_format=zip_format)
    errors = run_failing(tiny_cfg("pipeline=teacher"), run_dir)
    assert f"{ckpt}: refusing to load this checkpoint" in errors[0]
    assert "pickled Python objects" in errors[0] and "resume=false" in errors[0]
    assert not marker.exists()


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_malicious_teacher_checkpoint_is_refused(tiny_cfg, tmp_path, filename):
    marker = tmp_path / "pwned"
    teacher_dir = tmp_path / "downloaded_teacher"
    write_payload(teacher_dir / filename, marker)
    (teacher_dir / "hate_compress.json").write_text("{}")
    (teacher_dir / "config.json").write_text('{"model_type": "bert"}')
    start = time.perf_counter()
    errors = run_failing(tiny_cfg(f"teacher.checkpoint={teacher_dir}"), tmp_path / "run")
    assert time.perf_counter() - start < 30  # refused up front, before data or models
    assert f"teacher.checkpoint={teacher_dir}" in errors[0] or str(teacher_dir) in errors[0]
    if filename == "pytorch_model.bin":
        assert "refusing to load pytorch_model.bin" in errors[0]
    else:
        assert "not a valid safetensors" in errors[0] and "looks like a pickle" in errors[0]
    assert not marker.exists()
    assert not (tmp_path / "run" / "teacher").exists()


def test_every_torch_load_is_weights_only():
    """A grep in test form: a new `torch.load` without `weights_only=True` fails here."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load" and getattr(node.func.value, "id", "") == "torch"):
                flags = {k.arg: k.value for k in node.keywords}
                ok = isinstance(flags.get("weights_only"), ast.Constant) and \
                    flags["weights_only"].value is True
                calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", ok))
    assert calls, "expected at least the safe loader"
    assert all(ok for _, ok in calls), [where for where, ok in calls if not ok]


def test_trust_remote_code_is_off_unless_set(tmp_path):
    """Hub repositories can ship Python; running it must be an explicit choice per model."""
    settings = []
    for path in sorted(CONF.rglob("*.yaml")):
        for line in path.read_text().splitlines():
            if "trust_remote_code" in line:
                settings.append((path.relative_to(ROOT), line.split("#")[0].strip()))
    assert settings  # the key exists (in the _base entries)
    assert all(value.endswith(": false") for _, value in settings), settings
    cfg = compose_cfg(tmp_path, ["teacher=gbert", "student=sahajbert"], tiny=False)
    assert cfg.teacher.backbone.trust_remote_code is False
    assert cfg.student.backbone.trust_remote_code is False


# -- determinism ------------------------------------------------------------------------------

DET_ARGS = ["pipeline=teacher_kd", "teacher.train.epochs=2", "student.train.epochs=2",
            "teacher.train.lr=1e-3", "student.train.lr=1e-3", "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=1"]


def test_same_seed_same_metrics(tmp_path):
    """Exact equality: on CPU with `deterministic=true` nothing in training is random beyond
    the seeded RNGs, so any difference is a reproducibility bug.

    The second run gets its own run dir and whole cache (tokenizer, teacher store, teacher
    outputs), so everything is rebuilt: the WordPiece vocabulary too must come out the same."""
    runs = {}
    for name in ("a", "b"):
        cfg = compose_cfg(tmp_path / name, DET_ARGS)
        runs[name] = run_pipeline(cfg, tmp_path / name / "run")
    a, b = runs["a"], runs["b"]
    assert a["teacher"]["artifact"] != b["teacher"]["artifact"]  # really trained twice
    for stage in ("teacher", "kd"):
        for split in ("dev", "test"):
            assert a[stage][split] == b[stage][split], (stage, split)
    assert safetensors_equal(tmp_path / "a/run/kd/model/model.safetensors",
                             tmp_path / "b/run/kd/model/model.safetensors")


def test_teacher_follows_teacher_seed_not_run_seed(tmp_path):
    """One stored teacher serves several student seeds (the store is keyed by `teacher.seed`),
    so a teacher retrained under another run seed must come out identical."""
    weights = []
    for name, seed in (("a", 1), ("b", 2)):
        cfg = compose_cfg(tmp_path / name, ["pipeline=teacher", f"seed={seed}", "teacher.seed=7",
                                            "teacher.train.epochs=2",
                                            "trainer.limit_train_batches=2",
                                            "trainer.limit_val_batches=1"])
        artifact = run_pipeline(cfg, tmp_path / name / "run")["teacher"]["artifact"]
        weights.append(Path(artifact) / "model.safetensors")
    assert weights[0] != weights[1]  # two stores: trained twice
    assert safetensors_equal(*weights)


# -- NaN guard --------------------------------------------------------------------------------


def _finite_checkpoint(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())
    return state


def test_nan_loss_stops_the_stage_and_keeps_the_last_good_checkpoint(tiny_cfg, tmp_path,
                                                                      monkeypatch):
    from hate_compress.training.module import ClassifierModule

    real_loss = ClassifierModule._loss

    def poisoned(self, batch, split):  # diverges from the second epoch on
        total, student, teacher, parts = real_loss(self, batch, split)
        if split == "train" and self.current_epoch >= 1:
            total = total * math.nan
        return total, student, teacher, parts

    monkeypatch.setattr(ClassifierModule, "_loss", poisoned)
    run_dir = tmp_path / "run"
    errors = run_failing(tiny_cfg("pipeline=teacher", "teacher.train.epochs=3"), run_dir)
    assert "error: teacher: loss became nan" in errors[0] and "(epoch 1)" in errors[0]
    assert "last good checkpoint is kept" in errors[0]
    state = _finite_checkpoint(run_dir / "teacher" / "checkpoints" / "last.ckpt")
    assert state["epoch"] == 0
    assert not list((tmp_path / "cache" / "teachers").glob("*/model.safetensors"))
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["run"]["status"] == "failed" and "loss became nan" in saved["run"]["error"]


def test_nan_weights_never_overwrite_the_last_good_checkpoint(tiny_cfg, tmp_path):
    """The last optimizer step of an epoch can leave inf/nan weights with a finite loss; the
    next loss check would come only after validation had already saved them."""
    from lightning.pytorch.callbacks import Callback

    class PoisonLastStep(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == trainer.num_training_batches - 1:
                with torch.no_grad():
                    next(pl_module.parameters()).fill_(math.inf)

    run_dir = tmp_path / "run"
    cfg = tiny_cfg("pipeline=teacher", "teacher.train.epochs=3")
    with contextlib.redirect_stderr(io.StringIO()):
        with pytest.raises(TrainingDiverged, match=r"teacher: weights became non-finite .* \(epoch 1\)"):
            run_pipeline(cfg, run_dir, callbacks={"teacher": [PoisonLastStep()]})
    state = _finite_checkpoint(run_dir / "teacher" / "checkpoints" / "last.ckpt")
    assert state["epoch"] == 0

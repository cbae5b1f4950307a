"""`torchrun --nproc_per_node=2` (gloo, CPU) through the real command line: teacher -> KD ->
prune -> quant, every file written once (by rank 0), results equal to one process with the
same global batch.

Global batch: `data.batch_size` is per process (Lightning's DDP semantics), so the global batch
is data.batch_size x trainer.devices x trainer.num_nodes (x accumulate_grad_batches); two ranks
of 16 match one process of 32. The ranks read interleaved positions of each epoch's shuffled
order (`ShardedEpochSampler`), so global batch k holds the same 32 examples in both runs, and
DDP's gradient average of two per-rank means is the mean over those 32. What still differs is
float summation order (and padding width per half batch), hence a tolerance. Dropout and class
weights are off here: per-rank dropout masks and class-weighted per-rank means are legitimately
different from one process's (not a bug, but not comparable either).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hate_compress.pipeline.runner import run_pipeline
from tests.conftest import ROOT, TINY, cli_env, compose_cfg

COMPARABLE = [
    "data=synthetic", "prune=magnitude", "prune.finetune_epochs=2", "quant=dynamic_int8",
    "teacher.head.dropout=0.0", "student.head.dropout=0.0",
    "+teacher.backbone.scratch.hidden_dropout_prob=0.0",
    "+teacher.backbone.scratch.attention_probs_dropout_prob=0.0",
    "+student.backbone.scratch.hidden_dropout_prob=0.0",
    "+student.backbone.scratch.attention_probs_dropout_prob=0.0",
    "teacher.train.class_weights=false", "student.train.class_weights=false",
    "logger=none",
]
PER_RANK_BATCH, RANKS = 16, 2

# Loaded by every Python process of the torchrun job (PYTHONPATH): records which rank writes
# which file through the writers the pipeline uses (Path.write_text: metrics.json, summary.md,
# report.html, config, pointers; safetensors: models, teacher store, teacher-output cache).
SPY = textwrap.dedent("""
    import json, os, pathlib
    if "RANK" in os.environ:  # the workers, not torchrun's own agent
        LOG = os.environ["HATE_COMPRESS_WRITE_SPY"]

        def note(path):
            with open(LOG, "a") as fh:
                fh.write(json.dumps({"rank": int(os.environ["RANK"]), "path": str(path)}) + "\\n")

        write_text = pathlib.Path.write_text

        def spied_write_text(self, *args, **kwargs):
            note(self)
            return write_text(self, *args, **kwargs)

        pathlib.Path.write_text = spied_write_text
        import safetensors.torch as st
        save_file = st.save_file

        def spied_save_file(tensors, filename, *args, **kwargs):
            note(filename)
            return save_file(tensors, filename, *args, **kwargs)

        st.save_file = spied_save_file
""")


def stage_f1(metrics: dict, stage: str, split: str) -> float:
    return metrics[stage][split]["macro_f1"]


def test_torchrun_two_processes_end_to_end_match_one_process(tmp_path):
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir()
    (spy_dir / "sitecustomize.py").write_text(SPY)
    writes = tmp_path / "writes.jsonl"
    env = {**cli_env(tmp_path), "PYTHONPATH": f"{spy_dir}:{ROOT}", "OMP_NUM_THREADS": "1",
           "HATE_COMPRESS_WRITE_SPY": str(writes)}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc_per_node={RANKS}", "-m", "hate_compress", "hardware=ddp_cpu",
         f"data.batch_size={PER_RANK_BATCH}", f"paths.output_root={tmp_path / 'outputs'}",
         "run_name=torchrun", *TINY, *COMPARABLE],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "rank 1 of 2 (TorchElasticEnvironment, gloo)" in log or "Starting with 2 processes" in log
    run = tmp_path / "outputs" / "runs" / "torchrun"
    ddp = json.loads((run / "metrics.json").read_text())
    assert ddp["run"]["status"] == "ok"
    assert log.count("metrics: ") == 1, "the summary is printed by rank 0 only"

    # -- written once, by rank 0 -------------------------------------------------------------
    records = [json.loads(line) for line in writes.read_text().splitlines()]
    # Hydra's own files and the writable-directory probe (a check, one name per process)
    ours = [r for r in records if "/.hydra/" not in r["path"] and "write_probe" not in r["path"]]
    assert ours, "the spy saw no writes"
    assert {r["rank"] for r in ours} == {0}, [r for r in ours if r["rank"] != 0]
    weights = [r["path"] for r in ours if r["path"].endswith(".safetensors")]
    assert len(weights) == len(set(weights)), "a weights file was written twice"
    store = list((tmp_path / "cache" / "teachers").iterdir())
    assert [p.name for p in store if not p.name.endswith(".lock")] == [Path(ddp["teacher"]["artifact"]).name]
    assert len(list((tmp_path / "cache" / "teacher_outputs").glob("*.safetensors"))) == 1
    for stage in ("kd", "prune", "quant"):
        assert (run / stage / "model" / "model.safetensors").exists(), stage

    # -- one process, the same global batch ----------------------------------------------------
    single = run_pipeline(
        compose_cfg(tmp_path / "single", [f"data.batch_size={PER_RANK_BATCH * RANKS}",
                                          *COMPARABLE]),
        tmp_path / "single" / "run")
    for stage in ("teacher", "kd", "prune", "quant"):
        for split in ("dev", "test"):
            assert stage_f1(ddp, stage, split) == pytest.approx(stage_f1(single, stage, split),
                                                                abs=0.02), (stage, split)
    for stage in ("kd", "prune"):  # the trained weights themselves
        a = load_file(str(run / stage / "model" / "model.safetensors"))
        b = load_file(str(tmp_path / "single" / "run" / stage / "model" / "model.safetensors"))
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(a[name], b[name], atol=1e-4, rtol=1e-3, msg=f"{stage} {name}")

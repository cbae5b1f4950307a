"""Hydra's submitit launcher: matrix cells and Optuna workers as jobs, run here with submitit's
LOCAL executor (`hydra/launcher=submitit_local`), the same code path `hydra/launcher=slurm`
(conf/hydra/launcher/slurm.yaml, built on the plugin's `submitit_slurm`) takes on a cluster
except for sbatch itself: the job is pickled, run in its own process, its result collected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import optuna
from hydra import compose, initialize_config_dir
from optuna.trial import TrialState

from tests.conftest import CONF, ROOT, TINY, cli_env
from tests.test_sweep import FAST, FINISHED, SEARCH, cache, param_set  # noqa: F401  (fixture)

SUBMITIT_LOCAL = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=15",
                  "hydra.launcher.cpus_per_task=1"]


def run_cli(args, env, tmp_path, timeout=600):
    out = subprocess.run([sys.executable, "-m", "hate_compress", "-m", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return log


def job_logs(sweep, name: str) -> str:
    """submitit's per-job stdout/stderr (the proof each cell ran in its own job)."""
    return "\n".join(p.read_text(errors="replace") for p in (sweep / ".submitit").rglob(f"*{name}"))


def test_matrix_cells_run_as_submitit_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli([*SUBMITIT_LOCAL, "pipeline=teacher", "seed=1,2", "data=synthetic", "logger=none",
             f"paths.output_root={tmp_path / 'outputs'}", f"hydra.sweep.dir={sweep}", *TINY],
            cli_env(tmp_path), tmp_path)
    seeds = set()
    for cell in ("0", "1"):
        metrics = json.loads((sweep / cell / "metrics.json").read_text())
        assert metrics["run"]["status"] == "ok"
        seeds.add(metrics["run"]["seed"])
    assert seeds == {1, 2}
    assert len(list((sweep / ".submitit").rglob("*_result.pkl"))) == 2  # one job per cell
    assert "teacher: test macro F1" in job_logs(sweep, "_log.err") + job_logs(sweep, "_log.out")
    assert (sweep / "report.md").exists()  # the launching process wrote the sweep report


def test_optuna_workers_run_as_submitit_jobs_on_a_shared_storage(tmp_path, cache):  # noqa: F811
    """`hparams_search.worker=0,1`: two jobs, two workers, one study; every trial exactly once.
    On PostgreSQL when HATE_COMPRESS_TEST_PG_URL is set (.ci/run), else on a journal file."""
    pg = os.environ.get("HATE_COMPRESS_TEST_PG_URL")
    storage = pg or f"journal:{tmp_path / 'study.journal'}"
    name = f"submitit_{uuid.uuid4().hex[:8]}"
    sweep = tmp_path / "sweep"
    args = [*SEARCH, *FAST, "hparams_search.worker=0,1", f"hparams_search.storage={storage}",
            f"hparams_search.study_name={name}", "hparams_search.n_trials=4",
            "student.train.epochs=3", "data=synthetic", f"paths.output_root={tmp_path / 'outputs'}",
            f"hydra.sweep.dir={sweep}", *TINY]
    env = {**cli_env(cache.parent), "HATE_COMPRESS_CACHE_DIR": str(cache)}
    run_cli([*SUBMITIT_LOCAL, *args], env, tmp_path)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[a for a in args if not a.startswith("hydra.")
                                           and not a.startswith("hparams_search.worker")])
    from hate_compress import sweep as sweep_module

    search = sweep_module.parse_search(cfg)
    study = optuna.load_study(study_name=name, storage=sweep_module.make_storage(cfg, search))
    trials = study.trials
    done = [t for t in trials if t.state in FINISHED]
    assert len(done) == 4, [(t.number, t.state.name) for t in trials]  # none lost
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({param_set(t) for t in done}) == 4  # none duplicated
    assert len({t.user_attrs["run_dir"] for t in done}) == 4
    assert all(t.user_attrs.get("surplus") for t in trials if t.state == TrialState.FAIL)
    assert len({t.user_attrs["worker"] for t in done}) == 2, "one job ran every trial"
    assert len(list((sweep / ".submitit").rglob("*_result.pkl"))) == 2
    assert not (sweep / "report.md").exists()  # the study writes its own outputs
    if pg:
        optuna.delete_study(study_name=name, storage=study._storage)

"""The in-process Optuna sweep: outputs, resume after SIGKILL, several workers, pruning, config.

Trials run the real pipeline (teacher -> KD) with the tiny models on the synthetic sample, shrunk
further (1x32 student, 2 batches, short sequences) so a trial takes a second or two.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hate_compress import sweep
from hate_compress.errors import ConfigError, HateCompressError
from hate_compress.pipeline.runner import run_pipeline
from tests.conftest import ROOT, TINY, cli_env, compose_cfg

FAST = [
    "pipeline=teacher_kd",
    "student.backbone.scratch.num_hidden_layers=1",
    "student.backbone.scratch.hidden_size=32",
    "student.backbone.scratch.intermediate_size=64",
    "student.head.hidden=16",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data.max_length=16",
    "data.batch_size=16",
    "data.eval_batch_size=256",
    "logger=none",
]
SEARCH = ["hparams_search=kd_optuna", "hparams_search.poll_interval=0.5"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One teacher (and its output cache) for the module, trained before any worker starts, as
    the store would hand it to every later run anyway: workers would only queue on its lock."""
    path = tmp_path_factory.mktemp("sweep_cache")
    work = tmp_path_factory.mktemp("pretrain")
    run_pipeline(compose_cfg(work, [*FAST, f"paths.cache_dir={path}"]), work / "run")
    return path


def search_cfg(tmp_path, *overrides, cache=None):
    cached = [f"paths.cache_dir={cache}"] if cache else []
    return compose_cfg(tmp_path, [*SEARCH, *FAST, *cached, *overrides])


def cli(tmp_path, *overrides) -> list[str]:
    """The command a user types; outputs land where `compose_cfg` puts them."""
    return [sys.executable, "-m", "hate_compress", *SEARCH, "data=synthetic",
            f"paths.output_root={tmp_path / 'outputs'}", *TINY, *FAST, *overrides]


def env(cache) -> dict[str, str]:
    return {**cli_env(cache.parent), "HATE_COMPRESS_CACHE_DIR": str(cache)}


def open_study(cfg) -> optuna.Study:
    search = sweep.parse_search(cfg)
    return optuna.load_study(study_name=search.study_name, storage=sweep.make_storage(cfg, search))


def finished(study) -> list:
    return study.get_trials(deepcopy=False, states=FINISHED)


def start_worker(cmd, tmp_path, cache, name: str) -> subprocess.Popen:
    out = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(cmd, cwd=ROOT, env=env(cache), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def tail(tmp_path, name: str, lines: int = 40) -> str:
    text = (tmp_path / f"{name}.log").read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def param_set(trial) -> tuple:
    return tuple(sorted(trial.params.items()))


# --------------------------------------------------------------------------------------------


def test_study_writes_best_params_csv_and_plots(tmp_path, cache, capsys):
    cfg = search_cfg(tmp_path, "hparams_search.n_trials=3", cache=cache)
    study = sweep.run_study(cfg)
    trials = finished(study)
    assert len(trials) == 3 and len(study.trials) == 3
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete, "the median pruner has 3 startup trials: none can be pruned"
    assert study.best_value == max(t.value for t in complete)
    # the tiny models may collapse to one class: such trials never count as the best
    sound = [t for t in complete if not t.user_attrs["degenerate"]]

    out = tmp_path / "outputs" / "optuna" / "kd_synthetic_tiny_teacher_tiny_student"
    best = yaml.safe_load((out / "best_params.yaml").read_text())
    if sound:
        top = max(sound, key=lambda t: t.value)
        assert best["best_value"] == pytest.approx(top.value)
        assert best["best_params"] == top.params
        assert set(best["best_params"]) == {"kd.alpha", "kd.temperature"}
    else:
        assert best["best_trial"] is None
    assert best["trials"]["finished"] == 3
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2]
    assert {"kd.alpha", "kd.temperature", "state", "value", "run_dir"} <= set(rows[0])
    for name in ("optimization_history.png", "contour.png"):
        assert (out / name).stat().st_size > 1000, name
    varied = len({t.value for t in complete}) >= 2
    assert (out / "param_importances.png").exists() == varied

    for t in trials:  # each trial ran the real pipeline in its own directory
        run_dir = out / f"trial_{t.number}"
        assert t.user_attrs["run_dir"] == str(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
        assert resolved["kd"]["alpha"] == pytest.approx(t.params["kd.alpha"])
        assert resolved["kd"]["temperature"] == pytest.approx(t.params["kd.temperature"])
        if t.state == TrialState.COMPLETE:
            dev_f1 = metrics["kd"]["dev"]["macro_f1"]
            assert t.user_attrs["degenerate"] == metrics["kd"]["degenerate"]
            assert t.value == pytest.approx(0.0 if metrics["kd"]["degenerate"] else dev_f1)
            assert t.user_attrs["metrics"]["kd.dev.macro_f1"] == pytest.approx(dev_f1)
    printed = capsys.readouterr().out
    assert "3/3 finished" in printed
    assert ("best dev macro F1" if sound else "no complete, non-degenerate trial") in printed

    again = sweep.run_study(cfg)  # already reached: nothing new is started
    assert len(again.trials) == 3


def test_killed_study_resumes_without_repeating_trials(tmp_path, cache):
    cmd = cli(tmp_path, "hparams_search.n_trials=4", "student.train.epochs=2")
    cfg = search_cfg(tmp_path, "hparams_search.n_trials=4")
    search = sweep.parse_search(cfg)
    storage = sweep.make_storage(cfg, search)
    proc = start_worker(cmd, tmp_path, cache, "first")
    deadline = time.monotonic() + 150
    running = study = None
    while running is None:
        assert proc.poll() is None, "the study ended before it could be killed:\n" + tail(tmp_path, "first")
        assert time.monotonic() < deadline, "no third trial started:\n" + tail(tmp_path, "first")
        time.sleep(0.2)
        if study is None:
            if search.study_name not in {s.study_name for s in storage.get_all_studies()}:
                continue
            study = optuna.load_study(study_name=search.study_name, storage=storage)
        trials = study.get_trials(deepcopy=True)
        # every parameter sampled: a kill between two suggest calls would leave a partial set,
        # which the retry completes with fresh values (the test compares whole sets)
        live = [t for t in trials if t.state == TrialState.RUNNING
                and len(t.params) == len(search.params)]
        if sum(t.state in FINISHED for t in trials) >= 2 and live:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            running = live[0]
    before = {t.number: t for t in study.get_trials(deepcopy=True) if t.state in FINISHED}
    assert len(before) >= 2
    assert study.get_trials(deepcopy=False)[running.number].state == TrialState.RUNNING

    rerun = subprocess.run(cmd, cwd=ROOT, env=env(cache), capture_output=True, text=True,
                           timeout=240)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "4/4 finished" in rerun.stdout

    trials = open_study(search_cfg(tmp_path, "hparams_search.n_trials=4")).trials
    done = [t for t in trials if t.state in FINISHED]
    assert len(done) == 4
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for number, old in before.items():  # kept, not re-run
        assert trials[number].state == old.state
        assert trials[number].params == old.params
        assert trials[number].value == old.value
        assert trials[number].datetime_complete == old.datetime_complete
    assert len({param_set(t) for t in done}) == 4
    killed = trials[running.number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["error"].startswith("stale: its worker (pid")
    retried = [t for t in done if t.system_attrs.get("failed_trial") == running.number]
    assert len(retried) == 1 and retried[0].params == running.params
    assert len({t.user_attrs["run_dir"] for t in done}) == 4


def run_two_workers(tmp_path, cache, storage: str, *overrides) -> optuna.Study:
    # each trial outlasts the skew between the workers' start-up, so both take trials
    args = (f"hparams_search.storage={storage}", "hparams_search.n_trials=4",
            "student.train.epochs=3", *overrides)
    cmd = cli(tmp_path, *args)
    procs = [start_worker(cmd, tmp_path, cache, f"worker{i}") for i in (0, 1)]
    for i, proc in enumerate(procs):
        try:
            code = proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail(f"worker {i} did not finish:\n{tail(tmp_path, f'worker{i}')}")
        assert code == 0, tail(tmp_path, f"worker{i}")
    study = open_study(search_cfg(tmp_path, *args))
    trials = study.trials
    done = [t for t in trials if t.state in FINISHED]
    assert len(done) == 4, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # every trial ran exactly once: one number, one param set and one directory each
    assert len({t.number for t in done}) == 4
    assert len({param_set(t) for t in done}) == 4
    assert len({t.user_attrs["run_dir"] for t in done}) == 4
    out = sweep.study_dir(search_cfg(tmp_path, *args), sweep.parse_search(search_cfg(tmp_path, *args)))
    for t in done:
        assert (out / f"trial_{t.number}" / "metrics.json").exists(), t.number
    surplus = [t for t in trials if t.state == TrialState.FAIL]
    # only lost races, never a run
    assert all(t.user_attrs.get("surplus") for t in surplus), [
        (t.number, t.user_attrs.get("error")) for t in surplus]
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, f"one worker ran every trial: {workers}"
    for i in (0, 1):
        assert "4/4 finished" in tail(tmp_path, f"worker{i}")
    return study


def test_two_workers_share_a_journal_study(tmp_path, cache):
    run_two_workers(tmp_path, cache, f"journal:{tmp_path / 'study.journal'}")


def test_two_workers_share_a_postgresql_study(tmp_path, request):
    url = os.environ.get("HATE_COMPRESS_TEST_PG_URL")
    if not url:
        pytest.skip("HATE_COMPRESS_TEST_PG_URL not set (CI sets it; see .ci/run)")
    name = f"test_{uuid.uuid4().hex[:10]}"
    study = run_two_workers(tmp_path, request.getfixturevalue("cache"), url, f"hparams_search.study_name={name}")
    optuna.delete_study(study_name=name, storage=study._storage)


def test_trial_is_pruned_from_a_per_epoch_report(tmp_path, cache):
    cfg = search_cfg(tmp_path, "hparams_search.n_trials=1", "student.train.epochs=2",
                     "hparams_search.pruner.type=threshold", "hparams_search.pruner.lower=1.01",
                     "hparams_search.pruner.n_warmup_steps=0", cache=cache)
    study = sweep.run_study(cfg)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # epoch 0 reported, epoch 1 never ran
    assert 0.0 <= trial.intermediate_values[0] <= 1.0
    run_dir = tmp_path / "outputs" / "optuna" / study.study_name / "trial_0"
    assert "kd" not in json.loads((run_dir / "metrics.json").read_text())
    rows = list(csv.DictReader((run_dir.parent / "trials.csv").open()))
    assert rows[0]["state"] == "PRUNED" and rows[0]["pruned_at_epoch"] == "0"


def test_failing_runs_are_fail_trials_and_a_failing_worker_stops(tmp_path, cache):
    """A pipeline error is a FAIL trial with its message, not a crash; when every trial fails
    (here the teacher gate), the worker stops instead of looping forever."""
    cfg = search_cfg(tmp_path, "hparams_search.n_trials=3", "teacher.min_f1=0.99",
                     "hparams_search.max_consecutive_failures=2", cache=cache)
    with pytest.raises(HateCompressError, match=r"2 trials in a row failed .* teacher gate"):
        sweep.run_study(cfg)
    study = open_study(cfg)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]
    for t in study.trials:
        assert t.user_attrs["error"].startswith("teacher gate: dev macro F1")
        assert t.params  # sampled, so the failure is tied to its params
    rows = list(csv.DictReader((sweep.study_dir(cfg, sweep.parse_search(cfg)) / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["FAIL", "FAIL"] and rows[0]["error"].startswith("teacher gate")


@pytest.mark.parametrize(("overrides", "message"), [
    (["hparams_search.params.kd.alpha.low=0.9", "hparams_search.params.kd.alpha.high=0.1"],
     r"hparams_search.params.kd.alpha: low=0.9 > high=0.1"),
    (["hparams_search.params.kd.alpha.type=gaussian"],
     r"hparams_search.params.kd.alpha.type='gaussian' is not one of"),
    (["hparams_search.params.kd.alpha.high=2.0"],
     r"hparams_search.params.kd.alpha: kd.alpha=2.0 is outside \[0, 1\]"),
    (["hparams_search.params.kd.temperature.low=0"],
     r"hparams_search.params.kd.temperature: log=true needs low > 0"),
    (["+hparams_search.params.kd.tmperature={type:float,low:1,high:2}"],
     r"hparams_search.params.kd.tmperature: kd.tmperature is not a key of the config"),
    (["+hparams_search.params.kd.alpha.stepp=0.1"],
     r"hparams_search.params.kd.alpha: unknown key\(s\) \['stepp'\]"),
    (["+hparams_search.n_trails=3"], r"hparams_search: unknown key\(s\) \['n_trails'\]"),
    (["hparams_search.n_trials=0"], r"hparams_search.n_trials=0 must be >= 1"),
    (["hparams_search.pruner.type=hyperband"], r"hparams_search.pruner.type='hyperband'"),
    (["hparams_search.pruner.type=threshold"], r"pruner.type=threshold needs pruner.lower"),
    (["hparams_search.storage=nowhere.db"], r"hparams_search.storage=nowhere.db: expected null"),
    (["pipeline=teacher"], r"hparams_search: stages=\['teacher'\] has no kd stage"),
])
def test_bad_search_config_names_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        sweep.run_study(search_cfg(tmp_path, *overrides))
    assert not (tmp_path / "outputs" / "optuna").exists() or not any(
        (tmp_path / "outputs" / "optuna").rglob("trial_*"))


def test_searched_keys_are_checked_at_their_ends_not_their_base_value(tmp_path):
    sweep.parse_search(search_cfg(tmp_path, "kd.alpha=5"))  # never runs: every trial sets it
    with pytest.raises(ConfigError, match=r"^student.train.lr=-1.0 is out of range"):
        sweep.parse_search(search_cfg(tmp_path, "student.train.lr=-1"))  # not searched: as is


def test_cli_error_is_one_line_with_status_2(tmp_path, capsys):
    cfg = search_cfg(tmp_path, "hparams_search.params.kd.alpha.low=0.9",
                     "hparams_search.params.kd.alpha.high=0.1")
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: hparams_search.params.kd.alpha: low=0.9 > high=0.1"]


def test_resuming_with_another_fixed_config_is_refused(tmp_path):
    cfg = search_cfg(tmp_path)
    search = sweep.parse_search(cfg)
    study = optuna.create_study(study_name="s", storage=optuna.storages.InMemoryStorage())
    sweep.check_study_config(study, cfg, search)
    sweep.check_study_config(study, search_cfg(tmp_path, "hparams_search.n_trials=50",
                                               "kd.alpha=0.9"), search)  # neutral / searched
    with pytest.raises(ConfigError, match=r"started with another config \(student.train.lr"):
        sweep.check_study_config(study, search_cfg(tmp_path, "student.train.lr=0.1"), search)


# --------------------------------------------------------------------------------------------
# the bookkeeping that makes the total exact and survives dead workers, without training


def test_the_last_slot_goes_to_the_lower_trial_number():
    study = optuna.create_study()
    first = study.ask()
    study.tell(first, 0.5)
    second, third, fourth = study.ask(), study.ask(), study.ask()
    trials = study.get_trials(deepcopy=False)
    # n_trials=3: one finished + trial 1 running -> trial 2 gets the last slot, trial 3 does not
    assert sweep.has_slot(trials, second.number, 3)
    assert sweep.has_slot(trials, third.number, 3)
    assert not sweep.has_slot(trials, fourth.number, 3)
    study.tell(second, state=TrialState.FAIL)  # a failed trial frees its slot
    assert sweep.has_slot(study.get_trials(deepcopy=False), fourth.number, 3)


def test_a_requeued_trial_keeps_its_slot_until_popped():
    study = optuna.create_study()
    study.tell(study.ask(), 0.5)  # 0 COMPLETE
    study.tell(study.ask(), state=TrialState.FAIL)  # 1 FAIL
    study.add_trial(optuna.create_trial(state=TrialState.WAITING))  # 2 re-queued params
    # 3 created by a worker racing the re-queue (a fresh trial instead of popping 2)
    racer = study._storage.get_trial(study._storage.create_new_trial(study._study_id))
    trials = study.get_trials(deepcopy=False)
    assert racer.number == 3 and trials[2].state == TrialState.WAITING
    assert not sweep.has_slot(trials, racer.number, 2)  # the last slot is 2's
    assert sweep.has_slot(trials, racer.number, 3)
    assert sweep.has_slot(trials, 2, 2)


def test_stale_running_trials_are_failed_and_requeued_once(tmp_path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    cfg = search_cfg(tmp_path, "hparams_search.grace_period=30", "hparams_search.heartbeat_interval=5")
    search = sweep.parse_search(cfg)
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    here = sweep.machine_id()
    owners = {
        "dead_here": {"machine": here, "pid": int(dead), "start": "1", "host": "h"},
        "alive_here": {**sweep.owner_record(0), "trial": None},
        "elsewhere_fresh": {"machine": "other", "pid": 1, "start": "1", "host": "other"},
        "elsewhere_silent": {"machine": "other", "pid": 1, "start": "1", "host": "other"},
    }
    numbers = {}
    for label, owner in owners.items():
        trial = study.ask()
        trial.suggest_float("kd.alpha", 0, 1)
        storage.set_trial_system_attr(trial._trial_id, sweep.OWNER_ATTR,
                                      {**owner, "trial": trial.number})
        beat = time.time() - (100 if label == "elsewhere_silent" else 0)
        storage.set_trial_system_attr(trial._trial_id, sweep.HEARTBEAT_ATTR,
                                      {"trial": trial.number, "time": beat})
        numbers[label] = trial.number

    other_worker = optuna.load_study(study_name="s", storage=JournalStorage(
        JournalFileBackend(str(tmp_path / "journal.log"))))
    assert sorted(sweep.reap_stale(study, search)) == [numbers["dead_here"],
                                                        numbers["elsewhere_silent"]]
    assert sweep.reap_stale(other_worker, search) == []  # already failed: no second retry
    trials = study.trials
    for label, number in numbers.items():
        stale = label in ("dead_here", "elsewhere_silent")
        assert trials[number].state == (TrialState.FAIL if stale else TrialState.RUNNING), label
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(
        [numbers["dead_here"], numbers["elsewhere_silent"]])
    assert trials[numbers["dead_here"]].user_attrs["error"].startswith("stale: its worker")
    # a retry carries its predecessor's attributes; they must not condemn it
    retry = study.ask()
    assert retry.number in {t.number for t in waiting}
    assert sweep.stale_reason(study.trials[retry.number], search, native_heartbeat=False) is None


def test_workers_with_one_seed_sample_different_params_per_trial():
    """Two workers = two samplers with the same seed on one storage: trial 0 and trial 1 must
    not get the same startup params (a plain seeded TPE gives both workers one stream)."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="s", storage=storage)

    def worker_samples() -> list[float]:
        study = optuna.load_study(study_name="s", storage=storage,
                                  sampler=sweep.TrialSeededTPESampler(seed=7))
        trial = study.ask()
        return trial.number, trial.suggest_float("x", 0, 1)

    (n0, x0), (n1, x1) = worker_samples(), worker_samples()
    assert (n0, n1) == (0, 1)
    assert not math.isclose(x0, x1)
    # and reproducible: the same trial number gets the same draw in a fresh study
    again = optuna.create_study(sampler=sweep.TrialSeededTPESampler(seed=7)).ask()
    assert math.isclose(again.suggest_float("x", 0, 1), x0)


def test_a_degenerate_trial_never_wins_the_study(tmp_path, monkeypatch):
    """Trial 0's model predicts one class: its dev macro F1 (0.9 here) must neither be its
    objective nor make it the best trial; the sound trial 1 (0.6) wins."""
    import hate_compress.pipeline.runner

    outcomes = iter([(0.9, True), (0.6, False)])

    def fake_pipeline(cfg, run_dir, callbacks=None):
        f1, degenerate = next(outcomes)
        stage = {"dev": {"macro_f1": f1, "top_prediction_share": 1.0 if degenerate else 0.6},
                 "degenerate": degenerate}
        return {"run": {"status": "ok"}, "teacher": stage, "kd": stage}

    monkeypatch.setattr(hate_compress.pipeline.runner, "run_pipeline", fake_pipeline)
    cfg = search_cfg(tmp_path, "hparams_search.n_trials=2")
    study = sweep.run_study(cfg)
    first, second = sorted(study.trials, key=lambda t: t.number)
    assert first.user_attrs["degenerate"] is True and first.value == 0.0
    assert first.user_attrs["metrics"]["kd.dev.macro_f1"] == 0.9
    assert second.user_attrs["degenerate"] is False and second.value == 0.6
    assert sweep.best_trial(study).number == second.number
    best = yaml.safe_load((sweep.study_dir(cfg, sweep.parse_search(cfg)) / "best_params.yaml")
                          .read_text())
    assert best["best_trial"] == second.number

"""Liveness of the workers running trials: who owns a RUNNING trial, heartbeats for storages
without Optuna's, and reaping trials whose worker is gone.

A RUNNING trial whose worker is gone is failed and its params re-queued (`reap_stale`): at once
when the worker was a process on this machine that no longer exists, else after `grace_period`
seconds without a heartbeat (Optuna's own for RDB storages, a trial attribute for journal files,
which have none).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hate_compress.sweep import optuna_shim
from hate_compress.sweep.space import Search

log = logging.getLogger("hate_compress.sweep")

OWNER_ATTR = "hate_compress:owner"
HEARTBEAT_ATTR = "hate_compress:heartbeat"


def machine_id() -> str | None:
    """Host, boot and PID namespace: two workers with the same value can check each other's
    PIDs (same host name alone is not enough: containers may share one)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{pid_ns}"


def process_start(pid: int) -> str | None:
    """Start time of a live process (None when it is gone or a zombie): with the PID it tells a
    dead worker from a new process that reused its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def owner_record(number: int) -> dict:
    return {"trial": number, "machine": machine_id(), "pid": os.getpid(),
            "start": process_start(os.getpid()), "host": socket.gethostname()}


def stale_reason(trial: FrozenTrial, search: Search, native_heartbeat: bool,
                 now: float | None = None) -> str | None:
    """Why a RUNNING trial's worker is known to be gone, or None while it may be alive.

    Attributes copied into a retried trial from the one it retries name another trial number
    and are ignored, so a retry is never judged by its dead predecessor."""
    owner = trial.system_attrs.get(OWNER_ATTR) or {}
    here = machine_id()
    if owner.get("trial") == trial.number and here is not None and owner.get("machine") == here:
        if process_start(int(owner["pid"])) != owner.get("start"):
            return f"its worker (pid {owner['pid']} on {owner.get('host')}) is gone"
        return None  # alive on this machine: never judged by heartbeat age
    if native_heartbeat:
        return None  # Optuna's heartbeat (fail_stale_trials) covers RDB storages
    beat = trial.system_attrs.get(HEARTBEAT_ATTR) or {}
    last = beat.get("time") if beat.get("trial") == trial.number else None
    if last is None and trial.datetime_start is not None:
        last = trial.datetime_start.timestamp()
    if last is None:
        return None
    age = (now or time.time()) - float(last)
    if age > search.grace_period:
        return f"no heartbeat for {age:.0f} s (grace_period={search.grace_period})"
    return None


def reap_stale(study: optuna.Study, search: Search) -> list[int]:
    """Fail the RUNNING trials whose worker is gone and re-queue their params; returns their
    numbers. Safe with several reapers: only the one whose FAIL lands re-queues."""
    native = optuna_shim.heartbeat_enabled(study)
    if native:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(search.max_retry)
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = stale_reason(trial, search, native)
        if reason is None:
            continue
        failed = optuna_shim.fail_trial(study, trial, f"stale: {reason}")
        if failed is None:
            continue  # another worker got there first
        log.warning("[sweep] trial %d was RUNNING but %s: marked FAIL, params re-queued",
                    trial.number, reason)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, failed)
        reaped.append(trial.number)
    return reaped


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial, interval: int):
    """A heartbeat attribute for storages without Optuna's (journal files)."""
    if optuna_shim.heartbeat_enabled(study):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                optuna_shim.set_system_attr(study, trial, HEARTBEAT_ATTR,
                                            {"trial": trial.number, "time": time.time()})
            except Exception:  # the trial finished meanwhile, or the file is busy: next beat
                pass
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

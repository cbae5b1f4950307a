"""Which process of a distributed run this is, and how the others wait for what rank 0 writes.

Training runs on every process (Lightning's DDP/FSDP strategies), but what the pipeline writes —
the teacher store, the teacher-output cache, saved models, metrics.json, reports — must be
written once: N processes renaming the same store directory or rewriting the same metrics.json
race each other and at best do the work N times. The rule everywhere: rank 0 writes, the others
wait at a barrier and then read what rank 0 wrote (`rank_zero_first`), or receive the values
rank 0 computed (`on_rank_zero`). If rank 0 fails, the others raise the same error instead of
waiting forever at the next collective.

How the processes come to exist decides what "rank" means here:

* an external launcher (`torchrun`, SLURM `srun`): every process runs the whole command from the
  start. Rank and world size come from the launcher's environment, detected as Lightning detects
  it (TorchElastic first, then SLURM), and `setup()` initialises the process group at the start
  of the run so barriers work before the first fit; Lightning then reuses that group.
* Lightning's spawn launcher (`hardware=ddp_cpu`, `hardware=ddp`): only `trainer.fit` runs in the
  spawned workers; the launching process does everything else alone: rank 0 of a world of 1.
* one process: rank 0 of 1, and every helper below is a plain call.

Lightning's subprocess launcher (`strategy: ddp` or FSDP without torchrun/srun) starts the other
processes at the first fit by rerunning the command line; they would reach the pipeline's
barriers while rank 0 is already training, so `launch_problem` refuses that setup up front.

A leaf module: torch and Lightning's cluster environments, nothing else of hate_compress.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")

# The gloo group the pipeline's barriers and broadcasts use: CPU-side whatever the training
# backend (NCCL wants every object on the right GPU), and with a long timeout, because the other
# ranks wait while rank 0 works alone: measuring (explanations, latency) or queueing on the
# teacher store's lock while another job trains that teacher — hours, not the 30 minutes after
# which the default group would abort the run.
_GROUP: Any = None
COORDINATION_TIMEOUT = timedelta(hours=24)
# > 0 while rank 0 runs a function on its own (`on_rank_zero`): the other ranks are waiting for
# its result, so helpers called inside it (saving a model inside storing a teacher) must not
# start collectives of their own
_ALONE = 0


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def launcher_environment():
    """The Lightning cluster environment of an external launcher that started several
    processes (torchrun, srun), else None (one process, or Lightning's own launchers)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    for env_type in (TorchElasticEnvironment, SLURMEnvironment):  # Lightning's order
        if env_type.detect():
            env = env_type()
            if env.world_size() > 1:
                return env
    return None


def world_size() -> int:
    if _initialised():
        return dist.get_world_size()
    env = launcher_environment()
    return env.world_size() if env is not None else 1


def rank() -> int:
    if _initialised():
        return dist.get_rank()
    env = launcher_environment()
    return env.global_rank() if env is not None else 0


def local_rank() -> int:
    env = launcher_environment()
    if env is not None:
        return env.local_rank()
    return int(os.environ.get("LOCAL_RANK", 0))


def is_rank_zero() -> bool:
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def backend_for(trainer: Mapping[str, Any]) -> str:
    """The process-group backend Lightning would pick: the strategy's `process_group_backend`
    when set, NCCL for GPU runs when CUDA is there, gloo otherwise."""
    strategy = trainer.get("strategy")
    if isinstance(strategy, Mapping) and strategy.get("process_group_backend"):
        return str(strategy["process_group_backend"])
    gpu = str(trainer.get("accelerator", "cpu")) in ("gpu", "cuda", "auto")
    return "nccl" if gpu and torch.cuda.is_available() else "gloo"


def setup(backend: str = "gloo") -> bool:
    """Initialise torch.distributed from an external launcher's environment when this process
    is one of several and nobody did yet (Lightning only does at the first fit, too late for
    the teacher store's barrier). Returns whether this run is distributed."""
    global _GROUP
    env = launcher_environment()
    if env is not None and not _initialised():
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank())
        dist.init_process_group(backend, rank=env.global_rank(), world_size=env.world_size())
        _GROUP = dist.new_group(backend="gloo", timeout=COORDINATION_TIMEOUT)
        log.info("distributed: rank %d of %d (%s, %s)", env.global_rank(), env.world_size(),
                 type(env).__name__, backend)
    if is_distributed() and not is_rank_zero():
        # the same progress lines N times say nothing more; warnings and errors still show
        logging.getLogger("hate_compress").setLevel(logging.WARNING)
    return is_distributed()


def _collective() -> bool:
    return _ALONE == 0 and _initialised() and dist.get_world_size() > 1


def barrier() -> None:
    if _collective():
        dist.barrier(group=_GROUP)


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (picklable objects)."""
    if not _collective():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_GROUP)
    return box[0]


def _shareable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling (so the other ranks raise the same type: the same exit
    status and one-line message), else a RuntimeError with its text."""
    import pickle

    try:
        return pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any unpicklable exception
        return RuntimeError(f"rank 0 failed: {type(exc).__name__}: {exc}")


def _run_on_zero(fn: Callable[[], T], share: bool) -> T:
    global _ALONE
    _ALONE += 1
    try:
        result = fn()
    except BaseException as exc:
        _ALONE -= 1
        broadcast(("error", _shareable(exc)))
        raise
    _ALONE -= 1
    broadcast(("ok", result if share else None))
    return result


def _wait_for_zero() -> Any:
    status, value = broadcast(None)
    if status == "error":
        raise value
    return value


def on_rank_zero(fn: Callable[[], T], share: bool = True) -> T | None:
    """Run `fn` on rank 0 only; the other ranks wait and get its result (`share=True`,
    picklable) or None. An exception on rank 0 is raised on every rank. Nested calls (inside
    another `on_rank_zero`) just call `fn`."""
    if not is_distributed() or _ALONE:
        return fn()
    if is_rank_zero():
        return _run_on_zero(fn, share)
    value = _wait_for_zero()
    return value if share else None


def rank_zero_first(fn: Callable[[], T]) -> T:
    """Rank 0 calls `fn` first (it creates what is missing: a stored teacher, a cache file);
    the others wait, then call `fn` themselves and find it there. `fn` must be load-or-create."""
    if not is_distributed() or _ALONE:
        return fn()
    if is_rank_zero():
        return _run_on_zero(fn, share=False)
    _wait_for_zero()
    return fn()


def training_device(trainer: Mapping[str, Any],
                    cuda_available: Callable[[], bool] | None = None) -> torch.device:
    """The device this process trains on: its GPU (`cuda:<local rank>`) when the trainer uses
    GPUs and CUDA is there, else the CPU. Work outside `fit` that should run where training
    runs (the teacher-output cache, scoring after a stage) goes there; CPU latency never does."""
    accelerator = str(trainer.get("accelerator", "cpu"))
    if accelerator in ("gpu", "cuda", "auto") and (cuda_available or torch.cuda.is_available)():
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


# --------------------------------------------------------------------------- launch checks

# Lightning strategies whose extra processes are started by rerunning the command at the first
# fit (`_SubprocessScriptLauncher`) unless an external launcher started them all already
_POPEN_STRATEGIES = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false",
                     "fsdp", "fsdp_cpu_offload", "deepspeed")


def _single_device(devices: Any) -> bool:
    if isinstance(devices, (list, tuple)):
        return len(devices) <= 1
    text = str(devices).strip()
    if text.endswith(","):  # "0," = the GPU with index 0
        return text.count(",") == 1
    return text == "1"


def _reruns_command(strategy: Any) -> bool:
    if isinstance(strategy, Mapping):
        target = str(strategy.get("_target_", ""))
        if target.endswith(("FSDPStrategy", "DeepSpeedStrategy", "fsdp_strategy")):
            return True
        return target.endswith("DDPStrategy") and strategy.get("start_method", "popen") == "popen"
    return str(strategy) in (*_POPEN_STRATEGIES, "auto")


def under_launcher(strategy: Any) -> Any:
    """`strategy` as it must be when torchrun/srun started the processes already: a spawning
    DDP strategy (hardware=ddp_cpu, hardware=ddp) would start `devices` more processes in every
    rank, so it becomes the plain one, which joins the launcher's processes instead."""
    if launcher_environment() is None:
        return strategy
    if isinstance(strategy, Mapping) and strategy.get("start_method", "popen") != "popen":
        return {**strategy, "start_method": "popen"}
    if str(strategy) in ("ddp_spawn", "ddp_fork", "ddp_notebook"):
        return "ddp"
    return strategy


def launch_problem(trainer: Mapping[str, Any]) -> str | None:
    """Why this trainer config cannot run the multi-stage pipeline as launched, or None."""
    several = int(trainer.get("num_nodes", 1) or 1) > 1 or not _single_device(trainer.get("devices", 1))
    if not several or launcher_environment() is not None:
        return None
    strategy = trainer.get("strategy", "auto")
    if not _reruns_command(strategy):
        return None
    name = strategy.get("_target_") if isinstance(strategy, Mapping) else strategy
    return (f"trainer.strategy={name} with trainer.devices={trainer.get('devices')}, "
            f"trainer.num_nodes={trainer.get('num_nodes', 1)}: Lightning would start the other "
            "processes at the first fit by rerunning the command, which a multi-stage pipeline "
            "cannot join mid-way; start them all yourself (torchrun --nproc_per_node=N -m "
            "hate_compress ..., or srun on SLURM) or use a spawning strategy (hardware=ddp, "
            "hardware=ddp_cpu); see README 'Scaling out'")

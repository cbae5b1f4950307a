"""hate_compress.distributed: rank detection, and rank 0 writing while the others wait.

The collective helpers run in two real gloo processes started with torchrun's environment
variables (what `torchrun --nproc_per_node=2` sets), so `setup()` takes the same path it takes
under torchrun; the end-to-end runs through the real command line are in tests/test_scaleout.py.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from hate_compress import distributed
from hate_compress.errors import ConfigError

TORCHRUN_VARS = ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                 "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")
SLURM_VARS = ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_NAME", "SLURM_NODELIST",
              "SLURM_JOB_ID")


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*TORCHRUN_VARS, *SLURM_VARS):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def torchrun_env(monkeypatch, rank: int, world: int) -> None:
    values = {"TORCHELASTIC_RUN_ID": "test", "RANK": rank, "WORLD_SIZE": world,
              "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": world, "GROUP_RANK": 0,
              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": 29999}
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))


def test_one_process_is_rank_zero_of_one(clean_env):
    assert (distributed.rank(), distributed.world_size()) == (0, 1)
    assert distributed.is_rank_zero() and not distributed.is_distributed()
    assert distributed.on_rank_zero(lambda: 41 + 1) == 42
    assert distributed.rank_zero_first(lambda: "x") == "x"
    distributed.barrier()  # a no-op, not a hang


def test_torchrun_environment_gives_rank_and_world(clean_env):
    torchrun_env(clean_env, rank=1, world=4)
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (1, 4, 1)
    assert not distributed.is_rank_zero()


def test_srun_environment_gives_rank_and_world(clean_env):
    for name, value in {"SLURM_NTASKS": 8, "SLURM_NTASKS_PER_NODE": 4, "SLURM_PROCID": 5, "SLURM_LOCALID": 1,
                        "SLURM_JOB_NAME": "hate", "SLURM_NODELIST": "node[01-02]",
                        "SLURM_JOB_ID": 1234}.items():
        clean_env.setenv(name, str(value))
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (5, 8, 1)


def test_one_slurm_task_is_not_distributed(clean_env):
    """A submitit/sbatch job with one task (one matrix cell) is a plain single process."""
    clean_env.setenv("SLURM_NTASKS", "1")
    clean_env.setenv("SLURM_PROCID", "0")
    assert not distributed.is_distributed()


@pytest.mark.parametrize("trainer, refused", [
    ({"strategy": "auto", "devices": 1}, False),
    ({"strategy": "ddp", "devices": 1}, False),
    ({"strategy": "ddp", "devices": 2}, True),
    ({"strategy": "auto", "devices": -1}, True),
    ({"strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy", "start_method": "spawn"},
      "devices": 2}, False),
    ({"strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy"}, "devices": 4}, True),
    ({"strategy": {"_target_": "hate_compress.distributed.fsdp_strategy"}, "devices": -1}, True),
    ({"strategy": "ddp", "devices": 1, "num_nodes": 2}, True),
])
def test_strategies_that_rerun_the_command_are_refused_without_a_launcher(clean_env, trainer,
                                                                           refused):
    problem = distributed.launch_problem(trainer)
    assert (problem is not None) == refused, problem
    if refused:
        assert "torchrun --nproc_per_node" in problem and "srun" in problem
        torchrun_env(clean_env, rank=0, world=2)  # started by torchrun: fine
        assert distributed.launch_problem(trainer) is None


# ------------------------------------------------------------------ two real gloo processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"TORCHELASTIC_RUN_ID": "t", "RANK": str(rank), "WORLD_SIZE": str(world),
                       "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world), "GROUP_RANK": "0",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    out_dir = Path(out)
    events = out_dir / f"events{rank}.jsonl"

    def note(what: str) -> None:
        with open(events, "a") as fh:
            fh.write(json.dumps({"what": what, "t": time.monotonic()}) + "\n")

    assert distributed.setup("gloo") is True
    assert distributed._GROUP is not None  # the coordination group (long timeout)
    target = out_dir / "made_by_rank0.txt"

    def load_or_create() -> str:
        if not target.exists():
            time.sleep(0.5)  # a slow writer: the others must not read before it finished
            target.write_text(f"rank {rank}")
            note("created")
        else:
            note("loaded")
        return target.read_text()

    assert distributed.rank_zero_first(load_or_create) == "rank 0"
    values = distributed.on_rank_zero(lambda: {"f1": 0.5, "rank": rank})
    assert values == {"f1": 0.5, "rank": 0}
    # nested (saving a model while storing a teacher): the inner call starts no collective of
    # its own, which would pair with the wrong broadcast on the other rank
    assert distributed.on_rank_zero(lambda: distributed.on_rank_zero(lambda: 7, share=False) + 1) == 8
    assert distributed.broadcast(f"from {rank}") == "from 0"
    try:
        distributed.on_rank_zero(lambda: (_ for _ in ()).throw(ConfigError("gate: too weak")))
    except ConfigError as exc:
        note(f"raised {type(exc).__name__}: {exc}")
    distributed.barrier()
    note("done")


def test_rank_zero_writes_first_and_errors_reach_every_rank(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
                       start_method="spawn", join=True)
    events = {r: [json.loads(line) for line in (tmp_path / f"events{r}.jsonl").read_text().splitlines()]
              for r in (0, 1)}
    assert [e["what"] for e in events[0]] == ["created", "raised ConfigError: gate: too weak", "done"]
    assert [e["what"] for e in events[1]] == ["loaded", "raised ConfigError: gate: too weak", "done"]
    # rank 1 looked only after rank 0 had written (same machine: one monotonic clock)
    assert events[1][0]["t"] >= events[0][0]["t"]


def test_a_spawning_strategy_joins_the_launchers_processes_instead(clean_env):
    spawn = {"_target_": "lightning.pytorch.strategies.DDPStrategy", "start_method": "spawn",
             "process_group_backend": "gloo"}
    assert distributed.under_launcher(spawn) == spawn  # no launcher: Lightning spawns
    torchrun_env(clean_env, rank=0, world=2)
    assert distributed.under_launcher(spawn) == {**spawn, "start_method": "popen"}
    assert distributed.under_launcher("ddp_spawn") == "ddp"
    assert distributed.under_launcher("auto") == "auto"


def test_sharded_epochs_follow_the_epoch_and_form_the_single_process_batches():
    from hate_compress.data.batching import EpochSeededSampler, ShardedEpochSampler

    n, batch, world = 50, 4, 2
    for epoch in (0, 1, 2):
        single = EpochSeededSampler(n, seed=3)
        single.set_epoch(epoch)
        order = list(single)
        shards = []
        for rank in range(world):
            sampler = ShardedEpochSampler(n, 3, rank, world)
            sampler.set_epoch(epoch)  # what Lightning calls before every epoch
            shards.append(list(sampler))
        assert len(shards[0]) == len(shards[1]) == 25
        # global batch k of 2 ranks x 4 = the one process's batch k of 8
        for k in range(n // (batch * world)):
            ranks = {i for shard in shards for i in shard[k * batch:(k + 1) * batch]}
            assert ranks == set(order[k * batch * world:(k + 1) * batch * world])
    first, second = ShardedEpochSampler(n, 3, 0, world), ShardedEpochSampler(n, 3, 0, world)
    second.set_epoch(1)
    assert list(first) != list(second)  # a new order every epoch (it used to repeat epoch 0)

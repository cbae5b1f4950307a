"""How rows become batches: the epoch-seeded shuffles (one process and one rank's share) and
the collate that pads each tokenization of the same rows to its own longest sequence.

Kept apart from the data module because resuming and DDP correctness live here: the order
of a training epoch is a function of (seed, epoch) only, whichever process asks for it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


class EpochSeededSampler(Sampler[int]):
    """A shuffle whose order is a function of (seed, epoch) only.

    A `shuffle=True` DataLoader draws each epoch's order from a generator that advances once per
    epoch *of this process*, so a run resumed at epoch 3 would replay epoch 0's order and end
    with different weights than the run that was never interrupted. Lightning calls `set_epoch`
    on the sampler before every training epoch (with the epoch restored from the checkpoint), so
    here the order depends only on where training is, not on how it got there.
    """

    def __init__(self, n: int, seed: int):
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class ShardedEpochSampler(DistributedSampler):
    """One rank's share of `EpochSeededSampler`'s order: positions rank, rank+W, ... of it
    (padded from its start to a multiple of W, as DistributedSampler pads).

    Lightning wraps any other sampler in a DistributedSamplerWrapper that never forwards
    `set_epoch`, so under DDP every epoch replayed epoch 0's order. Interleaving also makes a
    global batch of W ranks x B the same examples as one process's batch of W*B (the
    single-process run with the same global batch sees the same data in the same steps)."""

    def __init__(self, n: int, seed: int, rank: int, num_replicas: int):  # noqa: D107
        # not DistributedSampler.__init__: it wants a dataset and an initialised process group
        self.order = EpochSeededSampler(n, seed)
        self.rank, self.num_replicas = int(rank), int(num_replicas)
        self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.shuffle, self.drop_last, self.seed, self.epoch = True, False, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        order = list(self.order)
        order += order[: self.total_size - len(order)]
        return iter(order[self.rank : self.total_size : self.num_replicas])


class IndexDataset(Dataset):
    """Yields positions only; the collate function gathers everything else from arrays."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class Collate:
    """Builds a batch from positions, padding each tokenization to its longest sequence."""

    def __init__(self, labels: np.ndarray, groups: list[tuple[list[str], list[np.ndarray], int, bool]]):
        self.labels = labels
        self.groups = groups

    def __call__(self, positions: list[int]) -> dict[str, Any]:
        idx = torch.tensor(positions, dtype=torch.long)
        labels = torch.from_numpy(self.labels[np.asarray(positions)])
        inputs: dict[str, dict[str, torch.Tensor]] = {}
        for keys, encoded, pad_id, left in self.groups:
            tensors = pad_batch([encoded[i] for i in positions], pad_id, left)
            for key in keys:
                inputs[key] = tensors
        return {"idx": idx, "labels": labels, "inputs": inputs}


def pad_batch(seqs: list[np.ndarray], pad_id: int, left: bool) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        span = slice(width - len(s), width) if left else slice(0, len(s))
        ids[row, span] = torch.from_numpy(s)
        mask[row, span] = 1
    return {"input_ids": ids, "attention_mask": mask}

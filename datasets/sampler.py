from __future__ import annotations

import torch
from torch.utils.data import Sampler

from utils.config import micro_batches


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields `(index, sample_seed)` pairs, the micro-batches of one training process, in order.

    Both the order and every sample's augmentation seed derive from (seed, epoch), so a run gives the same
    batches whatever the number of workers, and `--resume` continues exactly, also from within an epoch. Call
    `set_epoch` each epoch.

    The epoch's order is cut into global batches of `batch_size` samples, each into micro-batches of
    `micro_batch_size`; micro-batch j of a global batch goes to process j % world_size as its
    (j // world_size)-th gradient-accumulation step. One process accumulating over all micro-batches and
    several processes sharing them therefore see the same micro-batches. An incomplete last global batch
    is dropped.
    """

    def __init__(self, num_samples: int, seed: int, batch_size: int, micro_batch_size: int | None = None,
                 rank: int = 0, world_size: int = 1):
        micro_batch_size, self.accumulation_steps = micro_batches(batch_size, micro_batch_size, world_size)
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0
        self.batch_size, self.micro_batch_size = batch_size, micro_batch_size
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = num_samples // batch_size
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """The epoch to yield, from its global batch `start_step` on (a run resumed within an epoch)."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accumulation_steps * self.micro_batch_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        sample_seeds = torch.randint(2**62, (self.num_samples,), generator=generator).tolist()
        m = self.micro_batch_size
        for step in range(self.start_step, self.steps_per_epoch):
            for accumulation in range(self.accumulation_steps):
                start = step * self.batch_size + (accumulation * self.world_size + self.rank) * m
                yield from zip(order[start:start + m], sample_seeds[start:start + m])

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields `(index, sample_seed)` pairs for training datasets.

    Both the order and every sample's augmentation seed derive from (seed, epoch), so a run gives the same
    batches whatever the number of workers, and `--resume` continues exactly. Call `set_epoch` each epoch.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True):
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator) if self.shuffle else torch.arange(self.num_samples)
        sample_seeds = torch.randint(2**62, (self.num_samples,), generator=generator)
        yield from zip(order.tolist(), sample_seeds.tolist())

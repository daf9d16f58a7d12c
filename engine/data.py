"""The data of a training run: datasets checked up front, the language prior attached, seeded loaders."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch.utils.data import DataLoader

from datasets import SeededSampler, attach_prior, build_training_sets
from models.weights import MissingWeightsError
from utils.config import Config, ConfigError

from .process import Process


@dataclass
class TrainingData:
    train_loader: DataLoader
    val_loader: DataLoader
    sampler: SeededSampler
    model_args: dict          # what the prior adds to the network's arguments (text_dim or num_labels)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def batches(self, epoch: int) -> Iterator[list[dict]]:
        """The epoch's global batches, each as this process's list of micro-batches."""
        self.sampler.set_epoch(epoch)
        micro_batches = iter(self.train_loader)
        for _ in range(self.sampler.steps_per_epoch):
            yield [next(micro_batches) for _ in range(self.sampler.accumulation_steps)]


def attach_prior_or_fall_back(config: Config, datasets: list, device) -> tuple[list, dict]:
    try:
        return attach_prior(config.prior, datasets, device)
    except MissingWeightsError as e:
        if not config.prior.fallback_to_labels:
            raise
        print(f"{e}\nContinuing with the `labels` prior (each synthetic photo's known domain) instead of CLIP.")
        config.prior.mode = "labels"  # recorded in the checkpoints
        return attach_prior(config.prior, datasets, device)


def prepare_data(config: Config, process: Process) -> TrainingData:
    """Every file is checked (and the language prior computed) before the first step. Rank 0 goes first, so
    that only it writes the prior caches the other processes then read."""
    train = config.train
    micro = train.micro_batch_size or train.batch_size // process.world_size
    if micro < 1 or train.batch_size % (micro * process.world_size):
        raise ConfigError(f"train.batch_size {train.batch_size} is not a multiple of train.micro_batch_size {micro} "
                          f"× {process.world_size} process(es)")
    if not process.is_main:
        process.barrier()
    train_set, val_set = build_training_sets(config.data)
    model_args = dict(config.model_args)
    if config.prior.mode != "none":
        (train_set, val_set), prior_args = attach_prior_or_fall_back(config, [train_set, val_set], process.device)
        model_args |= prior_args
    if process.is_main:
        process.barrier()
    sampler = SeededSampler(len(train_set), train.seed, train.batch_size, train.micro_batch_size,
                            process.rank, process.world_size)
    if sampler.steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size {train.batch_size} exceeds the {len(train_set)} training samples")
    options = dict(num_workers=config.data.num_workers, pin_memory=process.device.type == "cuda",
                   persistent_workers=config.data.num_workers > 0)
    return TrainingData(DataLoader(train_set, sampler.micro_batch_size, sampler=sampler, **options),
                        DataLoader(val_set, sampler.micro_batch_size, **options), sampler, model_args)

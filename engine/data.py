"""The data of a training run: datasets checked up front, the language prior attached, seeded loaders."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from torch.utils.data import DataLoader

from datasets import SeededSampler, attach_prior, build_training_sets
from models.weights import MissingWeightsError
from utils.config import Config, ConfigError, micro_batches

from .process import Process


@dataclass
class TrainingData:
    train_loader: DataLoader
    val_loader: DataLoader
    sampler: SeededSampler
    model_args: dict          # the network's arguments: the config's, and what the prior adds (its settings among them)

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.steps_per_epoch

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[list[dict]]:
        """The epoch's global batches from `start_step` on, each as this process's list of micro-batches."""
        self.sampler.set_epoch(epoch, start_step)
        micro_batches = iter(self.train_loader)
        for _ in range(start_step, self.sampler.steps_per_epoch):
            yield [next(micro_batches) for _ in range(self.sampler.accumulation_steps)]


def attach_prior_or_fall_back(config: Config, datasets: list, device) -> tuple[list, dict]:
    """The config's prior attached to the datasets; with prior.fallback_to_labels, the `labels` prior when the CLIP
    weights are missing. The prior settings used travel in the returned network arguments (and so in checkpoints)."""
    try:
        return attach_prior(config.prior, datasets, device)
    except MissingWeightsError as e:
        if not config.prior.fallback_to_labels:
            raise
        print(f"{e}\nContinuing with the `labels` prior (each synthetic photo's known domain) instead of CLIP.")
        return attach_prior(dataclasses.replace(config.prior, mode="labels"), datasets, device)


def sampler_for(config: Config, process: Process, samples: int, held_out: int) -> SeededSampler:
    """The run's sampler; a batch larger than the training samples is refused, saying where the samples went."""
    train = config.train
    sampler = SeededSampler(samples, train.seed, train.batch_size, train.micro_batch_size, process.rank,
                            process.world_size)
    if sampler.steps_per_epoch == 0:
        split = "the training data has"
        if config.data.dataset == "paired" and config.data.validation == "holdout":
            split = (f"data.holdout_fraction {config.data.holdout_fraction} holds {held_out} of the {samples + held_out} "
                     f"pairs in {config.data.root}/{config.data.train_split} out for validation, leaving")
        raise ConfigError(f"train.batch_size {train.batch_size} needs at least that many training samples: {split} "
                          f"{samples}")
    return sampler


def prepare_data(config: Config, process: Process) -> TrainingData:
    """Every file is checked (and the language prior computed) before the first step. Rank 0 goes first, so
    that only it writes the prior caches the other processes then read."""
    micro_batches(config.train.batch_size, config.train.micro_batch_size, process.world_size)  # before the data
    if not process.is_main:
        process.barrier()
    train_set, val_set = build_training_sets(config.data)
    model_args = dict(config.model_args)
    if config.prior.mode != "none":
        (train_set, val_set), prior_args = attach_prior_or_fall_back(config, [train_set, val_set], process.device)
        model_args |= prior_args
    if process.is_main:
        process.barrier()
    sampler = sampler_for(config, process, len(train_set), len(val_set))
    options = dict(num_workers=config.data.num_workers, pin_memory=process.device.type == "cuda",
                   persistent_workers=config.data.num_workers > 0)
    val_batch = 1 if config.data.validation == "test-full" else sampler.micro_batch_size  # whole images differ in size
    return TrainingData(DataLoader(train_set, sampler.micro_batch_size, sampler=sampler, **options),
                        DataLoader(val_set, val_batch, **options), sampler, model_args)

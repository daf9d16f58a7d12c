"""Datasets (what the samples are), their augmentation (`transforms`), the haze model (`haze_model`), the seeded
sampler, and attaching the language prior (prior/) to samples (`prior`)."""
from .build import build_test_set, build_training_sets
from .paired import DatasetError, PairedImageDataset, holdout_split, validate_paired_folder
from .prior import WithFields, attach_prior, known_domains
from .sampler import SeededSampler
from .synthetic import SyntheticHazeDataset
from .transforms import PairedAugment

__all__ = ["DatasetError", "PairedAugment", "PairedImageDataset", "SeededSampler", "SyntheticHazeDataset", "WithFields",
           "attach_prior", "build_test_set", "build_training_sets", "holdout_split", "known_domains",
           "validate_paired_folder"]

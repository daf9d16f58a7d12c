"""Datasets (what the samples are) and, separately, their augmentation (`datasets.transforms`)."""
from .paired import DatasetError, PairedImageDataset, holdout_split, validate_paired_folder
from .sampler import SeededSampler
from .synthetic import SyntheticHazeDataset
from .transforms import PairedAugment

__all__ = ["DatasetError", "PairedAugment", "PairedImageDataset", "SeededSampler", "SyntheticHazeDataset",
           "holdout_split", "validate_paired_folder"]
from .build import attach_prior, build_test_set, build_training_sets, known_domains  # noqa: E402
from .prior import WithFields  # noqa: E402

__all__ += ["WithFields", "attach_prior", "build_test_set", "build_training_sets", "known_domains"]

"""Datasets (what the samples are), their augmentation (`transforms`), the haze model (`haze_model`) and the
language prior of MixCL models (`prior`)."""
from .build import build_test_set, build_training_sets
from .paired import DatasetError, PairedImageDataset, holdout_split, validate_paired_folder
from .prior import PRIOR_MODES, WithFields, attach_prior, known_domains, photo_prior, prior_config_of
from .sampler import SeededSampler
from .synthetic import SyntheticHazeDataset
from .transforms import PairedAugment

__all__ = ["PRIOR_MODES", "DatasetError", "PairedAugment", "PairedImageDataset", "SeededSampler", "SyntheticHazeDataset",
           "WithFields", "attach_prior", "build_test_set", "build_training_sets", "holdout_split", "known_domains",
           "photo_prior", "prior_config_of", "validate_paired_folder"]

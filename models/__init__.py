"""VGG16 and ResNet101 in pure PyTorch, with torchvision's parameter names and C1–C5 stage taps.

>>> from models import build_model
>>> model = build_model("resnet101", weights="random")
>>> list(model.stages)
['C1', 'C2', 'C3', 'C4', 'C5']
"""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

from models.resnet import ResNet101
from models.stages import STAGE_NAMES, stage_module_names, stage_shapes
from models.vgg import VGG16
from models.weights import (
    EXTRA_KEYS,
    LABEL_KEYS,
    PREPROCESSING_KEYS,
    Checkpoint,
    ImageNetUnavailable,
    WeightsError,
    WeightsInfo,
    imagenet_weights,
    load_weights,
    open_checkpoint,
)

_BUILDERS: dict[str, Callable[[], nn.Module]] = {"vgg16": VGG16, "resnet101": ResNet101}
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)

__all__ = [
    "EXTRA_KEYS",
    "LABEL_KEYS",
    "MODEL_NAMES",
    "PREPROCESSING_KEYS",
    "STAGE_NAMES",
    "VGG16",
    "Checkpoint",
    "ImageNetUnavailable",
    "ResNet101",
    "WeightsError",
    "WeightsInfo",
    "build_model",
    "imagenet_weights",
    "open_checkpoint",
    "stage_module_names",
    "stage_shapes",
]


def build_model(
    name: str,
    weights: str | os.PathLike[str] = "imagenet",
    *,
    progress: bool = True,
    num_classes: int | None = None,
    in_channels: int | None = None,
) -> nn.Module:
    """Build ``name`` (``"vgg16"`` or ``"resnet101"``) with its weights, in eval mode on the CPU.

    Args:
        name: one of ``MODEL_NAMES``.
        weights: ``"imagenet"`` (torchvision's checkpoint, from the torch hub cache or
            downloaded), ``"random"`` (untrained, seeded: every build is the same) or the path
            of a ``.pth``/``.pt``/``.safetensors`` checkpoint.
            A checkpoint may hold a fine-tuned network: a head of any number of classes, a first
            convolution of 3 or 1 input channels; both are read from it.
        progress: show a progress bar on stderr while downloading.
        num_classes: the head's outputs for ``"random"`` weights (default 1000); for a
            checkpoint, what it must have (default: whatever it has).
        in_channels: the input channels, 3 or 1, likewise.

    Returns:
        The classifier: ``model(x)`` gives logits ``(B, num_classes)`` for ``x`` of shape
        ``(B, in_channels, H, W)``; ``model.stages`` maps C1–C5 to the modules whose outputs
        are the stages; ``model.weights_info`` says what was loaded; ``model.num_classes`` and
        ``model.in_channels`` what the network takes and gives.

    Raises:
        ValueError: unknown ``name``.
        WeightsError: the weights could not be had or do not fit (one line: source and reason).
    """
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    return load_weights(
        builder, weights, progress=progress, num_classes=num_classes, in_channels=in_channels
    )

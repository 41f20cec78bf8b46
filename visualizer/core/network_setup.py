"""What a built network needs beside its weights: its class names and its preprocessing.

Resolved in one place for the engine (``Analyzer``) and ``fmviz info``: the values given,
else those stored in the checkpoint, else the architecture's ImageNet ones from torchvision.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch import nn

from models import imagenet_weights
from visualizer.core.labels import Labels, resolve_labels
from visualizer.core.preprocess import Preprocessing


def network_setup(
    model: nn.Module,
    *,
    labels: str | os.PathLike[str] | Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: int | None = None,
    crop: int | None = None,
) -> tuple[Labels, Preprocessing]:
    """The labels and preprocessing of ``model`` (one of ``models``' networks, loaded or on
    the meta device), with the values given taking precedence (see ``Analyzer``).

    Raises:
        LabelsError: the labels cannot be read, or their count is not the network's classes.
        PreprocessingError: values that do not fit the network (e.g. 3 means for 1 channel).
    """
    info = getattr(model, "weights_info", None)
    stored = dict(getattr(info, "extras", None) or {})
    entry = imagenet_weights(model.arch)
    classes = getattr(model, "num_classes", 1000)
    resolved = resolve_labels(labels, stored, classes, entry.meta["categories"])
    preprocessing = Preprocessing.for_weights(entry).customised(
        channels=getattr(model, "in_channels", 3),
        mean=mean,
        std=std,
        resize=resize,
        crop=crop,
        stored=stored,
    )
    return resolved, preprocessing

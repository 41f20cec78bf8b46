"""Which network made an index: architecture, weights (file and SHA-256), preprocessing."""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from models.weights import imagenet_checkpoint_path
from visualizer.core.analysis import Analyzer
from visualizer.core.preprocess import Preprocessing

CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file, hex; remembered while its size and modification time stay."""
    status = os.stat(path)
    return _sha256(os.path.abspath(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: str, _size: int, _modified: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def weights_file(analyzer: Analyzer) -> Path | None:
    """The file the analyzer's weights came from; None for random weights."""
    info = analyzer.weights_info
    if info is None or info.kind == "random":
        return None
    if info.kind == "imagenet":
        return imagenet_checkpoint_path(analyzer.arch)
    return Path(info.detail)


def network_identity(analyzer: Analyzer) -> dict[str, object]:
    """The network as metadata: architecture, classes, input channels, the weights in words,
    their file and its SHA-256 (None for random weights: their seed is in ``weights``)."""
    file = weights_file(analyzer)
    exists = file is not None and file.is_file()
    return {
        "model": analyzer.arch,
        "classes": analyzer.num_classes,
        "in_channels": analyzer.in_channels,
        "weights": str(analyzer.weights_info),
        "weights_file": str(file) if exists else None,
        "weights_sha256": sha256_of(file) if exists else None,
    }


def preprocessing_identity(preprocessing: Preprocessing) -> dict[str, object]:
    """The preprocessing as metadata: its values and the line that describes it."""
    return {
        "resize": preprocessing.resize,
        "crop": preprocessing.crop,
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "interpolation": preprocessing.interpolation,
        "channels": preprocessing.channels,
        "description": preprocessing.describe(),
    }


def mismatch(metadata: Mapping[str, object], analyzer: Analyzer) -> str | None:
    """Why an index with ``metadata`` does not describe ``analyzer``'s network (another
    architecture, other weights, other preprocessing), in words; None when it does."""
    network = _mapping(metadata.get("network"))
    ours = network_identity(analyzer)
    if network.get("model") != ours["model"]:
        return f"it was made with {network.get('model')}, not {ours['model']}"
    if network.get("weights_sha256") != ours["weights_sha256"] or (
        ours["weights_sha256"] is None and network.get("weights") != ours["weights"]
    ):
        return f"it was made with other weights ({network.get('weights')})"
    stored = _mapping(metadata.get("preprocessing"))
    now = preprocessing_identity(analyzer.preprocessing)
    keys = ("resize", "crop", "mean", "std", "channels")
    differing = [key for key in keys if stored.get(key) != now[key]]
    if differing:
        return f"it was made with other preprocessing ({', '.join(differing)})"
    return None


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}

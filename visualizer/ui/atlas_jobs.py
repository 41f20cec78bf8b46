"""The window's work with a dataset index (``fmviz index``), off the event loop: opening one,
cropping a channel's top images into patches, ordering a grid by the index's statistics.
Plain data in and out; no Qt. The index's reader (pyarrow) and the figure (torch) are
imported only when a job runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from visualizer.choices import STAGES

if TYPE_CHECKING:
    from visualizer.core.atlas import Atlas

PATCH_SIZE = 96  # pixels: each patch shown fits a square this size
# Grid orders by the index's per-channel statistics (``Atlas.statistics``), highest first:
# order → (statistic, the order picker's text, what it means).
DATASET_ORDERS = {
    "dataset-mean": (
        "mean",
        "Order: dataset mean score",
        "the dataset's mean score (each image's spatial maximum), highest first",
    ),
    "dataset-active": (
        "active_fraction",
        "Order: dataset active fraction",
        "the fraction of the dataset's images in which the channel is active, highest first",
    ),
    "dataset-activation": (
        "mean_activation",
        "Order: dataset mean activation",
        "the dataset's mean activation, highest first",
    ),
    "dataset-std": (
        "std",
        "Order: dataset score spread",
        "the standard deviation of the dataset's scores, highest first",
    ),
}


@dataclass(frozen=True, eq=False)
class Patch:
    """One of a channel's top images, cropped to its box for the Channel tab.

    Attributes:
        rank, score, source, box: as ``TopImage``'s.
        name: the source's file name.
        pixels: ``(h, w, 3)`` uint8, fitting a ``PATCH_SIZE`` square; None when the source
            cannot be read (``error`` says why).
    """

    rank: int
    score: float
    source: str
    box: tuple[int, int, int, int]
    name: str
    pixels: np.ndarray | None
    error: str | None = None


@dataclass(frozen=True, eq=False)
class Patches:
    """A channel's patches at a layer, and the index they come from."""

    atlas: Atlas
    layer: str
    channel: int
    patches: tuple[Patch, ...]
    statistics: str  # the channel's dataset statistics in words (``figure.statistics_words``)


def open_atlas(folder: str) -> Atlas:
    """The index in ``folder``.

    Raises:
        IndexFileError: the folder holds no complete index (one line: the folder and why).
    """
    from visualizer.core.atlas.reader import Atlas  # noqa: PLC0415 (pyarrow loads with it)

    return Atlas(folder)


def atlas_patches(atlas: Atlas, layer: str, channel: int, size: int = PATCH_SIZE) -> Patches:
    """``channel``'s top images at ``layer``, each cropped to its box and fitted to a
    ``size`` square (``figure.patch_image``); a source that cannot be read gives a patch
    without pixels."""
    from visualizer.core.atlas.figure import patch_image, statistics_words  # noqa: PLC0415

    patches = []
    for top in atlas.top(layer, channel):
        pixels, error = None, None
        try:
            pixels = np.asarray(patch_image(top, size), dtype=np.uint8).copy()
        except (OSError, ValueError) as failure:
            error = " ".join(str(failure).split())
        name = Path(top.source).name
        patches.append(Patch(top.rank, top.score, top.source, top.box, name, pixels, error))
    statistics = statistics_words(atlas, layer, channel)
    return Patches(atlas, layer, channel, tuple(patches), statistics)


def covers(atlas: Atlas | None, layer: str) -> bool:
    """True when ``atlas`` is open and indexed ``layer`` (a stage or a feature layer)."""
    return atlas is not None and layer in atlas.layers


def statistic_by_channel(atlas: Atlas, layer: str, statistic: str) -> np.ndarray:
    """``statistic`` of each channel of ``layer``, indexed by channel number (NaN where a
    channel has no row)."""
    table = atlas.statistics(layer)
    channels = np.asarray(table["channel"], dtype=np.intp)
    values = np.full(int(channels.max()) + 1 if channels.size else 0, np.nan)
    values[channels] = np.asarray(table[statistic], dtype=np.float64)
    return values


def dataset_order(atlas: Atlas, layer: str, order: str) -> tuple[int, ...]:
    """The channels of ``layer`` by ``order`` (one of ``DATASET_ORDERS``), highest first; ties
    keep channel order, and channels without a value come last."""
    values = statistic_by_channel(atlas, layer, DATASET_ORDERS[order][0])
    return tuple(int(channel) for channel in np.argsort(-values, kind="stable"))


def describe_atlas(atlas: Atlas) -> str:
    """``"photos-index: 1200 images, C1–C5, top 9"`` for the status bar."""
    images = atlas.metadata.get("images", {})
    count = images.get("counted", "?") if isinstance(images, dict) else "?"
    layers = atlas.layers
    stages = list(STAGES)
    consecutive = (
        len(layers) > 2
        and all(layer in stages for layer in layers)
        and layers == stages[stages.index(layers[0]) : stages.index(layers[0]) + len(layers)]
    )
    span = f"{layers[0]}–{layers[-1]}" if consecutive else ", ".join(layers)
    return f"{atlas.folder.name}: {count} images, {span}, top {atlas.metadata.get('top', '?')}"

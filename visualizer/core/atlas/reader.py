"""An index read back: each channel's top images and the per-channel statistics."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from visualizer.core.atlas.store import (
    CHANNELS_FILE,
    FORMAT,
    METADATA_FILE,
    TOPK_COLUMNS,
    TOPK_FILE,
    IndexFileError,
)


@dataclass(frozen=True)
class TopImage:
    """One of a channel's top images.

    Attributes:
        rank: 1 for the highest score.
        score: the channel's spatial maximum activation in the image.
        source: the image's path.
        y, x: the maximum's position in the feature map.
        box: ``(left, top, right, bottom)`` in the source image's pixels (EXIF orientation
            applied), right/bottom exclusive: the receptive field of the maximum.
    """

    rank: int
    score: float
    source: str
    y: int
    x: int
    box: tuple[int, int, int, int]


class Atlas:
    """An index folder written by ``fmviz index`` (see ``visualizer.core.atlas.store``).

    Raises:
        IndexFileError: the folder holds no complete index, or its files cannot be read.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        try:
            self.metadata: dict = json.loads((self.folder / METADATA_FILE).read_text())
            top = pq.read_table(self.folder / TOPK_FILE).to_pydict()
            channels = pq.read_table(self.folder / CHANNELS_FILE)
        except FileNotFoundError as missing:
            reason = f"no {Path(missing.filename or '').name}: not a complete fmviz index"
            raise IndexFileError(f"{self.folder}: {reason}") from None
        except (OSError, ValueError) as failure:
            raise IndexFileError(f"{self.folder}: cannot read the index ({failure})") from None
        if self.metadata.get("format") != FORMAT or list(top) != list(TOPK_COLUMNS):
            raise IndexFileError(f"{self.folder}: not an fmviz index of this version")
        self.layers: list[str] = list(self.metadata.get("layers", {}))
        self._top: dict[tuple[str, int], list[TopImage]] = {}
        for row in zip(*top.values(), strict=True):
            stage, channel, rank, score, source, y, x, *box = row
            self._top.setdefault((stage, channel), []).append(
                TopImage(rank, score, source, y, x, tuple(box))  # type: ignore[arg-type]
            )
        self._statistics: dict[str, dict[str, np.ndarray]] = {}
        stages = np.asarray(channels.column("stage").to_pylist())
        for layer in self.layers:
            rows = stages == layer
            self._statistics[layer] = {
                name: channels.column(name).to_numpy()[rows]
                for name in channels.column_names
                if name != "stage"
            }

    @property
    def network(self) -> dict:
        """The network that made the index (``identity.network_identity``)."""
        return self.metadata.get("network", {})

    def top(self, layer: str, channel: int) -> list[TopImage]:
        """``channel``'s top images at ``layer``, highest score first (empty if unknown)."""
        return list(self._top.get((layer, channel), []))

    def statistics(self, layer: str) -> dict[str, np.ndarray]:
        """``layer``'s per-channel columns (``channel, images, mean, std, active_fraction,
        mean_activation``), each ``(C,)`` by channel; empty for a layer not indexed."""
        return dict(self._statistics.get(layer, {}))

"""Images in batches for indexing: read with ``load_image`` in ``DataLoader`` workers.

A file that is not a readable image does not stop the batch: it travels in the batch as a
refusal (its number and the reason), and the rest of the batch is indexed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from models.weights import PATH_SHOWN, shown
from visualizer.core.images import ImageLoadError, load_image
from visualizer.core.preprocess import Preprocessing

Item = tuple[int, torch.Tensor | None, tuple[int, int], str | None]


@dataclass(frozen=True)
class Batch:
    """Images read and preprocessed, and those refused.

    Attributes:
        numbers: ``(N,)`` int64, the images' numbers (positions in the sorted list), ascending.
        pixels: ``(N, channels, crop, crop)`` uint8, the resized and cropped images
            (``Preprocessing.normalized`` makes the model inputs of them, on the device).
        sizes: ``(N, 2)`` int64, each source image's ``(width, height)`` after EXIF rotation.
        refused: ``(number, reason)`` of each file that is not a readable image.
    """

    numbers: torch.Tensor
    pixels: torch.Tensor
    sizes: torch.Tensor
    refused: list[tuple[int, str]]

    def pin_memory(self) -> Batch:
        """The batch in pinned memory (``DataLoader(pin_memory=True)`` calls it)."""
        return Batch(self.numbers, self.pixels.pin_memory(), self.sizes, self.refused)


class ImageFiles(Dataset):
    """``paths`` as cropped images: item ``n`` is image number ``n``, read with ``load_image``
    and resized and cropped (``Preprocessing.cropped``), or the reason it was refused."""

    def __init__(self, paths: Sequence[str], preprocessing: Preprocessing) -> None:
        self.paths = paths
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, number: int) -> Item:
        try:
            image = load_image(self.paths[number])
            pixels, _view = self.preprocessing.cropped(image)
        except (ImageLoadError, OSError, ValueError) as failure:
            return number, None, (0, 0), _reason(failure, self.paths[number])
        return number, pixels, image.size, None


def collate(items: list[Item]) -> Batch:
    """One ``Batch`` of dataset items (the ``DataLoader``'s ``collate_fn``)."""
    read = [item for item in items if item[1] is not None]
    refused = [(number, reason) for number, _x, _size, reason in items if reason is not None]
    pixels = (
        torch.stack([x for _n, x, _s, _r in read]) if read else torch.empty(0, dtype=torch.uint8)
    )  # type: ignore[misc]
    return Batch(
        numbers=torch.tensor([number for number, *_ in read], dtype=torch.int64),
        pixels=pixels,
        sizes=torch.tensor([size for _n, _x, size, _r in read], dtype=torch.int64).reshape(-1, 2),
        refused=refused,
    )


def batches(
    paths: Sequence[str],
    preprocessing: Preprocessing,
    *,
    batch_sampler: Iterable[list[int]],
    workers: int = 2,
    pin_memory: bool = False,
) -> DataLoader:
    """The batches of image numbers ``batch_sampler`` gives, in its order, read by ``workers``
    processes (0: in this one)."""
    return DataLoader(
        ImageFiles(paths, preprocessing),
        batch_sampler=batch_sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
    )


def _reason(failure: Exception, path: str) -> str:
    """The reason alone, one line (``load_image``'s message starts with the file's name, as
    ``shown`` writes it: escaped, and cut short when long)."""
    text = str(failure)
    for name in (shown(Path(path), PATH_SHOWN), path):
        text = text.removeprefix(f"{name}: ")
    return " ".join(text.split())

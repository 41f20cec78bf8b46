"""Each channel's top-K images and its statistics, from batches, merged associatively.

A batch's summary and a whole dataset's are the same kind of value (``ChannelTopK``), and
``merged`` combines two of them. The order of the top-K is total (score descending, then image
number ascending), so merging in any order or grouping — batch after batch on one machine,
shards on a cluster, a run resumed after an interruption — gives the same top-K. The statistics
are sums (counted images, sums of the scores and their squares, active images), so they merge
by addition, equal across orders up to float64 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

EMPTY = -1  # the image number of a slot no image has filled yet


@dataclass(frozen=True)
class ChannelTopK:
    """The top-K images of every channel of one feature layer, and per-channel sums.

    The score of an image for a channel is the channel's spatial maximum activation; ``ys``
    and ``xs`` are where it is (the first such position, in row-major order).

    Attributes:
        scores: ``(C, K)`` float32, descending per channel (``-inf`` in empty slots).
        images: ``(C, K)`` int64, the images' numbers (``EMPTY`` in empty slots).
        ys, xs: ``(C, K)`` int32, the maximum's position in the feature map.
        widths, heights: ``(C, K)`` int32, the source image's size in pixels (for its box).
        count: images summed.
        score_sum, score_squares: ``(C,)`` float64, sums of the scores and of their squares.
        active: ``(C,)`` int64, images whose score is above 0.
        activation_sum: ``(C,)`` float64, sum over images of the channel's mean activation.
    """

    scores: np.ndarray
    images: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    count: int
    score_sum: np.ndarray
    score_squares: np.ndarray
    active: np.ndarray
    activation_sum: np.ndarray

    @property
    def channels(self) -> int:
        return self.scores.shape[0]

    @property
    def k(self) -> int:
        return self.scores.shape[1]

    @classmethod
    def empty(cls, channels: int, k: int) -> ChannelTopK:
        """No image yet: every slot empty, every sum 0."""
        slots = (channels, k)
        return cls(
            scores=np.full(slots, -np.inf, np.float32),
            images=np.full(slots, EMPTY, np.int64),
            ys=np.zeros(slots, np.int32),
            xs=np.zeros(slots, np.int32),
            widths=np.zeros(slots, np.int32),
            heights=np.zeros(slots, np.int32),
            count=0,
            score_sum=np.zeros(channels, np.float64),
            score_squares=np.zeros(channels, np.float64),
            active=np.zeros(channels, np.int64),
            activation_sum=np.zeros(channels, np.float64),
        )

    def merged(self, other: ChannelTopK) -> ChannelTopK:
        """The summary of both sets of images (which must not overlap); associative and
        commutative. Raises ValueError for summaries of different shapes."""
        if other.scores.shape != self.scores.shape:
            raise ValueError(
                f"cannot merge top-K of shape {other.scores.shape} into {self.scores.shape}"
            )
        both = {
            name: np.concatenate([getattr(self, name), getattr(other, name)], axis=1)
            for name in ("scores", "images", "ys", "xs", "widths", "heights")
        }
        # Empty slots sort last: their score is -inf and their number the largest.
        numbers = np.where(both["images"] == EMPTY, np.iinfo(np.int64).max, both["images"])
        order = np.lexsort((numbers, -both["scores"]), axis=1)[:, : self.k]
        kept = {name: np.take_along_axis(values, order, 1) for name, values in both.items()}
        return ChannelTopK(
            **kept,
            count=self.count + other.count,
            score_sum=self.score_sum + other.score_sum,
            score_squares=self.score_squares + other.score_squares,
            active=self.active + other.active,
            activation_sum=self.activation_sum + other.activation_sum,
        )

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Every field as an array (``count`` a 0-d one), for saving."""
        return {field.name: np.asarray(getattr(self, field.name)) for field in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ChannelTopK:
        """The inverse of ``as_arrays``."""
        values = {field.name: np.asarray(arrays[field.name]) for field in fields(cls)}
        values["count"] = int(values["count"])
        return cls(**values)


def summarize(
    activations: torch.Tensor, images: torch.Tensor, sizes: torch.Tensor, k: int
) -> ChannelTopK:
    """The summary of one batch of a feature layer's outputs.

    Args:
        activations: ``(N, C, H, W)``, on any device.
        images: ``(N,)`` int64, the images' numbers, ascending.
        sizes: ``(N, 2)`` int, each source image's ``(width, height)``.
        k: slots per channel.
    """
    n, _channels, _height, width = activations.shape
    flat = activations.detach().flatten(2).float()
    scores, positions = flat.max(dim=2)  # (N, C): the first maximum in row-major order
    means = flat.mean(dim=2)
    # Per channel, images by score descending; the stable sort keeps ascending numbers on ties.
    order = torch.sort(scores.T, dim=1, descending=True, stable=True).indices[:, :k]  # (C, k)
    kept_positions = torch.gather(positions.T, 1, order)
    host = {
        "order": order.cpu().numpy(),
        "scores": torch.gather(scores.T, 1, order).cpu().numpy(),
        "positions": kept_positions.cpu().numpy(),
        "score_sum": scores.double().sum(0).cpu().numpy(),
        "score_squares": scores.double().square().sum(0).cpu().numpy(),
        "active": (scores > 0).sum(0).cpu().numpy(),
        "activation_sum": means.double().sum(0).cpu().numpy(),
    }
    numbers, size = images.cpu().numpy(), sizes.cpu().numpy()
    summary = ChannelTopK(
        scores=host["scores"].astype(np.float32),
        images=numbers[host["order"]].astype(np.int64),
        ys=(host["positions"] // width).astype(np.int32),
        xs=(host["positions"] % width).astype(np.int32),
        widths=size[host["order"], 0].astype(np.int32),
        heights=size[host["order"], 1].astype(np.int32),
        count=n,
        score_sum=host["score_sum"],
        score_squares=host["score_squares"],
        active=host["active"].astype(np.int64),
        activation_sum=host["activation_sum"],
    )
    if summary.k < k:  # a batch smaller than K: pad with empty slots
        return _padded(summary, k)
    return summary


def _padded(summary: ChannelTopK, k: int) -> ChannelTopK:
    pad = k - summary.k
    filler = ChannelTopK.empty(summary.channels, pad)
    values = {
        name: np.concatenate([getattr(summary, name), getattr(filler, name)], axis=1)
        for name in ("scores", "images", "ys", "xs", "widths", "heights")
    }
    return ChannelTopK(
        **values,
        count=summary.count,
        score_sum=summary.score_sum,
        score_squares=summary.score_squares,
        active=summary.active,
        activation_sum=summary.activation_sum,
    )

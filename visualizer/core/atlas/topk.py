"""Each channel's top-K images and its statistics, from batches, merged associatively.

A batch's summary and a whole dataset's are the same kind of value (``ChannelTopK``), and
``merged`` combines two of them. The order of the top-K is total (score descending, then image
number ascending), so merging in any order or grouping — batch after batch on one machine,
shards on a cluster, a run resumed after an interruption — gives the same top-K. The statistics
are sums (counted images, sums of the scores and their squares, active images), so they merge
by addition, equal across orders up to float64 rounding.

The values are torch tensors on any device: on a GPU, a batch is summarised and merged into
the running summary without waiting for the device; the host sees it only when it is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

EMPTY = -1  # the image number of a slot no image has filled yet
SLOTS = ("scores", "images", "ys", "xs", "widths", "heights")  # the (C, K) fields
LAST = torch.iinfo(torch.int64).max  # an empty slot's number when sorting: after every image


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

    scores: torch.Tensor
    images: torch.Tensor
    ys: torch.Tensor
    xs: torch.Tensor
    widths: torch.Tensor
    heights: torch.Tensor
    count: int
    score_sum: torch.Tensor
    score_squares: torch.Tensor
    active: torch.Tensor
    activation_sum: torch.Tensor

    @property
    def channels(self) -> int:
        return self.scores.shape[0]

    @property
    def k(self) -> int:
        return self.scores.shape[1]

    @classmethod
    def empty(cls, channels: int, k: int, device: torch.device | str | None = None) -> ChannelTopK:
        """No image yet: every slot empty, every sum 0."""
        slots = (channels, k)
        return cls(
            scores=torch.full(slots, -torch.inf, dtype=torch.float32, device=device),
            images=torch.full(slots, EMPTY, dtype=torch.int64, device=device),
            ys=torch.zeros(slots, dtype=torch.int32, device=device),
            xs=torch.zeros(slots, dtype=torch.int32, device=device),
            widths=torch.zeros(slots, dtype=torch.int32, device=device),
            heights=torch.zeros(slots, dtype=torch.int32, device=device),
            count=0,
            score_sum=torch.zeros(channels, dtype=torch.float64, device=device),
            score_squares=torch.zeros(channels, dtype=torch.float64, device=device),
            active=torch.zeros(channels, dtype=torch.int64, device=device),
            activation_sum=torch.zeros(channels, dtype=torch.float64, device=device),
        )

    def merged(self, other: ChannelTopK) -> ChannelTopK:
        """The summary of both sets of images (which must not overlap), on this one's device;
        associative and commutative. Raises ValueError for summaries of different shapes."""
        if other.scores.shape != self.scores.shape:
            raise ValueError(
                f"cannot merge top-K of shape {tuple(other.scores.shape)} into "
                f"{tuple(self.scores.shape)}"
            )
        other = other.to(self.scores.device)
        both = {name: torch.cat([getattr(self, name), getattr(other, name)], 1) for name in SLOTS}
        kept = _first(both, self.k)
        return ChannelTopK(
            **kept,
            count=self.count + other.count,
            score_sum=self.score_sum + other.score_sum,
            score_squares=self.score_squares + other.score_squares,
            active=self.active + other.active,
            activation_sum=self.activation_sum + other.activation_sum,
        )

    def to(self, device: torch.device | str) -> ChannelTopK:
        """This summary with its tensors on ``device`` (itself when they are there)."""
        if self.scores.device == torch.device(device):
            return self
        moved = {field.name: getattr(self, field.name) for field in fields(self)}
        return ChannelTopK(
            **{
                name: value.to(device) if isinstance(value, torch.Tensor) else value
                for name, value in moved.items()
            }
        )

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Every field as a NumPy array on the host (``count`` a 0-d one), for saving."""
        return {
            field.name: np.asarray(
                getattr(self, field.name).cpu().numpy() if field.name != "count" else self.count
            )
            for field in fields(self)
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ChannelTopK:
        """The inverse of ``as_arrays`` (tensors on the CPU)."""
        values: dict[str, object] = {
            field.name: torch.from_numpy(np.array(arrays[field.name]))
            for field in fields(cls)
            if field.name != "count"
        }
        return cls(**values, count=int(arrays["count"]))  # type: ignore[arg-type]


def _first(slots: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """The first ``k`` entries of each channel, by score descending then number ascending
    (two stable sorts: by number, then by score), with empty slots last."""
    numbers = torch.where(slots["images"] == EMPTY, LAST, slots["images"])
    by_number = torch.sort(numbers, dim=1, stable=True).indices
    scores = torch.gather(slots["scores"], 1, by_number)
    by_score = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    order = torch.gather(by_number, 1, by_score)
    return {name: torch.gather(values, 1, order) for name, values in slots.items()}


def summarize(
    activations: torch.Tensor, images: torch.Tensor, sizes: torch.Tensor, k: int
) -> ChannelTopK:
    """The summary of one batch of a feature layer's outputs, on their device (nothing waits
    for the device).

    Args:
        activations: ``(N, C, H, W)``, on any device.
        images: ``(N,)`` int64, the images' numbers.
        sizes: ``(N, 2)`` int, each source image's ``(width, height)``.
        k: slots per channel.
    """
    n, channels, _height, width = activations.shape
    device = activations.device
    flat = activations.detach().flatten(2).float()
    scores, positions = flat.max(dim=2)  # (N, C): the first maximum in row-major order
    # A NaN (a broken network) sorts as nothing: last, whatever the batch.
    scores = torch.where(scores.isnan(), -torch.inf, scores)
    numbers = images.to(device, torch.int64).expand(channels, n)
    size = sizes.to(device, torch.int32)
    slots = {
        "scores": scores.T,
        "images": numbers,
        "ys": (positions // width).to(torch.int32).T,
        "xs": (positions % width).to(torch.int32).T,
        "widths": size[:, 0].expand(channels, n),
        "heights": size[:, 1].expand(channels, n),
    }
    if n < k:  # a batch smaller than K: empty slots after its images
        empty = ChannelTopK.empty(channels, k - n, device)
        slots = {
            name: torch.cat([values, getattr(empty, name)], 1) for name, values in slots.items()
        }
    scores64 = scores.double()
    return ChannelTopK(
        **_first(slots, k),
        count=n,
        score_sum=scores64.sum(0),
        score_squares=scores64.square().sum(0),
        active=(scores > 0).sum(0),
        activation_sum=flat.mean(dim=2).double().sum(0),
    )

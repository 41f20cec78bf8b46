"""Where a feature-map position looks: its receptive field in the model input, and in the source.

The theoretical receptive field (Araujo, Norris and Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019): every convolution and pooling layer on the way
to a feature map widens it by ``(kernel - 1) · jump`` input pixels, multiplies the jump
(the distance in input pixels between neighbouring positions) by its stride and moves the
first position's centre by ``((kernel - 1) / 2 - padding) · jump``. The values are worked out
by following the tensors of one pass on the meta device (no memory, no arithmetic): where two
paths meet (a residual sum), the wider of the two fields is kept, so a box always contains
the field of every path.

The box of a position is then carried back through the centre crop and the resize to the
source image's own pixels (as ``load_image`` returns it: EXIF orientation applied), widened
by the resize filter's reach, so that every source pixel that can change the activation is
inside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.stages import meta_copy

# How far each resize filter reaches from a resized pixel's centre, in resized pixels when
# enlarging and in source pixels × scale when shrinking (Pillow's filter supports; torchvision
# resizes PIL images with Pillow).
FILTER_SUPPORT = {
    "nearest": 0.5,
    "nearest-exact": 0.5,
    "box": 0.5,
    "bilinear": 1.0,
    "hamming": 1.0,
    "bicubic": 2.0,
    "lanczos": 3.0,
}


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of one feature map's positions, in model-input pixels.

    Attributes:
        size: side of the field, in pixels (may exceed the input: it is clipped there).
        jump: input pixels between neighbouring positions (the product of the strides).
        start: input coordinate (pixel centres at 0, 1, …) of position 0's field centre.
    """

    size: float
    jump: float
    start: float

    def box(self, y: int, x: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` of position ``(y, x)``'s field in an input of
        ``height`` × ``width`` pixels: pixel edges, right and bottom exclusive, clipped."""
        box = self.boxes(np.array([y]), np.array([x]), height, width)[0]
        return tuple(int(value) for value in box)  # type: ignore[return-value]

    def boxes(self, ys: np.ndarray, xs: np.ndarray, height: int, width: int) -> np.ndarray:
        """``box`` of many positions at once: ``(N, 4)`` int64 from ``(N,)`` ``ys`` and
        ``xs``."""
        left, right = self._spans(np.asarray(xs), width)
        top, bottom = self._spans(np.asarray(ys), height)
        return np.stack([left, top, right, bottom], axis=-1)

    def _spans(self, positions: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        centre = self.start + positions * self.jump
        # The field's first and last pixel (centres at 0, 1, …); the margin keeps a centre
        # that floating point puts a hair past a pixel on that pixel.
        low = np.floor(centre - (self.size - 1) / 2 + 1e-9)
        high = np.ceil(centre + (self.size - 1) / 2 - 1e-9) + 1
        return np.clip(low, 0, length).astype(np.int64), np.clip(high, 0, length).astype(np.int64)


def receptive_fields(
    model: nn.Module, names: Sequence[str], height: int, width: int
) -> dict[str, ReceptiveField]:
    """The receptive field of each module named in ``names`` (qualified module names, e.g.
    ``"layer3"`` or ``"features.15"``) of ``model``, for an input of ``height`` × ``width``.

    The fields depend on the architecture alone (its class, classes and input channels), so
    they are worked out once per architecture, names and size.

    Raises:
        ValueError: a name that is no module of ``model``, or one whose output was not made
            from the input by the layers followed (e.g. the classifier's flat output).
    """
    key = (type(model), model.num_classes, model.in_channels, tuple(names), height, width)
    if key not in _WORKED_OUT:
        _WORKED_OUT[key] = _worked_out(model, names, height, width)
    return dict(_WORKED_OUT[key])


# Fields by (architecture class, classes, input channels, names, height, width).
_WORKED_OUT: dict[tuple, dict[str, ReceptiveField]] = {}


def _worked_out(
    model: nn.Module, names: Sequence[str], height: int, width: int
) -> dict[str, ReceptiveField]:
    copy = meta_copy(model)
    modules = dict(copy.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"no module named {unknown[0]!r} in {type(model).__name__}")
    image = torch.empty(1, model.in_channels, height, width, device="meta")
    # The field of every tensor seen so far, by id (the tensors are kept alive with it, so an
    # id cannot be reused within the pass).
    fields: dict[int, tuple[torch.Tensor, ReceptiveField]] = {
        id(image): (image, ReceptiveField(1.0, 1.0, 0.0))
    }
    found: dict[str, ReceptiveField] = {}

    def field_of(tensor: torch.Tensor) -> ReceptiveField | None:
        known = fields.get(id(tensor))
        if known is not None:
            return known[1]
        # Made outside any module (a residual sum): the widest field of its size so far.
        same = [
            field
            for seen, field in fields.values()
            if seen.dim() == 4 and tensor.dim() == 4 and seen.shape[-2:] == tensor.shape[-2:]
        ]
        return max(same, key=lambda field: field.size) if same else None

    def leaf_hook(module: nn.Module, inputs: tuple, output: object) -> None:
        tensors = bool(inputs) and isinstance(inputs[0], torch.Tensor)
        if not (tensors and isinstance(output, torch.Tensor)):
            return
        before = field_of(inputs[0])
        if before is None:
            return
        fields[id(output)] = (output, _through(module, before, inputs[0], output))

    def named_hook(name: str):
        def record(_module: nn.Module, _inputs: tuple, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                field = field_of(output)
                if field is not None:
                    found.setdefault(name, field)

        return record

    handles = [
        module.register_forward_hook(leaf_hook)
        for module in copy.modules()
        if not any(True for _ in module.children())
    ]
    # Registered after the leaves' hooks: a leaf named here has its output's field by then.
    handles += [modules[name].register_forward_hook(named_hook(name)) for name in names]
    try:
        with torch.no_grad():
            copy(image)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(f"{missing[0]!r} gives no feature map that the input's pixels map to")
    return found


def _through(
    module: nn.Module, field: ReceptiveField, before: torch.Tensor, after: torch.Tensor
) -> ReceptiveField:
    """The field after ``module``: convolutions and pooling widen it; elementwise layers
    (batch norm, ReLU, dropout) keep it."""
    if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        kernel, stride, padding, dilation = _geometry(module)
        reach = dilation * (kernel - 1)
        return ReceptiveField(
            size=field.size + reach * field.jump,
            jump=field.jump * stride,
            start=field.start + (reach / 2 - padding) * field.jump,
        )
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        if before.shape[-2:] == after.shape[-2:]:
            return field  # the identity at this input size (VGG's 7×7 pooling at 224)
        return ReceptiveField(math.inf, field.jump, field.start)
    return field


def _geometry(module: nn.Module) -> tuple[int, int, float, int]:
    """Kernel, stride, padding and dilation along the height (fmviz's networks are square)."""

    def first(value: object) -> int:
        return int(value[0]) if isinstance(value, tuple | list) else int(value)  # type: ignore[index]

    kernel, stride = first(module.kernel_size), first(module.stride)
    dilation = first(getattr(module, "dilation", 1))
    padding = module.padding
    if padding == "same":
        padding_value: float = dilation * (kernel - 1) / 2
    elif padding == "valid":
        padding_value = 0
    else:
        padding_value = first(padding)
    return kernel, stride, padding_value, dilation


def source_box(
    box: tuple[int, int, int, int],
    source_size: tuple[int, int],
    resized_size: tuple[int, int],
    crop: int,
    interpolation: str = "bilinear",
) -> tuple[int, int, int, int]:
    """A box in the model input (``crop`` × ``crop``) carried back to the source image.

    Args:
        box: ``(left, top, right, bottom)`` in model-input pixels, right/bottom exclusive.
        source_size: the source image's ``(width, height)`` (EXIF orientation applied).
        resized_size: ``(height, width)`` after the resize (``Preprocessing.resized_size``).
        crop: the centre crop's side (torchvision's ``center_crop``: rounded offsets; an
            image smaller than the crop is padded evenly, its extra pixel at the end).
        interpolation: the resize's filter (``Preprocessing.interpolation``).

    Returns:
        ``(left, top, right, bottom)`` in source pixels, right/bottom exclusive, clipped to
        the image (``(0, 0, 0, 0)`` when the field lies wholly in the padding of an image
        thinner than the crop): every source pixel whose value reaches the box's input
        pixels through the antialiased resize (a filter reaching ``support × max(1, scale)``
        source pixels from a resized pixel's centre; ``FILTER_SUPPORT``).
    """
    boxes = source_boxes(
        np.array([box]),
        np.array([source_size]),
        np.array([resized_size]),
        crop,
        interpolation,
    )
    return tuple(int(value) for value in boxes[0])  # type: ignore[return-value]


def source_boxes(
    boxes: np.ndarray,
    source_sizes: np.ndarray,
    resized_sizes: np.ndarray,
    crop: int,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """``source_box`` of many boxes at once: ``(N, 4)`` boxes, ``(N, 2)`` source sizes
    ``(width, height)`` and ``(N, 2)`` resized sizes ``(height, width)`` → ``(N, 4)`` int64."""
    boxes = np.asarray(boxes, np.int64)
    support = FILTER_SUPPORT.get(interpolation, max(FILTER_SUPPORT.values()))
    left, right = _back(
        boxes[:, 0], boxes[:, 2], source_sizes[:, 0], resized_sizes[:, 1], crop, support=support
    )
    top, bottom = _back(
        boxes[:, 1], boxes[:, 3], source_sizes[:, 1], resized_sizes[:, 0], crop, support=support
    )
    result = np.stack([left, top, right, bottom], axis=-1)
    result[(right <= left) | (bottom <= top)] = 0  # the field lies in the crop's padding
    return result


def _back(
    low: np.ndarray,
    high: np.ndarray,
    source: np.ndarray,
    resized: np.ndarray,
    crop: int,
    *,
    support: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One axis of ``source_boxes``: the model input's pixel edges ``[low, high)`` → the
    source's (equal edges: no pixel). The edges move by the crop's offset into the resized
    image, then out to the first and last source pixel that the resize filter reaches from
    the centres of the resized pixels ``low`` and ``high - 1``."""
    source, resized = np.asarray(source, np.int64), np.asarray(resized, np.int64)
    # torchvision's centre crop: round((resized - crop) / 2) (half to even, as NumPy rounds),
    # or, when the image is smaller, padding of (crop - resized) // 2 before it.
    offset = np.where(resized < crop, -((crop - resized) // 2), np.round((resized - crop) / 2))
    low = np.maximum(0, low + offset)
    high = np.minimum(resized, high + offset)
    scale = source / resized
    reach = support * np.maximum(1.0, scale)
    first = np.maximum(0, np.floor((low + 0.5) * scale - reach))
    last = np.minimum(source, np.ceil((high - 0.5) * scale + reach))
    empty = high <= low
    return np.where(empty, 0, first).astype(np.int64), np.where(empty, 0, last).astype(np.int64)

"""What a network sees of an image: torchvision's evaluation transform, kept bounded.

The transform is the one published with the network's ImageNet weights (resize the shorter side,
centre crop, normalise), so predictions match torchvision's. Two things are added: the cropped
image is kept as ``view``, pixel for pixel what the model saw before normalisation, so that
overlays line up; and the longer side of the resized image is bounded, so that a 4000×8 strip
becomes a thin band in the crop (padded with black, as torchvision pads) instead of a
128000-pixel-wide intermediate image.

A fine-tuned network may have been trained with its own mean, std and input size, and on
grey-scale images: ``customised`` makes that transform from the values a user gives or the
checkpoint stores, and a one-channel transform converts the image as Pillow's ``convert("L")``
does before resizing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image

# The resized image's longer side is at most this many times its shorter side's target length:
# panoramas up to 16:1 are preprocessed exactly as torchvision does; only thinner strips shrink.
MAX_ASPECT = 16
MIN_SIZE, MAX_SIZE = 8, 4096  # pixels: the resize and crop a network may ask for
DEFAULT_SOURCE = "torchvision's ImageNet transform"


class PreprocessingError(ValueError):
    """Preprocessing values that cannot be used; the message is one line naming them and why."""


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, centre crop ``crop``×``crop``, normalise.

    Attributes:
        resize: pixels of the shorter side after resizing.
        crop: pixels of the side of the square centre crop: the model input's size.
        mean, std: per input channel, in [0, 1] pixel units (``channels`` values each).
        interpolation: the resize's, a ``torchvision.transforms.InterpolationMode`` value.
        channels: 3 (RGB) or 1 (grey-scale: the image is converted as Pillow's
            ``convert("L")`` does, ITU-R 601-2 luma, before resizing).
        source: where the values come from, in words (for the status bar and metadata).
    """

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    channels: int = 3
    # Where the values come from: those named in ``given`` were given by the user, those in
    # ``stored`` by the checkpoint (``"mean"``, ``"std"``, ``"crop"``, ``"resize"``);
    # ``averaged``: a one-channel network's mean and std are ImageNet's averaged over RGB.
    given: tuple[str, ...] = field(default=(), compare=False)
    stored: tuple[str, ...] = field(default=(), compare=False)
    averaged: bool = field(default=False, compare=False)

    @property
    def source(self) -> str:
        """Where the values come from, in words (for the status bar and metadata), e.g.
        ``"mean given; crop from the checkpoint; the rest torchvision's ImageNet transform"``."""
        said = [f"{name} given" for name in self.given]
        said += [f"{name} from the checkpoint" for name in self.stored]
        if self.averaged:
            said.append("mean and std: ImageNet's averaged over RGB")
        return "; ".join([*said, f"the rest {DEFAULT_SOURCE}"]) if said else DEFAULT_SOURCE

    @classmethod
    def for_weights(cls, weights: object) -> Preprocessing:
        """The evaluation transform published with torchvision ``weights`` (``.transforms()``)."""
        transform = weights.transforms()  # type: ignore[attr-defined]
        return cls(
            resize=transform.resize_size[0],
            crop=transform.crop_size[0],
            mean=tuple(transform.mean),
            std=tuple(transform.std),
            interpolation=transform.interpolation.value,
        )

    def customised(
        self,
        *,
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        resize: int | None = None,
        crop: int | None = None,
        stored: Mapping[str, object] | None = None,
    ) -> Preprocessing:
        """This transform with a network's own values: those given here first, then those
        ``stored`` in its checkpoint (``mean``, ``std``, ``input_size``), else this one's.

        A one-channel network without a mean or std of its own takes the average of this
        transform's three. A crop without a resize keeps this transform's ratio of the two
        (256 for 224); ``input_size`` is ``S``, ``(H, W)`` or ``(C, H, W)`` with H == W.

        Raises:
            PreprocessingError: values that do not fit the network (a count other than
                ``channels``, a std of 0, a size outside 8–4096 pixels), one line each.
        """
        stored = stored or {}
        given_names: list[str] = []
        stored_names: list[str] = []

        def pick(name: str, given: object, from_checkpoint: object) -> object:
            if given is not None:
                given_names.append(name)
                return given
            if from_checkpoint is not None:
                stored_names.append(name)
                return from_checkpoint
            return None

        stored_crop = _stored_size(stored.get("input_size"))
        mean_values = pick("mean", mean, stored.get("mean"))
        std_values = pick("std", std, stored.get("std"))
        crop = pick("crop", crop, stored_crop)
        resize = pick("resize", resize, None)
        new_mean = _values("mean", mean_values, channels, self.mean)
        new_std = _values("std", std_values, channels, self.std)
        if any(value <= 0 for value in new_std):
            raise PreprocessingError(f"std {_numbers(new_std)}: every value must be above 0")
        new_crop = _size("crop", crop) if crop is not None else self.crop
        if resize is not None:
            new_resize = _size("resize", resize)
        elif crop is not None:
            new_resize = round(new_crop * self.resize / self.crop)
        else:
            new_resize = self.resize
        return dataclasses.replace(
            self,
            resize=new_resize,
            crop=new_crop,
            mean=new_mean,
            std=new_std,
            channels=channels,
            given=tuple(given_names),
            stored=tuple(stored_names),
            averaged=channels != len(self.mean) and mean_values is None,
        )

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The model input ``(1, channels, crop, crop)`` and the RGB ``view`` it was made from
        (for a one-channel network, the grey image as RGB)."""
        pixels, view = self.cropped(image)
        return self.normalized(pixels).unsqueeze(0), view

    def cropped(self, image: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The resized and cropped image as uint8 ``(channels, crop, crop)`` — a quarter of the
        model input's bytes, to move between processes and to the device — and the RGB view.
        ``normalized`` makes the model input from it."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F  # noqa: N812

        if self.channels == 1:
            image = image.convert("L")
        resized = F.resize(
            image,
            list(self.resized_size(*image.size)),
            interpolation=InterpolationMode(self.interpolation),
            antialias=True,
        )
        view = F.center_crop(resized, [self.crop, self.crop])
        return F.pil_to_tensor(view), view.convert("RGB") if view.mode != "RGB" else view

    def normalized(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels ``(..., channels, H, W)`` on any device → the float32 model input
        (scaled to [0, 1], then normalised with ``mean`` and ``std``)."""
        from torchvision.transforms import functional as F  # noqa: N812

        x = F.convert_image_dtype(pixels, torch.float)
        return F.normalize(x, mean=list(self.mean), std=list(self.std))

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(height, width)`` after the resize: torchvision's rounding, longer side bounded."""
        short, long = sorted((width, height))
        new_short, new_long = self.resize, int(self.resize * long / short)
        if new_long > MAX_ASPECT * self.resize:
            new_long = MAX_ASPECT * self.resize
            new_short = max(1, int(new_long * short / long))
        return (new_short, new_long) if height <= width else (new_long, new_short)

    def describe(self) -> str:
        """One line for file metadata and the status bar; where the values come from is said
        when they are not torchvision's ImageNet transform."""
        grey = "grey-scale (Pillow's convert('L')), " if self.channels == 1 else ""
        text = (
            f"{grey}resize shorter side to {self.resize} ({self.interpolation}, antialiased), "
            f"centre crop {self.crop}×{self.crop}, normalise mean "
            f"{_numbers(self.mean)} std {_numbers(self.std)}"
        )
        return text if self.source == DEFAULT_SOURCE else f"{text} ({self.source})"


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value:g}" for value in values) + ")"


def _values(
    name: str, values: object, channels: int, default: tuple[float, ...]
) -> tuple[float, ...]:
    """``values`` (a sequence or tensor of numbers) as ``channels`` floats; None: ``default``,
    averaged for one channel."""
    if values is None:
        if channels == len(default):
            return default
        return (sum(default) / len(default),) * channels
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    if isinstance(values, (int, float)):
        values = [values]
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise PreprocessingError(f"{name} {values!r}: not a list of numbers")
    try:
        numbers = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        raise PreprocessingError(f"{name} {list(values)!r}: not a list of numbers") from None
    if not all(math.isfinite(value) for value in numbers):
        raise PreprocessingError(f"{name} {_numbers(numbers)}: not finite")
    if len(numbers) != channels:
        given = f"{len(numbers)} value" + ("" if len(numbers) == 1 else "s")
        takes = "1 input channel (grey-scale)" if channels == 1 else f"{channels} input channels"
        raise PreprocessingError(
            f"{name} {_numbers(numbers)} has {given}, but the network takes {takes}"
        )
    return numbers


def _size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise PreprocessingError(f"{name} {value!r}: not a whole number of pixels")
    if not MIN_SIZE <= int(value) <= MAX_SIZE:
        raise PreprocessingError(f"{name} {int(value)}: must be {MIN_SIZE} to {MAX_SIZE} pixels")
    return int(value)


def _stored_size(value: object) -> int | None:
    """A checkpoint's ``input_size``: ``S``, ``(H, W)`` or ``(C, H, W)`` (timm), square."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    if isinstance(value, (int, float)):
        return value  # type: ignore[return-value]
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (2, 3):
        height, width = value[-2], value[-1]
        if height != width:
            raise PreprocessingError(
                f"input_size {tuple(value)} from the checkpoint is not square; fmviz crops "
                "squares: give the crop (--crop) instead"
            )
        return height
    raise PreprocessingError(f"input_size {value!r} from the checkpoint: not a size")

"""What a network sees of an image: torchvision's evaluation transform, kept bounded.

The transform is the one published with the network's ImageNet weights (resize the shorter side,
centre crop, normalise), so predictions match torchvision's. Two things are added: the cropped
image is kept as ``view``, pixel for pixel what the model saw before normalisation, so that
overlays line up; and the longer side of the resized image is bounded, so that a 4000×8 strip
becomes a thin band in the crop (padded with black, as torchvision pads) instead of a
128000-pixel-wide intermediate image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

# The resized image's longer side is at most this many times its shorter side's target length:
# panoramas up to 16:1 are preprocessed exactly as torchvision does; only thinner strips shrink.
MAX_ASPECT = 16


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, centre crop ``crop``×``crop``, normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"

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

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, Image.Image]:
        """The model input ``(1, 3, crop, crop)`` and the RGB ``view`` it was made from."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F  # noqa: N812

        resized = F.resize(
            image,
            list(self.resized_size(*image.size)),
            interpolation=InterpolationMode(self.interpolation),
            antialias=True,
        )
        view = F.center_crop(resized, [self.crop, self.crop])
        pixels = F.convert_image_dtype(F.pil_to_tensor(view), torch.float)
        return F.normalize(pixels, mean=self.mean, std=self.std).unsqueeze(0), view

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(height, width)`` after the resize: torchvision's rounding, longer side bounded."""
        short, long = sorted((width, height))
        new_short, new_long = self.resize, int(self.resize * long / short)
        if new_long > MAX_ASPECT * self.resize:
            new_long = MAX_ASPECT * self.resize
            new_short = max(1, int(new_long * short / long))
        return (new_short, new_long) if height <= width else (new_long, new_short)

    def describe(self) -> str:
        """One line for file metadata."""
        return (
            f"resize shorter side to {self.resize} ({self.interpolation}, antialiased), "
            f"centre crop {self.crop}×{self.crop}, normalise mean "
            f"{_numbers(self.mean)} std {_numbers(self.std)}"
        )


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{value:g}" for value in values) + ")"

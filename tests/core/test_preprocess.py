"""Preprocessing: torchvision's evaluation transforms exactly, a view that lines up, bounded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from visualizer.core.preprocess import MAX_ASPECT, Preprocessing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Weights enum → (resize, crop) published with them.
WEIGHTS = {
    "ResNet101_Weights.IMAGENET1K_V2": (232, 224),
    "VGG16_Weights.IMAGENET1K_V1": (256, 224),
}
ORDINARY_SIZES = [(300, 200), (200, 300), (224, 224), (13, 17), (640, 480), (1000, 251), (1, 1)]
# Phone panoramas: still exactly torchvision's preprocessing.
PANORAMA_SIZES = [(1100, 256), (3000, 600), (600, 3000), (1600, 100)]
EXTREME_SIZES = [(4000, 8), (8, 4000), (1, 4000), (4000, 1)]
BAND = (200, 100, 50)


def weights_enum(name: str) -> Any:
    import torchvision

    enum, member = name.split(".")
    return getattr(getattr(torchvision.models, enum), member)


@pytest.fixture(scope="module", params=list(WEIGHTS))
def weights(request: pytest.FixtureRequest) -> Any:
    return weights_enum(request.param)


def published(weights: Any) -> tuple[int, int]:
    return WEIGHTS[f"{type(weights).__name__}.{weights.name}"]


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def normalised(view: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``view`` as a model input, computed by hand: [0, 1], minus the mean, over the std."""
    pixels = torch.from_numpy(np.array(view)).permute(2, 0, 1).float() / 255
    mean_, std_ = (torch.tensor(values).view(3, 1, 1) for values in (mean, std))
    return ((pixels - mean_) / std_).unsqueeze(0)


@pytest.fixture
def resize_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[int], tuple[int, int]]]:
    """Every call of torchvision's resize: the ``[height, width]`` asked for, the size made."""
    from torchvision.transforms import functional

    calls: list[tuple[list[int], tuple[int, int]]] = []
    real_resize: Callable[..., Any] = functional.resize

    def spy(image: Any, size: list[int], *args: Any, **kwargs: Any) -> Any:
        resized = real_resize(image, size, *args, **kwargs)
        calls.append((list(size), resized.size))
        return resized

    monkeypatch.setattr(functional, "resize", spy)
    return calls


def test_for_weights_reads_the_published_transform(weights: Any) -> None:
    preprocessing = Preprocessing.for_weights(weights)
    resize, crop = published(weights)
    assert preprocessing == Preprocessing(resize, crop, IMAGENET_MEAN, IMAGENET_STD, "bilinear")


@pytest.mark.parametrize("size", ORDINARY_SIZES + PANORAMA_SIZES)
def test_input_is_torchvisions(weights: Any, size: tuple[int, int]) -> None:
    image = noise(*size)
    model_input, _ = Preprocessing.for_weights(weights)(image)
    expected = weights.transforms()(image).unsqueeze(0)
    assert model_input.shape == (1, 3, 224, 224)
    assert model_input.dtype == torch.float32
    assert torch.equal(model_input, expected)


@pytest.mark.parametrize("size", ORDINARY_SIZES + EXTREME_SIZES)
def test_view_is_the_input_before_normalising(weights: Any, size: tuple[int, int]) -> None:
    preprocessing = Preprocessing.for_weights(weights)
    model_input, view = preprocessing(noise(*size))
    assert view.mode == "RGB"
    assert view.size == (224, 224)
    assert torch.equal(model_input, normalised(view, preprocessing.mean, preprocessing.std))


@pytest.mark.parametrize("size", ORDINARY_SIZES)
def test_view_is_torchvisions_crop(weights: Any, size: tuple[int, int]) -> None:
    """Pixel for pixel the centre crop torchvision takes, so overlays line up with the image."""
    from torchvision.transforms import functional

    image = noise(*size)
    resize, crop = published(weights)
    expected = functional.center_crop(functional.resize(image, [resize]), [crop, crop])
    _, view = Preprocessing.for_weights(weights)(image)
    assert np.array_equal(np.asarray(view), np.asarray(expected))


@pytest.mark.parametrize("size", EXTREME_SIZES)
def test_extreme_aspect_ratios_stay_bounded(
    weights: Any, resize_calls: list[tuple[list[int], tuple[int, int]]], size: tuple[int, int]
) -> None:
    preprocessing = Preprocessing.for_weights(weights)
    model_input, view = preprocessing(Image.new("RGB", size, BAND))
    assert model_input.shape == (1, 3, 224, 224)
    assert view.size == (224, 224)
    ((asked, made),) = resize_calls
    bound = MAX_ASPECT * preprocessing.resize
    assert max(asked) == bound
    assert max(made) == bound
    assert made == (asked[1], asked[0])  # PIL sizes are (width, height)
    assert list(preprocessing.resized_size(*size)) == asked


@pytest.mark.parametrize("size", EXTREME_SIZES)
def test_extreme_aspect_ratios_become_a_centred_band(weights: Any, size: tuple[int, int]) -> None:
    """A thin strip is shrunk whole into the crop, padded with black on both sides, as torchvision
    pads a crop larger than its image."""
    preprocessing = Preprocessing.for_weights(weights)
    _, view = preprocessing(Image.new("RGB", size, BAND))
    height, width = preprocessing.resized_size(*size)
    thickness = min(height, width)
    first = (224 - thickness) // 2
    pixels = np.asarray(view)
    band = (
        pixels[first : first + thickness]
        if width > height
        else pixels[:, first : first + thickness]
    )
    assert (band == BAND).all()
    outside = np.ones(224, dtype=bool)
    outside[first : first + thickness] = False
    padding = pixels[outside] if width > height else pixels[:, outside]
    assert (padding == 0).all()


# (resize, width, height) → (height, width) after the resize
RESIZED_SIZES = [
    (256, 300, 200, (256, 384)),
    (256, 200, 300, (384, 256)),
    (256, 224, 224, (256, 256)),
    (256, 1024, 256, (256, 1024)),  # a 4:1 panorama: exactly torchvision's size
    (256, 4096, 256, (256, 4096)),  # exactly MAX_ASPECT: not bounded
    (256, 4097, 256, (255, 4096)),  # just beyond: the longer side is held at 16 × 256
    (256, 4000, 8, (8, 4096)),
    (256, 8, 4000, (4096, 8)),
    (256, 4000, 1, (1, 4096)),
    (256, 1, 4000, (4096, 1)),
    (232, 4000, 8, (7, 3712)),
    (232, 8, 4000, (3712, 7)),
    (232, 100000, 1, (1, 3712)),
]


@pytest.mark.parametrize(("resize", "width", "height", "expected"), RESIZED_SIZES)
def test_resized_size(resize: int, width: int, height: int, expected: tuple[int, int]) -> None:
    preprocessing = Preprocessing(resize, 224, IMAGENET_MEAN, IMAGENET_STD)
    assert preprocessing.resized_size(width, height) == expected


@pytest.mark.parametrize("resize", [232, 256])
@pytest.mark.parametrize(
    "size",
    [*ORDINARY_SIZES, (7, 3), (3, 7), (999, 1000), (1000, 999), (333, 1000), (1023, 256), (17, 13)],
)
def test_resized_size_rounds_as_torchvision(resize: int, size: tuple[int, int]) -> None:
    from torchvision.transforms import functional

    width, height = functional.resize(Image.new("RGB", size), [resize]).size
    preprocessing = Preprocessing(resize, 224, IMAGENET_MEAN, IMAGENET_STD)
    assert preprocessing.resized_size(*size) == (height, width)


def test_describe_is_one_line(weights: Any) -> None:
    resize, crop = published(weights)
    text = Preprocessing.for_weights(weights).describe()
    assert text == (
        f"resize shorter side to {resize} (bilinear, antialiased), centre crop {crop}×{crop}, "
        "normalise mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225)"
    )

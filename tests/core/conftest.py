"""Analyzers with random weights (the session's shared ones, tests/conftest.py), and
torchvision's twins holding the same weights, one at a time, let go after each module's last
test that uses them."""

from __future__ import annotations

import gc
from collections.abc import Callable

import numpy as np
import pytest
import torchvision
from PIL import Image
from torch import nn

from visualizer.core import Analyzer

AnalyzerOf = Callable[[str], Analyzer]


def gradient_image(width: int = 96, height: int = 72, seed: int = 0) -> Image.Image:
    """A small RGB picture with structure in it: smooth ramps plus a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 128 + 60 * np.sin(x / 5)],
        axis=-1,
    )
    pixels += rng.normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module", params=["vgg16", "resnet101"])
def arch(request: pytest.FixtureRequest) -> str:
    """Module scope: pytest groups a module's tests by architecture, and runs the modules of
    this folder and of tests/models one after the other (with a session-wide parameter it
    would interleave them, keeping both folders' reference networks alive at once)."""
    return request.param


@pytest.fixture(scope="session")
def analyzer_of(networks, device: str) -> AnalyzerOf:
    """The shared analyzer of an architecture, random weights, on the test device."""
    return lambda arch: networks.analyzer(arch, device)


@pytest.fixture(scope="session")
def twin_of(
    analyzer_of: AnalyzerOf, release_after_last_use, request: pytest.FixtureRequest
) -> Callable[[str], nn.Module]:
    """torchvision's own network holding the shared analyzer's weights, on the same device.

    One architecture at a time (the one held goes before another is built: the tests of a
    module are grouped by architecture), and let go after each module's last test that uses
    it: the modules in between (test_custom_network.py builds VGG16s of its own) would
    otherwise run with a VGG16 and a ResNet101 twin, 0.7 GB, held for nothing."""
    held: dict[str, nn.Module] = {}

    def build(arch: str) -> nn.Module:
        analyzer = analyzer_of(arch)
        twin = getattr(torchvision.models, arch)(weights=None)
        twin.load_state_dict(analyzer.model.state_dict())
        return twin.to(analyzer.device).eval()

    def twin_of(arch: str) -> nn.Module:
        if arch not in held:
            if held:
                held.clear()
                gc.collect()
            held[arch] = build(arch)
        return held[arch]

    release_after_last_use(request.fixturename, held.clear, each_module=True)
    return twin_of


@pytest.fixture(scope="session")
def twin_stage_module(twin_of: Callable[[str], nn.Module], analyzer_of: AnalyzerOf):
    """``(arch, stage)`` → the module of torchvision's twin at the name of our stage module."""

    def find(arch: str, stage: str) -> nn.Module:
        analyzer = analyzer_of(arch)
        names = {id(module): name for name, module in analyzer.model.named_modules()}
        return dict(twin_of(arch).named_modules())[names[id(analyzer.model.stages[stage])]]

    return find


@pytest.fixture(scope="session")
def hooks_left() -> Callable[[nn.Module], int]:
    """Hooks (forward, pre-forward, backward) and forward wrappers left on a network's modules."""
    return lambda model: sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + ("forward" in m.__dict__)
        for m in model.modules()
    )


@pytest.fixture(scope="session")
def make_image() -> Callable[..., Image.Image]:
    return gradient_image


@pytest.fixture
def image() -> Image.Image:
    return gradient_image()

"""torchvision's own networks, the independent reference for ours, and ours: the session's
shared random-weight networks (tests/conftest.py); the references are built once and let go
after the last test that uses them."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from models import build_model

TORCHVISION_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "vgg16": torchvision.models.vgg16,
    "resnet101": torchvision.models.resnet101,
}
ModelOf = Callable[[str], nn.Module]


def seeded_torchvision_model(arch: str, seed: int) -> nn.Module:
    """torchvision's ``arch`` initialised under ``seed``, leaving the global generator alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TORCHVISION_BUILDERS[arch]().eval()


class OneAtATime:
    """``build(arch)``, cached for one architecture at a time: the one held goes before
    another is built (a module's tests are grouped by architecture; a VGG16 is 0.53 GB)."""

    def __init__(self, build: ModelOf) -> None:
        self._build = build
        self._held: dict[str, nn.Module] = {}

    def __call__(self, arch: str) -> nn.Module:
        if arch not in self._held:
            if self._held:
                self.clear()
                gc.collect()
            self._held[arch] = self._build(arch)
        return self._held[arch]

    def clear(self) -> None:
        self._held.clear()


@pytest.fixture(scope="module", params=sorted(TORCHVISION_BUILDERS))
def arch(request: pytest.FixtureRequest) -> str:
    """Module scope: grouped by architecture within a module, not across folders (see
    tests/core/conftest.py)."""
    return request.param


@pytest.fixture(scope="session")
def torchvision_with_seed() -> Callable[[str, int], nn.Module]:
    return seeded_torchvision_model


@pytest.fixture(scope="session")
def torchvision_model(release_after_last_use, request: pytest.FixtureRequest) -> ModelOf:
    """torchvision's model of an architecture with seed 1 (unlike our seed-0 random weights),
    one architecture at a time; let go after each module's last test that uses it
    (test_weights.py asks for it once, at its end: its other tests build networks of their
    own meanwhile)."""
    cached = OneAtATime(lambda arch: seeded_torchvision_model(arch, seed=1))
    release_after_last_use(request.fixturename, cached.clear, each_module=True)
    return cached


@pytest.fixture(scope="session")
def random_model(networks) -> ModelOf:
    """Our model of an architecture with ``weights="random"``, on the CPU: the network the
    whole session shares, built once; do not modify it."""
    return networks.model


@pytest.fixture(scope="session")
def loaded_model(
    torchvision_model: ModelOf, release_after_last_use, request: pytest.FixtureRequest
) -> ModelOf:
    """Our model of an architecture holding the state dict of ``torchvision_model``, one
    architecture at a time; let go after the last test that uses it."""

    def build(arch: str) -> nn.Module:
        model = build_model(arch, "random")
        model.load_state_dict(torchvision_model(arch).state_dict(), strict=True)
        return model

    cached = OneAtATime(build)
    release_after_last_use(request.fixturename, cached.clear)
    return cached

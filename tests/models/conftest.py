"""torchvision's own networks, the independent reference for ours, and ours, built once."""

from __future__ import annotations

import functools
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


@pytest.fixture(scope="session", params=sorted(TORCHVISION_BUILDERS))
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def torchvision_with_seed() -> Callable[[str, int], nn.Module]:
    return seeded_torchvision_model


@pytest.fixture(scope="session")
def torchvision_model() -> ModelOf:
    """torchvision's model of an architecture with seed 1 (unlike our seed-0 random weights)."""
    return functools.cache(lambda arch: seeded_torchvision_model(arch, seed=1))


@pytest.fixture(scope="session")
def random_model() -> ModelOf:
    """Our model of an architecture with ``weights="random"``, built once; do not modify it."""
    return functools.cache(lambda arch: build_model(arch, "random"))


@pytest.fixture(scope="session")
def loaded_model(torchvision_model: ModelOf) -> ModelOf:
    """Our model of an architecture holding the state dict of ``torchvision_model``."""

    def build(arch: str) -> nn.Module:
        model = build_model(arch, "random")
        model.load_state_dict(torchvision_model(arch).state_dict(), strict=True)
        return model

    return functools.cache(build)

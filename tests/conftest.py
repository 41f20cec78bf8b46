"""Shared test set-up: headless Qt and the device the tests run their models on."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def device() -> str:
    """Where model computations run: ``FMVIZ_TEST_DEVICE`` (e.g. ``cuda``), the CPU by default."""
    name = os.environ.get("FMVIZ_TEST_DEVICE", "cpu")
    if name != "cpu":
        import torch

        if torch.device(name).type != "cuda" or not torch.cuda.is_available():
            pytest.fail(f"FMVIZ_TEST_DEVICE={name} is not available here")
    return name

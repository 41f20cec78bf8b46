"""Shared test set-up: headless Qt and the device the tests run their models on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

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
        # Exact comparisons with the references need full float32, not TF32 tensor cores.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return name


@pytest.fixture(scope="session")
def modules_after() -> Callable[[str], set[str]]:
    """The modules a fresh interpreter has loaded after running a statement."""

    def run(statement: str) -> set[str]:
        code = f"{statement}; import sys; print('\\n'.join(sys.modules))"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        return set(result.stdout.split())

    return run

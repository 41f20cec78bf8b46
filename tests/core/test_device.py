"""Choosing the device: auto picks CUDA, then MPS, then the CPU; absent devices are errors."""

from __future__ import annotations

import pytest
import torch

from visualizer.core.device import (
    DeviceError,
    describe_device,
    is_device_failure,
    resolve_device,
)


def _pretend(monkeypatch: pytest.MonkeyPatch, *, cuda: int = 0, mps: bool = False) -> None:
    """Pretend this machine has ``cuda`` CUDA GPUs and Apple MPS or not."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(0, False, "cpu"), (0, True, "mps"), (1, True, "cuda:0"), (2, False, "cuda:0")],
)
def test_auto_prefers_cuda_then_mps_then_the_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: int, mps: bool, expected: str
) -> None:
    _pretend(monkeypatch, cuda=cuda, mps=mps)
    assert resolve_device("auto") == torch.device(expected)


def test_explicit_devices_that_exist_are_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend(monkeypatch, cuda=2, mps=True)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("mps")) == torch.device("mps")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda", r"^CUDA is not available: .*; use --device cpu or auto$"),
        ("cuda:0", r"^CUDA is not available"),
        ("mps", r"^Apple MPS is not available here; use --device cpu or auto$"),
    ],
)
def test_absent_devices_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    _pretend(monkeypatch, cuda=0, mps=False)
    with pytest.raises(DeviceError, match=message):
        resolve_device(name)


def test_a_gpu_index_beyond_the_last_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend(monkeypatch, cuda=1)
    with pytest.raises(DeviceError, match=r"there is no cuda:3: this machine has 1 CUDA GPU"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["tpu", "gpu", "", "cuda:x"])
def test_names_that_are_no_device_name_the_choices(name: str) -> None:
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda, mps"):
        resolve_device(name)


def test_the_cpu_is_described_with_its_threads() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == "CPU (2 threads)"
        torch.set_num_threads(1)
        assert describe_device(torch.device("cpu")) == "CPU (1 thread)"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("CUDA error: an illegal memory access was encountered"), True),
        (RuntimeError("MPS backend out of memory"), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("CUDA error"), False),
    ],
)
def test_device_failures_are_told_from_other_errors(error: Exception, expected: bool) -> None:
    assert is_device_failure(error) is expected

"""Choosing where the networks run: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from visualizer.choices import DEVICES as DEVICE_CHOICES


class DeviceError(RuntimeError):
    """The device asked for is not available on this machine; the message says which and why."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then the CPU; an explicit device must be present.

    Raises:
        DeviceError: the device is absent (no GPU, a build without CUDA, an index out of range).
        ValueError: ``name`` is not a device name at all.
    """
    if str(name) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"unknown device {str(name)!r}: choose one of {', '.join(DEVICE_CHOICES)}"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "no CUDA GPU was found" if torch.version.cuda else "this PyTorch has no CUDA"
            raise DeviceError(f"CUDA is not available: {why}; use --device cpu or auto")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"there is no {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise DeviceError("Apple MPS is not available here; use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"unsupported device {str(name)!r}: choose one of {', '.join(DEVICE_CHOICES)}"
        )
    return device


def describe_device(device: torch.device) -> str:
    """A short human name, e.g. ``"CUDA 0: NVIDIA H100"`` or ``"CPU (2 threads)"``."""
    if device.type == "cuda":
        return f"CUDA {device.index}: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


def is_device_failure(error: BaseException) -> bool:
    """True for an accelerator running out of memory or failing, where the CPU can take over."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("CUDA error" in text or "MPS backend" in text)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()

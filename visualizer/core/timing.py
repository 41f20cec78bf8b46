"""Per-layer timing of one forward pass, with hooks on every leaf module.

On the CPU each layer is timed with ``perf_counter``; on CUDA with a pair of CUDA events, read
after one synchronisation at the end (host timers around asynchronous kernels measure nothing).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

Timing = tuple[str, str, float]  # (layer name, module type, milliseconds)


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module without children, with its qualified name, in definition order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if next(module.children(), None) is None
    ]


class LayerTimer:
    """Times every leaf module of ``model`` while ``timing()`` is active."""

    def __init__(self, model: nn.Module) -> None:
        self._leaves = leaf_modules(model)
        self._marks: list[tuple[int, object]] = []  # (leaf index, timestamp or CUDA event)

    @contextmanager
    def timing(self, device: torch.device) -> Iterator[list[Timing]]:
        """Hooks on every leaf for the duration; the yielded list is filled on exit."""
        self._marks.clear()
        mark = _cuda_mark(device) if device.type == "cuda" else time.perf_counter
        marks = self._marks
        handles = []
        try:
            for index, (_, module) in enumerate(self._leaves):
                handles.append(
                    module.register_forward_pre_hook(
                        lambda _m, _i, index=index: marks.append((index, mark()))
                    )
                )
                handles.append(
                    module.register_forward_hook(
                        lambda _m, _i, _o, index=index: marks.append((index, mark()))
                    )
                )
            timings: list[Timing] = []
            yield timings
        finally:
            for handle in handles:
                handle.remove()
        timings.extend(self._collect(device))
        marks.clear()

    def _collect(self, device: torch.device) -> list[Timing]:
        if device.type == "cuda" and self._marks:
            self._marks[-1][1].synchronize()  # type: ignore[attr-defined]
            elapsed = lambda start, end: start.elapsed_time(end)  # noqa: E731
        else:
            elapsed = lambda start, end: (end - start) * 1e3  # noqa: E731
        timings = []
        # Leaves never nest, so the marks come in (start, end) pairs of the same leaf.
        for (index, start), (_, end) in zip(self._marks[::2], self._marks[1::2], strict=True):
            name, module = self._leaves[index]
            timings.append((name, type(module).__name__, float(elapsed(start, end))))
        return timings


def _cuda_mark(device: torch.device):
    stream = torch.cuda.current_stream(device)

    def mark() -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        return event

    return mark

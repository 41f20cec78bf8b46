"""Per-layer timing of one forward pass: every leaf module, in execution order.

Each leaf's ``forward`` is wrapped for the duration of the pass (the wrapper lives in the
instance's ``__dict__`` and is removed afterwards, whatever happens). A wrapper costs about a
microsecond; forward hooks would send every module through PyTorch's slow call path, which
costs ResNet101 several percent of its forward time. On the CPU each layer is timed with
``perf_counter``; on CUDA (and Apple's MPS) with a pair of events, read after one
synchronisation at the end (host timers around asynchronous kernels measure nothing). The
events are kept and recorded again pass after pass, so a pass creates none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

Timing = tuple[str, str, float]  # (layer name, module type, milliseconds)
ASYNC_DEVICES = ("cuda", "mps")  # kernels run later than Python returns: time with events
_ABSENT = object()


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module without children, with its qualified name, in definition order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if next(module.children(), None) is None
    ]


class LayerTimer:
    """Times every leaf module of ``model`` while ``timing()`` is active (one pass at a time)."""

    def __init__(self, model: nn.Module) -> None:
        self._leaves = leaf_modules(model)
        self._clocks: dict[torch.device, _EventClock] = {}

    @contextmanager
    def timing(
        self, device: torch.device, shapes: dict[str, tuple[int, ...]] | None = None
    ) -> Iterator[list[Timing]]:
        """Wraps every leaf for the duration; the yielded list is filled on exit.

        ``shapes``, when given, receives each layer's output shape, by layer name.
        """
        marks: list[tuple[int, Any, Any, Any]] = []  # (leaf index, start, end, output shape)
        clock: Callable[[], Any] = time.perf_counter
        if device.type in ASYNC_DEVICES:
            clock = self._clocks.setdefault(device, _EventClock(device))
            clock.rewind()
        saved = [module.__dict__.get("forward", _ABSENT) for _, module in self._leaves]
        try:
            for index, (_, module) in enumerate(self._leaves):
                module.__dict__["forward"] = _timed(module.forward, index, clock, marks.append)
            timings: list[Timing] = []
            yield timings
        finally:
            for (_, module), previous in zip(self._leaves, saved, strict=True):
                if previous is _ABSENT:
                    module.__dict__.pop("forward", None)
                else:
                    module.__dict__["forward"] = previous
        timings.extend(self._collect(device, marks))
        if shapes is not None:
            shapes.update(
                (self._leaves[index][0], tuple(shape))
                for index, _, _, shape in marks
                if shape is not None
            )

    def _collect(
        self, device: torch.device, marks: list[tuple[int, Any, Any, Any]]
    ) -> list[Timing]:
        if device.type in ASYNC_DEVICES and marks:
            marks[-1][2].synchronize()
            elapsed = [start.elapsed_time(end) for _, start, end, _ in marks]
        else:
            elapsed = [(end - start) * 1e3 for _, start, end, _ in marks]
        return [
            (self._leaves[index][0], type(self._leaves[index][1]).__name__, float(ms))
            for (index, _, _, _), ms in zip(marks, elapsed, strict=True)
        ]


def _timed(
    forward: Callable[..., Any],
    index: int,
    clock: Callable[[], Any],
    record: Callable[[tuple[int, Any, Any, Any]], None],
) -> Callable[..., Any]:
    def timed_forward(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        output = forward(*args, **kwargs)
        record((index, start, clock(), getattr(output, "shape", None)))
        return output

    return timed_forward


class _EventClock:
    """Marks in the device's queue (CUDA or MPS events, read after the pass), from a pool that
    every pass records again: a pass's events are read before the next pass starts."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._events: list[Any] = []
        self._used = 0
        self._stream: Any = None

    def rewind(self) -> None:
        """Start a pass: reuse the events from the first."""
        self._used = 0
        if self._device.type == "cuda":
            self._stream = torch.cuda.current_stream(self._device)

    def __call__(self) -> Any:
        if self._used == len(self._events):
            if self._device.type == "mps":
                self._events.append(torch.mps.Event(enable_timing=True))
            else:
                self._events.append(torch.cuda.Event(enable_timing=True))
        event = self._events[self._used]
        self._used += 1
        if self._stream is None:
            event.record()
        else:
            event.record(self._stream)
        return event

"""Per-layer timing on an asynchronous device: events from a pool, one wait per pass.

No GPU here: ``torch.cuda``'s events and streams are replaced by fakes that keep a clock of
their own, so what is checked is the bookkeeping (which events, how many, read when), while
the network itself runs on the CPU.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from visualizer.core.timing import LayerTimer, leaf_modules

CUDA = torch.device("cuda")


class FakeEvent:
    """A CUDA event whose "time" is the order in which it was recorded."""

    created = 0
    ticks = itertools.count()

    def __init__(self, *, enable_timing: bool = False) -> None:
        assert enable_timing
        FakeEvent.created += 1
        self.time: int | None = None
        self.streams: list[object] = []
        self.waits = 0

    def record(self, stream: object = None) -> None:
        self.streams.append(stream)
        self.time = next(FakeEvent.ticks)

    def synchronize(self) -> None:
        self.waits += 1

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.time is not None
        assert end.time is not None
        return float(end.time - self.time)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> object:
    stream = object()
    FakeEvent.created = 0
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: stream)
    return stream


def small_network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU())
    ).eval()


def test_a_pass_creates_its_events_once_and_reads_them_after_one_wait(fake_cuda) -> None:
    network = small_network()
    timer = LayerTimer(network)
    x = torch.rand(1, 3, 12, 12)
    runs = []
    for _ in range(3):
        with timer.timing(CUDA) as timings, torch.inference_mode():
            network(x)
        runs.append(timings)
    leaves = len(leaf_modules(network))
    assert FakeEvent.created == 2 * leaves  # the first pass's events serve the later ones
    for timings in runs:
        assert [name for name, _, _ in timings] == ["0", "1", "2.0", "2.1"]
        # Start and end of each layer are consecutive records: one tick apart.
        assert [ms for _, _, ms in timings] == [1.0] * leaves


def test_events_are_recorded_on_the_current_stream_and_waited_on_once(fake_cuda) -> None:
    network = small_network()
    timer = LayerTimer(network)
    events: list[FakeEvent] = []
    original = FakeEvent.__init__

    def keep(self: FakeEvent, **kwargs: bool) -> None:
        original(self, **kwargs)
        events.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FakeEvent, "__init__", keep)
        for _ in range(2):
            with timer.timing(CUDA), torch.inference_mode():
                network(torch.rand(1, 3, 12, 12))
    assert all(event.streams == [fake_cuda, fake_cuda] for event in events)  # two passes
    assert sum(event.waits for event in events) == 2  # one wait a pass, on its last event
    assert events[-1].waits == 2


def test_a_failing_pass_leaves_no_wrapper_and_the_next_pass_is_whole(fake_cuda) -> None:
    network = small_network()
    timer = LayerTimer(network)
    with pytest.raises(RuntimeError), timer.timing(CUDA), torch.inference_mode():
        network(torch.rand(1, 5, 12, 12))  # wrong channel count: the first layer fails
    assert all("forward" not in module.__dict__ for _, module in leaf_modules(network))
    with timer.timing(CUDA) as timings, torch.inference_mode():
        network(torch.rand(1, 3, 12, 12))
    assert [ms for _, _, ms in timings] == [1.0] * 4

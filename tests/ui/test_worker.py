"""The worker: jobs off the event loop, latest request wins, nothing left running."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QTimer

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
ASTRONAUT = str(SAMPLES / "astronaut.jpg")
CHELSEA = str(SAMPLES / "chelsea.jpg")
COFFEE = str(SAMPLES / "coffee.jpg")
WAIT_S = 10  # for events between threads that take milliseconds


@pytest.fixture
def worker():
    from visualizer.ui.worker import Worker

    worker = Worker()
    replies = []
    worker.replied.connect(replies.append)
    worker.replies = replies  # what reached the main thread, in order
    yield worker
    worker.shutdown()


def test_overtaken_requests_are_skipped_and_only_the_latest_is_current(worker, qtbot) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []
    threads: set[str] = set()

    def job(number: int, block: bool = False):
        def run(_session) -> str:
            threads.add(threading.current_thread().name)
            ran.append(number)
            if block:
                started.set()
                assert release.wait(WAIT_S)
            return f"result {number}"

        return run

    first = worker.submit("view", job(1, block=True), context="one")
    assert started.wait(WAIT_S)  # the first is running: the others queue behind it
    middle = [worker.submit("view", job(number)) for number in (2, 3, 4)]
    last = worker.submit("view", job(5), context="five")
    assert first < middle[0] < middle[1] < middle[2] < last
    release.set()
    qtbot.waitUntil(lambda: len(worker.replies) == 5)

    assert ran == [1, 5]  # those overtaken before they started never ran
    assert all(name.startswith("fmviz-model") for name in threads)
    by_generation = {reply.generation: reply for reply in worker.replies}
    assert [reply.generation for reply in worker.replies] == [first, *middle, last]
    overtaken = by_generation[first]
    assert (overtaken.value, overtaken.skipped, overtaken.context) == ("result 1", False, "one")
    assert not worker.is_current(overtaken)  # finished, but stale: the window ignores it
    for generation in middle:
        reply = by_generation[generation]
        assert reply.skipped
        assert reply.value is None
        assert reply.error is None
        assert not worker.is_current(reply)
    latest = by_generation[last]
    assert (latest.value, latest.skipped, latest.context) == ("result 5", False, "five")
    assert worker.is_current(latest)


def test_cancel_drops_what_is_queued_of_those_kinds_only(worker, qtbot) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def job(name: str, block: bool = False):
        def run(_session) -> str:
            ran.append(name)
            if block:
                started.set()
                assert release.wait(WAIT_S)
            return name

        return run

    running = worker.submit("view:vgg16", job("running", block=True))
    assert started.wait(WAIT_S)
    queued = worker.submit("view:resnet101", job("queued"))
    kept = worker.submit("view", job("kept"))
    worker.cancel("view:vgg16", "view:resnet101")
    release.set()
    qtbot.waitUntil(lambda: len(worker.replies) == 3)

    assert ran == ["running", "kept"]
    by_generation = {reply.generation: reply for reply in worker.replies}
    assert not worker.is_current(by_generation[running])  # it ran, but its reply is stale
    assert by_generation[queued].skipped
    assert worker.is_current(by_generation[kept])
    assert by_generation[kept].value == "kept"


def test_kinds_and_lanes_do_not_overtake_each_other(worker, qtbot) -> None:
    release = threading.Event()
    worker.submit("model", lambda _s: release.wait(WAIT_S) and "network")
    loads = [
        worker.submit("load", lambda _s, n=n: f"image {n}", lane="files", latest_wins=False)
        for n in range(3)
    ]
    # The files lane does not wait for the model lane.
    qtbot.waitUntil(lambda: len(worker.replies) == 3)
    assert [reply.value for reply in worker.replies] == ["image 0", "image 1", "image 2"]
    assert all(worker.is_current(reply) for reply in worker.replies)
    # Another kind on the same lane waits its turn, and overtakes nothing.
    view = worker.submit("view", lambda _s: "view")
    release.set()
    qtbot.waitUntil(lambda: len(worker.replies) == 5)
    model, shown = worker.replies[3:]
    assert (model.kind, model.value, model.skipped) == ("model", "network", False)
    assert (shown.kind, shown.value, shown.generation) == ("view", "view", view)
    assert worker.is_current(model)
    assert worker.is_current(shown)
    assert loads == sorted(loads)


def test_a_failing_job_replies_with_one_line(worker, qtbot, capsys) -> None:
    from visualizer.core.images import ImageLoadError

    def expected(_session):
        raise ImageLoadError("photo.jpg: not an image\n(unrecognised data)")

    def unforeseen(_session):
        raise KeyError("layer4")

    worker.submit("load", expected, lane="files", latest_wins=False, context="photo.jpg")
    worker.submit("load", unforeseen, lane="files", latest_wins=False)
    qtbot.waitUntil(lambda: len(worker.replies) == 2)
    first, second = worker.replies
    assert first.error == "photo.jpg: not an image (unrecognised data)"
    assert first.context == "photo.jpg"
    assert second.error == "unexpected KeyError: 'layer4'"
    assert "KeyError: 'layer4'" in capsys.readouterr().err  # with its trace, for a bug report


def test_shutdown_drops_what_is_queued_and_waits_for_what_runs(worker, qtbot) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocking(_session) -> str:
        started.set()
        assert release.wait(WAIT_S)
        ran.append("running")
        return "late"

    worker.submit("export", blocking, latest_wins=False)
    worker.submit("export", lambda _s: ran.append("queued"), latest_wins=False)
    assert started.wait(WAIT_S)
    threading.Timer(0.2, release.set).start()
    worker.shutdown()
    assert ran == ["running"]
    assert not [t for t in threading.enumerate() if t.name.startswith("fmviz-")]
    assert worker.submit("view", lambda _s: ran.append("after")) == 0
    qtbot.wait(100)
    assert worker.replies == []  # nothing is delivered once shut down
    assert ran == ["running"]


def test_the_window_shows_only_the_latest_of_many_quick_requests(
    open_window, reference, qtbot
) -> None:
    window = open_window([ASTRONAUT, CHELSEA, COFFEE])
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 3)
    astronaut, chelsea, coffee = window.strip.keys()
    shown: list[tuple[int, object]] = []
    window.view_shown.connect(lambda: shown.append((window.data.picture, window.data.options)))
    replies = []
    window.worker.replied.connect(replies.append)

    # As fast as a user holding keys down: no reply is handled before the last request.
    for stage in ("C2", "C3", "C4", "C5", "C1"):
        window.set_options(stage=stage)
    window.select_picture(chelsea)
    window.set_options(stage="C3", colormap="gray")
    window.select_picture(coffee)
    window.set_options(order="mean")
    window.select_picture(astronaut)
    window.set_options(stage="C4")
    window.select_picture(coffee)
    requests = 12
    final = window.options

    qtbot.waitUntil(lambda: window.idle() and len(shown) == 1, timeout=60_000)
    qtbot.wait(300)  # a stale view arriving late would show here
    assert shown == [(coffee, final)]
    assert window.current == coffee
    assert window.data.options == final
    assert (final.stage, final.colormap, final.order) == ("C4", "gray", "mean")
    grid = reference.grid(COFFEE, "C4", colormap="gray", order="mean", aspect=final.aspect)
    np.testing.assert_array_equal(np.asarray(window.grid.image.image), grid.indices)
    np.testing.assert_allclose(window.data.cam, reference.cam(COFFEE, "C5"), atol=1e-5, rtol=0)
    assert window.windowTitle() == "fmviz — coffee.jpg — ResNet101"
    views = [reply for reply in replies if reply.kind == "view"]
    assert len(views) == requests  # one reply for each request…
    assert sum(reply.skipped for reply in views) >= requests - 2  # …most never computed
    assert [window.worker.is_current(reply) for reply in views] == [False] * 11 + [True]


def test_a_network_change_overtaken_by_another_shows_the_last(
    open_window, reference, shown_after, qtbot, analyzer_of
) -> None:
    analyzer_of("vgg16")  # built beforehand, shared
    window = open_window([CHELSEA])
    shown: list[str] = []
    window.view_shown.connect(lambda: shown.append(window.data.model.spec.model))
    window.set_spec(model="vgg16")
    window.set_options(stage="C2")
    window.set_spec(model="resnet101")
    qtbot.waitUntil(lambda: window.idle() and len(shown) == 1, timeout=60_000)
    qtbot.wait(300)
    assert shown == ["resnet101"]
    assert window.data.activation.shape == (256, 56, 56)
    np.testing.assert_array_equal(
        np.asarray(window.grid.image.image),
        reference.grid(CHELSEA, "C2", aspect=window.data.options.aspect).indices,
    )
    assert window.windowTitle() == "fmviz — chelsea.jpg — ResNet101"
    assert window.controls.model.currentData() == "resnet101"

    data = shown_after(window, lambda: window.set_spec(model="vgg16"))
    assert data.model.spec.model == "vgg16"
    assert data.activation.shape == (128, 112, 112)  # VGG16's C2
    assert window.windowTitle() == "fmviz — chelsea.jpg — VGG16"
    assert window.banner.messages[0].startswith("Untrained VGG16")


def test_the_event_loop_runs_while_the_worker_builds_and_analyses(open_window, qtbot) -> None:
    # A heartbeat: a 10 ms timer on the event loop, while the worker builds VGG16 and analyses
    # an image (seconds of model work). The timer must keep ticking all along. The bound on the
    # longest gap is generous (not the window's speed target): it would only be missed if model
    # work ran on the event loop, or held the GIL for long stretches.
    # Imports first: loading torch's libraries holds the GIL for half a second, in any thread;
    # that is start-up, not model work (and done long before in the app, and in this suite).
    import torchvision.models
    import torchvision.transforms  # noqa: F401

    import visualizer.core.export  # noqa: F401

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    window = open_window([CHELSEA], model="vgg16", fresh=True, wait=False)
    timer.start()
    start = time.perf_counter()
    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        pass
    first_view = time.perf_counter()
    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        window.set_options(stage="C5", target=281)  # a Grad-CAM pass through all of VGG16
    end = time.perf_counter()
    timer.stop()

    assert window.data.model.spec.model == "vgg16"
    assert window.data.activation.shape == (512, 14, 14)  # VGG16's C5
    assert first_view - start > 0.3, "too short to tell anything"
    during = [tick for tick in ticks if start <= tick <= end]
    gaps = np.diff([start, *during, end])
    assert len(during) > 20 * (end - start), f"{len(during)} ticks in {end - start:.1f} s"
    assert gaps.max() < 0.5, f"the event loop stalled for {gaps.max():.2f} s"


def test_closing_while_the_worker_is_busy_stops_it(open_window, qtbot) -> None:
    window = open_window([ASTRONAUT, CHELSEA, COFFEE], wait=False)
    qtbot.waitUntil(lambda: window.current is not None, timeout=60_000)  # a view is on its way
    assert not window.idle()
    shown: list[int] = []
    window.view_shown.connect(lambda: shown.append(1))
    window.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("fmviz-")]
    qtbot.wait(100)
    assert shown == []
    assert window.worker.submit("view", lambda _s: None) == 0

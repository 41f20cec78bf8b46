"""The window stays consistent: drops reach it anywhere, repeats are not added twice, the
newest drop is shown, closed banners stay closed, bad saved state is ignored, closing is quick."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from visualizer.ui.jobs import ModelSpec, Session
from visualizer.ui.worker import Worker

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
COFFEE = str(SAMPLES / "coffee.jpg")


def test_no_child_widget_takes_a_drop_from_the_window(open_window) -> None:
    window = open_window([CHELSEA])
    assert window.acceptDrops()
    takers = [child for child in window.findChildren(QWidget) if child.acceptDrops()]
    assert takers == []


def test_the_same_file_dropped_twice_at_once_is_added_once(open_window, qtbot) -> None:
    window = open_window([CHELSEA])
    window.add_files([COFFEE])
    window.add_files([COFFEE, str(SAMPLES)])  # before the first is read; the folder too
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 3, timeout=60_000)
    qtbot.wait(200)
    names = sorted(picture.name for picture in window.pictures.values())
    assert names == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]


def test_the_newest_drop_decides_what_is_shown(open_window, picture_file, qtbot) -> None:
    window = open_window([CHELSEA])
    folder = Path(picture_file("drop/a.png")).parent
    for index in range(6):
        picture_file(f"drop/p{index}.png", seed=index)
    window.add_files([str(folder)])
    window.add_files([COFFEE])  # dropped while the folder is being read
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 9, timeout=60_000)
    assert window.pictures[window.current].name == "coffee.jpg"
    assert window.data.picture == window.current


def test_a_closed_banner_stays_closed_for_the_same_network(open_window, shown_after) -> None:
    window = open_window([CHELSEA])
    assert window.banner.isVisibleTo(window)
    assert "Untrained ResNet101" in window.banner.messages[0]
    window.banner.clear()
    shown_after(window, lambda: window.set_options(stage="C3"))
    assert not window.banner.isVisibleTo(window)


def test_nonsense_saved_window_state_is_ignored(open_window, settings_path: str) -> None:
    saved = QSettings(settings_path, QSettings.Format.IniFormat)
    saved.setValue("state", "garbage")
    saved.setValue("geometry", "more garbage")
    saved.sync()
    window = open_window([CHELSEA])
    assert window.data is not None
    assert window.size().width() > 800


def test_quit_is_ctrl_q_everywhere(open_window) -> None:
    window = open_window([CHELSEA])
    [quit_action] = [a for a in window.findChildren(QAction) if a.text() == "&Quit"]
    assert quit_action.shortcut() == QKeySequence("Ctrl+Q")


def test_closing_does_not_wait_for_a_long_job(qtbot) -> None:
    worker = Worker()
    release = threading.Event()
    worker.submit("slow", lambda _session: release.wait(30))
    qtbot.wait(100)
    start = time.monotonic()
    worker.shutdown(wait_s=0.3)
    assert time.monotonic() - start < 2.0
    release.set()  # the abandoned job ends; its thread is a daemon and sends nothing
    qtbot.waitUntil(lambda: not [t for t in threading.enumerate() if t.name.startswith("fmviz-")])


def test_the_session_keeps_three_networks_at_most(monkeypatch, analyzer_of) -> None:
    """The pair compared and the network used alone before it; the least recently used goes.

    The CPU specs get the session's shared networks, as in the window tests (``open_window``);
    the ``auto`` ones are built: four networks built here made the suite's peak (1.4 GB at
    once: the fourth is built before the oldest goes)."""
    from visualizer.ui import jobs

    original = jobs._new_analyzer

    def new_analyzer(model: str, weights: str, device: str, **options):
        if weights == "random" and device == "cpu" and not options:
            return analyzer_of(model)
        return original(model, weights, device, **options)

    monkeypatch.setattr(jobs, "_new_analyzer", new_analyzer)
    session = Session()
    specs = [
        ModelSpec("resnet101", "random", "cpu"),
        ModelSpec("vgg16", "random", "cpu"),
        ModelSpec("resnet101", "random", "auto"),
        ModelSpec("vgg16", "random", "auto"),
    ]
    for spec in specs[:3]:
        session.model(spec)
    session.model(specs[0])  # used again: now the most recent
    session.model(specs[3])
    assert list(session._analyzers) == [specs[2], specs[0], specs[3]]

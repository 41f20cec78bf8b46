"""Fixtures of the window tests: windows on random-weight networks, independent references,
and checks after every test that nothing is left running and no dialog was opened.

Building a random ResNet101 takes seconds here, so windows share one network per model, the
session's (``networks``, tests/conftest.py; ``visualizer.ui.jobs._new_analyzer`` is replaced
by it); a window asked for with ``fresh=True`` builds its own, as the app does. The
references are computed with ``visualizer.core`` directly, outside the window and its worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shiboken6
from PIL import Image
from PySide6.QtCore import QEvent, QSettings, QThread, QThreadPool
from PySide6.QtWidgets import QApplication, QDialog, QFileDialog, QMessageBox

VIEW_TIMEOUT_MS = 60_000
SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
DIALOG_FUNCTIONS = {
    QMessageBox: ("about", "aboutQt", "critical", "information", "question", "warning", "exec"),
    QFileDialog: ("getOpenFileName", "getOpenFileNames", "getSaveFileName", "getExistingDirectory"),
    QDialog: ("exec",),
}


@pytest.fixture(scope="session")
def qapp_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Offscreen, a 1920×1200 screen: the platform's own, 800×800, is narrower than the
    window's minimum width, so that Qt would move and shrink a restored geometry to fit."""
    args = ["fmviz-tests"]
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        config = tmp_path_factory.mktemp("qpa") / "screens.json"
        screen = {"name": "screen", "x": 0, "y": 0, "width": 1920, "height": 1200}
        config.write_text(json.dumps({"screens": [{**screen, "logicalDpi": 96}]}))
        args += ["-platform", f"offscreen:configfile={config}"]
    return args


class SharedAnalyzers:
    """One random-weight CPU analyzer per model: the session's, built once (thread-safe)."""

    def __init__(self, networks: Any) -> None:
        self._networks = networks

    def __call__(self, model: str):
        return self._networks.analyzer(model, "cpu")


@pytest.fixture(scope="session")
def analyzer_of(networks) -> SharedAnalyzers:
    return SharedAnalyzers(networks)


@dataclass
class Reference:
    """Analyses and Grad-CAMs of files by ``visualizer.core`` alone, cached: those of the
    bundled samples for the session, those of a test's own files until the test ends (no
    later test reads them, and they would pile up: a VGG16 analysis is 25 MB)."""

    analyzer_of: SharedAnalyzers
    _results: dict = field(default_factory=dict)
    _cams: dict = field(default_factory=dict)

    def result(self, path: str, model: str = "resnet101"):
        key = (path, model)
        if key not in self._results:
            self._results[key] = self.analyzer_of(model).analyze(path)
        return self._results[key]

    def cam(self, path: str, stage: str, target: int | None = None, model: str = "resnet101"):
        """The Grad-CAM map (H, W) float32 of ``target`` (None: top-1) at ``stage``."""
        key = (path, model, stage, target)
        if key not in self._cams:
            result = self.result(path, model)
            self._cams[key] = self.analyzer_of(model).gradcam(result, stage, target)
        return self._cams[key]

    def grid(
        self,
        path: str,
        stage: str,
        model: str = "resnet101",
        *,
        aspect: float | None = None,
        **options: Any,
    ):
        """``render_grid`` of the stage, with ``options`` (colormap, scale, order, top);
        ``aspect``: laid out as on screen, the columns filling a pane of that width ÷ height
        (None: near-square, as exported)."""
        from visualizer.core.render import fitting_columns, render_grid

        activation = self.result(path, model).stages[stage]
        if aspect is not None:
            channels, height, width = activation.shape
            count = min(channels, options.get("top") or channels)
            options["columns"] = fitting_columns(count, height, width, aspect)
        return render_grid(activation, **options)

    def let_go_of_test_files(self) -> None:
        """Forget the analyses and maps of every file but the bundled samples."""
        samples = str(SAMPLES)
        for cache in (self._results, self._cams):
            for key in [key for key in cache if not str(key[0]).startswith(samples)]:
                del cache[key]


@pytest.fixture(scope="session")
def references(analyzer_of: SharedAnalyzers) -> Reference:
    return Reference(analyzer_of)


@pytest.fixture(scope="session")
def reference(references: Reference) -> Reference:
    return references


@pytest.fixture(autouse=True)
def _references_of_the_tests_files_let_go(references: Reference) -> Iterator[None]:
    yield
    references.let_go_of_test_files()


@pytest.fixture
def settings_path(tmp_path: Path) -> str:
    """An INI file of its own for each test, so nothing of the user's settings is read."""
    return str(tmp_path / "settings.ini")


@pytest.fixture
def dialogs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every modal dialog the code tried to open (none is shown: they would block)."""
    opened: list[str] = []
    for cls, names in DIALOG_FUNCTIONS.items():
        for name in names:

            def record(*_args: object, _name: str = f"{cls.__name__}.{name}", **_kw: object):
                opened.append(_name)
                return "" if "File" in _name else 0

            monkeypatch.setattr(cls, name, record)
    return opened


@pytest.fixture(autouse=True)
def _nothing_left_running(dialogs: list[str], qapp: QApplication) -> Iterator[None]:
    """After each test (and after its windows closed): no worker thread alive, no QThread
    running, no dialog opened. Then the closed windows are deleted."""
    let_go_of_deleted_windows()
    yield
    try:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("fmviz-")]
        assert alive == [], f"worker threads left running: {alive}"
        assert QThreadPool.globalInstance().activeThreadCount() == 0
        qthreads = [
            thread
            for widget in qapp.allWidgets()
            for thread in widget.findChildren(QThread)
            if thread.isRunning()
        ]
        assert qthreads == [], "a QThread is still running"
        assert dialogs == [], f"modal dialogs were opened: {dialogs}"
    finally:
        # A closed window is deleted later (deleteLater), by an event loop of the level it was
        # closed at, and none runs between tests: without this, every window stayed alive.
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


_CLOSED_WINDOWS: list[Any] = []


def let_go_of_deleted_windows() -> None:
    """Empties the Python side of the windows closed by earlier tests, once deleted.

    A deleted window's Python object stays alive all the same (measured: every one, to the
    end of the session; a lambda its state model's psygnal events hold refers to it), and with
    it its worker's session and the analyses it kept (25 MB for a VGG16 one): 0.46 GB more
    after test_compare.py's eleven tests. Done before the next test, once the last one's
    monkeypatches (some patch a window's methods) are undone.
    """
    for window in _CLOSED_WINDOWS:
        if not shiboken6.isValid(window):
            window.__dict__.clear()
    _CLOSED_WINDOWS.clear()


WindowFactory = Callable[..., Any]


@pytest.fixture
def open_window(
    qtbot, settings_path: str, monkeypatch: pytest.MonkeyPatch, analyzer_of, _nothing_left_running
) -> Iterator[WindowFactory]:
    """``open_window(paths, model=..., device=..., fresh=False, settings=None, wait=True,
    compare=False)``: a window made by ``create_window`` (random weights, the CPU unless
    ``device`` says otherwise; ``compare``: in compare mode, None: as the settings say),
    by default after its first complete view. ``fresh``: the window
    builds its own network (so do the test's later windows of that model). Every window is
    closed after the test, before the thread checks."""
    from visualizer.ui import jobs
    from visualizer.ui.app import create_window

    windows = []
    original = jobs._new_analyzer
    fresh_models: set[str] = set()

    def new_analyzer(model: str, weights: str, device: str, **options: Any):
        if weights == "random" and device == "cpu" and model not in fresh_models and not options:
            return analyzer_of(model)
        return original(model, weights, device, **options)

    monkeypatch.setattr(jobs, "_new_analyzer", new_analyzer)

    def make(
        paths: Sequence[str],
        *,
        model: str | None = "resnet101",
        device: str | None = "cpu",
        fresh: bool = False,
        settings: QSettings | None = None,
        wait: bool = True,
        compare: bool | None = False,
    ):
        if fresh and model is not None:
            fresh_models.add(model)
        chosen = settings or QSettings(settings_path, QSettings.Format.IniFormat)
        window = create_window(
            list(paths),
            model=model,
            weights="random",
            device=device,
            settings=chosen,
            compare=compare,
        )
        windows.append(window)
        if wait:
            qtbot.waitSignal(window.view_shown, timeout=VIEW_TIMEOUT_MS).wait()
        return window

    yield make
    for window in windows:
        window.close()
        window.deleteLater()
    _CLOSED_WINDOWS.extend(windows)
    windows.clear()


@pytest.fixture
def shown_after(qtbot) -> Callable[..., Any]:
    """``shown_after(window, action)``: do ``action``, wait for the next complete view, and
    return ``window.data``."""

    def run(window, action: Callable[[], object], timeout: int = VIEW_TIMEOUT_MS):
        with qtbot.waitSignal(window.view_shown, timeout=timeout):
            action()
        return window.data

    return run


@pytest.fixture
def picture_file(tmp_path: Path) -> Callable[..., str]:
    """``picture_file(name, width=64, height=48, seed=0)``: a small picture with structure in
    it, saved in the test's folder (the format from the name's ending)."""

    def save(name: str, width: int = 64, height: int = 48, seed: int = 0) -> str:
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:height, 0:width]
        pixels = np.stack([4 * x, 5 * y, (x * y) % 256], axis=-1)
        pixels = pixels + rng.integers(0, 30, (height, width, 3))
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path)
        return str(path)

    return save


COMMAND_TESTS = "test_window_command.py"
COMMAND_OPTIONS = ("--weights", "random", "--device", "cpu")


@dataclass
class Command:
    """``fmviz IMAGE --weights random --device cpu --screenshot OUT``, running in the background."""

    process: subprocess.Popen
    screenshot: Path
    stderr: Path
    started: float

    def finish(self, deadline_s: float) -> tuple[int | None, str]:
        """The exit status (None: still running ``deadline_s`` after the start, then killed)
        and what it wrote to stderr."""
        remaining = max(0.0, self.started + deadline_s - time.monotonic())
        try:
            status = self.process.wait(remaining)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            status = None
        return status, self.stderr.read_text(errors="replace")


def _start_command(
    folder: Path, name: str, image: str, options: tuple[str, ...] = COMMAND_OPTIONS
) -> Command:
    script = Path(sys.executable).with_name("fmviz")
    program = [str(script)] if script.is_file() else [sys.executable, "-m", "visualizer"]
    screenshot = folder / f"{name}.png"
    environment = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "FMVIZ_SETTINGS": str(folder / f"{name}.ini"),
        "OMP_NUM_THREADS": "1",  # leave the other core to the tests running meanwhile
    }
    stderr = folder / f"{name}.err"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            [*program, image, *options, "--screenshot", str(screenshot)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=environment,
            cwd=folder,
        )
    return Command(process, screenshot, stderr, time.monotonic())


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="session", autouse=True)
def window_commands(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Command]]:
    """The app run from the command line, for the tests of COMMAND_TESTS: started with the
    first test of this folder, so that their tens of seconds pass while other tests run."""
    commands: dict[str, Command] = {}
    if any(item.path.name == COMMAND_TESTS for item in request.session.items):
        folder = tmp_path_factory.mktemp("command")
        broken = folder / "broken.jpg"
        broken.write_bytes(b"\xff\xd8\xff\xe0 a JPEG header, and nothing after it")
        commands["sample"] = _start_command(folder, "sample", str(SAMPLES / "chelsea.jpg"))
        commands["broken"] = _start_command(folder, "broken", str(broken))
        from tests.videos import write_shapes_video

        video = write_shapes_video(folder / "shapes.mp4", frames=60, size=(320, 240))
        recording = str(folder / "recorded.mp4")
        commands["live"] = _start_command(
            folder,
            "live",
            "--live",
            (str(video), "--record", recording, "--weights", "random", "--device", "cpu"),
        )
        if not _cuda_available():  # else its test is skipped
            # A device saved by a session on another machine (CUDA, missing here); the
            # command line names no device.
            saved = QSettings(str(folder / "saved-device.ini"), QSettings.Format.IniFormat)
            saved.setValue("device", "cuda")
            saved.sync()
            del saved
            commands["saved-device"] = _start_command(
                folder, "saved-device", str(SAMPLES / "chelsea.jpg"), ("--weights", "random")
            )
    yield commands
    for command in commands.values():
        if command.process.poll() is None:
            command.process.kill()
            command.process.wait()


SMALL_INPUT = 64  # pixels a side: the attribution methods of a ResNet101 take milliseconds


@pytest.fixture(scope="session")
def small_analyzer(networks):
    """The session's random ResNet101 on the CPU, with a 64×64 input (resize and crop 64)."""
    from visualizer.core.analysis import Analyzer

    return Analyzer(networks.model("resnet101"), device="cpu", resize=SMALL_INPUT, crop=SMALL_INPUT)


@pytest.fixture
def small_window(open_window, monkeypatch: pytest.MonkeyPatch, small_analyzer) -> WindowFactory:
    """``open_window``, whose windows use ``small_analyzer`` for every network asked for."""
    from visualizer.ui import jobs

    monkeypatch.setattr(jobs, "_new_analyzer", lambda *_args, **_options: small_analyzer)
    return open_window

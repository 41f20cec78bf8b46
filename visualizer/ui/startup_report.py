"""For ``fmviz bench --startup``: when the window was first painted and when its first complete
view was on screen; then, while the network runs behind the window (the other stages, another
class, another image, the other network), the longest the event loop went unserved. Written
as JSON to the file ``FMVIZ_STARTUP_REPORT`` names; the app then quits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication

from visualizer.choices import STAGES
from visualizer.ui.main_window import MainWindow

REPORT_VARIABLE = "FMVIZ_STARTUP_REPORT"
HEARTBEAT_MS = 5


class StartupReport(QObject):
    """Watches ``window`` from its creation through a short session (which analyses the second
    image of the strip, when there is one)."""

    def __init__(self, window: MainWindow, path: str) -> None:
        super().__init__(window)
        self.window, self.path = window, path
        self.times: dict[str, float] = {}
        self.longest_gap = 0.0
        self._last = time.perf_counter()
        self._heartbeat = QTimer(self)
        self._heartbeat.timeout.connect(self._beat)
        self._heartbeat.start(HEARTBEAT_MS)
        other = "vgg16" if window.spec.model == "resnet101" else "resnet101"
        self._steps: list[Callable[[], None]] = [
            *(lambda stage=stage: window.set_options(stage=stage) for stage in STAGES[1:]),
            lambda: window.set_options(target=1),
            self._next_image,
            lambda: window.set_spec(model=other),
        ]
        window.installEventFilter(self)
        window.view_shown.connect(self._view_shown)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if "window_shown" not in self.times and event.type() == QEvent.Type.Paint:
            self.times["window_shown"] = time.time()
        return False

    def _next_image(self) -> None:
        others = [key for key in self.window.pictures if key != self.window.current]
        if others:
            self.window.select_picture(others[0])
        else:
            self._view_shown()

    def _beat(self) -> None:
        now = time.perf_counter()
        self.longest_gap = max(self.longest_gap, now - self._last)
        self._last = now

    def _view_shown(self) -> None:
        self._beat()
        if "first_view" not in self.times:
            self.times["first_view"] = time.time()
            self.times["launch_stall_ms"] = self.longest_gap * 1e3
            self.longest_gap = 0.0
        if self._steps:
            QTimer.singleShot(0, self._steps.pop(0))
            return
        self._heartbeat.stop()
        self.times["longest_stall_ms"] = self.longest_gap * 1e3
        with open(self.path, "w", encoding="utf-8") as file:
            json.dump(self.times, file)
        QApplication.exit(0)

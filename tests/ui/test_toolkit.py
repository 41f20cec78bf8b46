"""The Qt binding itself: a defect there brings the whole app down, however right our code is."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal()


def test_emitting_a_signal_keeps_pythons_true_alive() -> None:
    """PySide6 6.12.0 drops a reference to ``True`` on every emit; on Python 3.10 and 3.11 the
    interpreter then aborts ("bool_dealloc") after a few thousand emits, which a window makes
    in minutes (every hover, zoom and worker reply). pyproject excludes that release."""
    emitter = _Emitter()
    before = sys.getrefcount(True)
    for _ in range(200):
        emitter.fired.emit()
    assert sys.getrefcount(True) >= before

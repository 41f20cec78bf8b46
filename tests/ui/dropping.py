"""What Qt does when files are dropped on the window, for the drop tests."""

from __future__ import annotations

import os
import urllib.parse

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent


def drop(window, paths: list[str]) -> None:
    """Drop ``paths`` on ``window``: their URLs, as a file manager writes them (the bytes of
    the name, percent-encoded)."""
    mime = QMimeData()
    mime.setUrls([file_url(path) for path in paths])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert event.isAccepted()


def file_url(path: str) -> QUrl:
    return QUrl.fromEncoded(b"file://" + urllib.parse.quote(os.fsencode(path)).encode("ascii"))

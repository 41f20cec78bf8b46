"""Lines across the top of the window: a warning banner and the one place errors show."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

MAX_KEPT = 50  # errors kept for the tooltip


class MessageBar(QWidget):
    """A dismissable coloured line; several messages at once show as one line and a count."""

    def __init__(self, kind: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(kind)  # "banner" or "errors": styled by the window's style sheet
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.messages: list[str] = []
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_message(self, text: str) -> None:
        """Show ``text`` alone."""
        self.messages = [text]
        self._refresh()

    def add(self, text: str) -> None:
        """Add ``text`` to what is shown: the latest, with a count of the others."""
        self.messages = [*self.messages, text][-MAX_KEPT:]
        self._refresh()

    def clear(self) -> None:
        """Hide the bar and forget its messages."""
        self.messages = []
        self.hide()

    def _refresh(self) -> None:
        if not self.messages:
            self.hide()
            return
        others = len(self.messages) - 1
        more = f"  (+{others} more: hover to see them)" if others else ""
        self.label.setText(self.messages[-1] + more)
        self.label.setToolTip("\n".join(self.messages))
        self.show()

"""The live view's bar: what is playing, its frame rates, and pause, step, snapshot, record."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QStyle, QToolButton, QWidget

# What the play button offers in each state: its text and Qt's standard icon.
PLAY_BUTTON = {
    "playing": ("Pause", QStyle.StandardPixmap.SP_MediaPause),
    "paused": ("Play", QStyle.StandardPixmap.SP_MediaPlay),
    "ended": ("Play again", QStyle.StandardPixmap.SP_BrowserReload),
}
RECORD_TIP = (
    "Write the live view (input, map, grid) to a video, and each analysed frame's top-5 to a "
    "CSV file beside it"
)


class LiveBar(QWidget):
    """A line across the window while a camera or a video plays (hidden otherwise)."""

    play_clicked = Signal()  # play, or play again once a video has ended
    pause_clicked = Signal()
    step_clicked = Signal()
    snapshot_clicked = Signal()
    record_toggled = Signal(bool)
    stop_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("live")  # styled by the window's style sheet
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.source = QLabel()
        self.source.setObjectName("liveSource")
        self.stats = QLabel()
        self.stats.setObjectName("liveStats")
        self.play = self._button("Pause", "Pause or play; paused, the frame shown stays",
                                 self._played)  # fmt: skip
        self.step = self._button("Step", "Pause, and analyse the next frame only",
                                 self.step_clicked.emit)  # fmt: skip
        self.step.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaSkipForward))
        self.snapshot = self._button(
            "Snapshot",
            "Add the frame shown to the image strip, for every view and export",
            self.snapshot_clicked.emit,
        )
        self.record = self._button(
            "● Record…",
            RECORD_TIP,
            lambda: self.record_toggled.emit(self.record.isChecked()),
        )
        self.record.setCheckable(True)
        stop = self._button("✕", "Stop the live view", self.stop_clicked.emit)
        stop.setAutoRaise(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 4, 2)
        layout.addWidget(QLabel("<b>Live</b>"))
        layout.addWidget(self.source)
        layout.addSpacing(12)
        layout.addWidget(self.stats, 1)
        for button in (self.play, self.step, self.snapshot, self.record, stop):
            layout.addWidget(button)
        self.set_state("playing")
        self.hide()

    def _button(self, text: str, tip: str, slot) -> QToolButton:
        button = QToolButton()
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.setText(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    def _played(self) -> None:
        (self.pause_clicked if self._state == "playing" else self.play_clicked).emit()

    def show_source(self, text: str) -> None:
        self.source.setText(text)
        self.set_state("playing")
        self.show()

    def set_state(self, state: str) -> None:
        """``"playing"``, ``"paused"`` or ``"ended"``: what the play button offers."""
        self._state = state
        text, icon = PLAY_BUTTON[state]
        self.play.setText(text)
        self.play.setIcon(self.style().standardIcon(icon))
        self.step.setEnabled(state != "ended")

    def set_recording(self, path: str | None) -> None:
        self.record.setChecked(path is not None)
        self.record.setText("■ Stop recording" if path else "● Record…")
        self.record.setToolTip(f"Recording to {path}: click to finish" if path else RECORD_TIP)

    def show_stats(self, text: str) -> None:
        self.stats.setText(text)

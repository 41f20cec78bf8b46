"""The stage's channel grid: zoomable and pannable, channel and value under the cursor."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QGraphicsRectItem, QLabel, QVBoxLayout, QWidget

from visualizer.ui.jobs import ViewData

HIGHLIGHT = "#ff3b30"
HINT = "Hover over a tile for its channel and value; click it to see it large."
HOVER_HINT = "Hover over a tile for its channel and value."


class GridView(QWidget):
    """A tile grid of every channel of one stage (pyqtgraph's fast image path)."""

    channel_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None, *, hint: str = HINT) -> None:
        super().__init__(parent)
        self._data: ViewData | None = None
        self._hint = hint
        self.readout = QLabel(hint)
        self.readout.setObjectName("readout")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = pg.GraphicsLayoutWidget()
        self.plot.setBackground("#1e1e1e")
        self.plot.ci.setContentsMargins(0, 0, 0, 0)
        self.box = self.plot.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        self.highlight = QGraphicsRectItem()
        pen = QPen(pg.mkColor(HIGHLIGHT))
        pen.setCosmetic(True)
        pen.setWidth(2)
        self.highlight.setPen(pen)
        self.highlight.setVisible(False)
        self.box.addItem(self.highlight)
        self.plot.scene().sigMouseMoved.connect(self._hovered)
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.readout)
        layout.addWidget(self.plot, 1)

    def show_data(self, data: ViewData) -> None:
        """Show ``data``'s grid; the zoom is kept when the grid keeps its size."""
        same_size = (
            self._data is not None and self._data.grid.indices.shape == data.grid.indices.shape
        )
        self._data = data
        # uint8 indices, explicit levels and a 256-entry table: pyqtgraph's fast path.
        self.image.setImage(data.grid.indices, levels=(0, 255), lut=data.grid.palette)
        self._left()
        if not same_size:
            self.box.autoRange(padding=0.01)

    def clear(self) -> None:
        """Show nothing (and read nothing under the cursor) until the next ``show_data``."""
        self._data = None
        self.image.clear()
        self._left()

    def channel_at(self, x: float, y: float) -> tuple[int, int, int] | None:
        """``(channel, row, column)`` inside its tile at grid pixel ``(x, y)``, or None."""
        if self._data is None:
            return None
        layout = self._data.grid.layout
        channel = layout.channel_at(int(np.floor(y)), int(np.floor(x)))
        if channel is None:
            return None
        top, left = layout.tile_origin(channel)
        return channel, int(np.floor(y)) - top, int(np.floor(x)) - left

    def _hovered(self, position: QPointF) -> None:
        if self._data is None or not self.box.sceneBoundingRect().contains(position):
            self._left()
            return
        point = self.box.mapSceneToView(position)
        found = self.channel_at(point.x(), point.y())
        if found is None:
            self._left()
            return
        channel, row, column = found
        value = float(self._data.activation[channel, row, column])
        layout = self._data.grid.layout
        stage = self._data.options.stage
        self.readout.setText(
            f"{stage} channel {channel} · row {row}, column {column} · activation {value:.4g}"
        )
        top, left = layout.tile_origin(channel)
        self.highlight.setRect(left, top, layout.tile_width, layout.tile_height)
        self.highlight.setVisible(True)

    def _left(self) -> None:
        """Nothing under the cursor: no highlight, and the readout says what to do."""
        self.highlight.setVisible(False)
        self.readout.setText(self._hint)

    def _clicked(self, event: object) -> None:
        if self._data is None or event.button() != Qt.MouseButton.LeftButton or event.double():
            return
        point = self.box.mapSceneToView(event.scenePos())
        found = self.channel_at(point.x(), point.y())
        if found is not None:
            self.channel_clicked.emit(found[0])

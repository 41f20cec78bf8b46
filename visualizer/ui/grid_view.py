"""The stage's channel grid: zoomable and pannable, channel and value under the cursor."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsPathItem,
    QGraphicsRectItem,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.jobs import ViewData

BACKGROUND = "#1e1e1e"
HIGHLIGHT = "#ff3b30"
# Below this many screen pixels a tile, gutter lines would cover the tiles: none are drawn.
SMALLEST_LINED_TILE = 3.0
RESIZE_SETTLE_MS = 150
HINT = "Hover over a tile for its channel and value; click it to see it large."
HOVER_HINT = "Hover over a tile for its channel and value."


class GridView(QWidget):
    """A tile grid of every channel of one stage (pyqtgraph's fast image path)."""

    channel_clicked = Signal(int)
    aspect_changed = Signal(float)  # the pane's width ÷ height, once a resize settles

    def __init__(self, parent: QWidget | None = None, *, hint: str = HINT) -> None:
        super().__init__(parent)
        self._data: ViewData | None = None
        self._hint = hint
        self.readout = QLabel(hint)
        self.readout.setObjectName("readout")
        self.readout.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = pg.GraphicsLayoutWidget()
        self.plot.setBackground(BACKGROUND)
        self.plot.ci.setContentsMargins(0, 0, 0, 0)
        self.box = self.plot.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        # Scaled down, an image drops whole rows and columns of pixels, and with them some of
        # the 1-pixel gutters: the tiles would seem to merge into blocks. The gutters are drawn
        # again as lines one screen pixel wide (a cosmetic pen), whatever the zoom.
        self.gutters = QGraphicsPathItem()
        self.box.addItem(self.gutters)
        # The empty slots after the last tile: the background, not a block of gutter colour.
        self.empty = QGraphicsRectItem()
        self.empty.setPen(QPen(Qt.PenStyle.NoPen))
        self.empty.setBrush(QBrush(pg.mkColor(BACKGROUND)))
        self.box.addItem(self.empty)
        self.box.sigTransformChanged.connect(self._zoomed)
        self._resized = QTimer(self)
        self._resized.setSingleShot(True)
        self._resized.setInterval(RESIZE_SETTLE_MS)
        self._resized.timeout.connect(lambda: self.aspect_changed.emit(self.aspect()))
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
        self._outline(data)
        self._left()
        if not same_size:
            self.box.autoRange(padding=0.01)
        self._zoomed()

    def clear(self) -> None:
        """Show nothing (and read nothing under the cursor) until the next ``show_data``."""
        self._data = None
        self.image.clear()
        self.gutters.setPath(QPainterPath())
        self.empty.setRect(QRectF())
        self._left()

    def aspect(self) -> float:
        """The grid pane's width ÷ height (1 before it has a size)."""
        size = self.plot.size()
        return size.width() / size.height() if size.height() > 0 and size.width() > 0 else 1.0

    def resizeEvent(self, event: object) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._resized.start()

    def _outline(self, data: ViewData) -> None:
        """The gutter lines between tiles, and a cover over the last row's empty slots."""
        layout = data.grid.layout
        height, width = layout.shape
        step_y, step_x = layout.tile_height + layout.gutter, layout.tile_width + layout.gutter
        middle = layout.gutter / 2
        gutter_colour = data.grid.palette[-1]  # the palette's last entry is the gutter's
        pen = QPen(pg.mkColor(tuple(int(v) for v in gutter_colour)))
        pen.setCosmetic(True)  # one screen pixel wide at any zoom
        pen.setWidth(1)
        self.gutters.setPen(pen)
        path = QPainterPath()
        for row in range(1, layout.rows):
            y = row * step_y - middle
            path.moveTo(0, y)
            path.lineTo(width, y)
        for column in range(1, layout.columns):
            x = column * step_x - middle
            path.moveTo(x, 0)
            path.lineTo(x, height)
        self.gutters.setPath(path)
        filled = len(layout.order) - (layout.rows - 1) * layout.columns
        if filled < layout.columns:
            top = (layout.rows - 1) * step_y - layout.gutter
            left = filled * step_x - layout.gutter
            self.empty.setRect(QRectF(left, top, width - left, height - top))
        else:
            self.empty.setRect(QRectF())

    def _zoomed(self) -> None:
        """Lines only while a tile is wide enough on screen to be seen between them."""
        if self._data is None:
            return
        pixel = self.box.viewPixelSize()[0]  # grid pixels per screen pixel
        tile = self._data.grid.layout.tile_width / pixel if pixel > 0 else 0.0
        self.gutters.setVisible(tile >= SMALLEST_LINED_TILE)

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
        stage = self._data.grid_name
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

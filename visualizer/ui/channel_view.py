"""One channel shown large, beside the input the network saw, and (with a dataset index open)
beside the dataset images that excite it most."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from visualizer.ui.atlas_view import AtlasPanel
from visualizer.ui.jobs import ViewData


class ChannelView(QWidget):
    """The input and one channel of the stage on screen, side by side; right of them, while a
    dataset index is open, the channel's top dataset images (``atlas``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.channel: int | None = None
        self.caption = QLabel("Click a tile in the grid to see its channel here.")
        self.caption.setObjectName("readout")
        self.plot = pg.GraphicsLayoutWidget()
        self.plot.setBackground("#1e1e1e")
        self.input_box = self.plot.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.channel_box = self.plot.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.input_image = pg.ImageItem(axisOrder="row-major")
        self.channel_image = pg.ImageItem(axisOrder="row-major")
        self.input_box.addItem(self.input_image)
        self.channel_box.addItem(self.channel_image)
        self.atlas = AtlasPanel()
        self.atlas.hide()  # until an index is open
        self._fit_pending = False  # the split is to be fitted once the tab is on screen
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.plot)
        self.split.addWidget(self.atlas)
        self.split.setStretchFactor(0, 2)
        self.split.setStretchFactor(1, 3)
        self.split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.split, 1)

    def show_atlas(self, shown: bool) -> None:
        """Show the dataset images' panel (an index is open) or not. Shown anew, it gets the
        room the two maps leave: each is square, as high as the pane."""
        if shown != self.atlas.isHidden():  # already as asked (seen or not: another tab)
            return
        self.atlas.setVisible(shown)
        self._fit_pending = shown
        self._fit_split()

    def _fit_split(self) -> None:
        """The room between the maps and the dataset images, once the tab has its size."""
        if not self._fit_pending or not self.isVisible() or self.split.width() <= 0:
            return
        self._fit_pending = False
        width = self.split.width()
        maps = min(int(width * 0.45), 2 * self.split.height() + 24)
        self.split.setSizes([maps, width - maps])

    def showEvent(self, event: object) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._fit_split()

    def show_channel(self, data: ViewData, channel: int) -> None:
        """Show ``channel`` of ``data``'s stage, stretched over the grid's colormap."""
        self.channel = channel
        values = np.ascontiguousarray(data.activation[channel], dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        self.input_image.setImage(data.view, levels=(0, 255))
        self.channel_image.setImage(
            values, levels=(low, high if high > low else low + 1.0), lut=data.channel_lut
        )
        self.input_box.autoRange(padding=0.0)
        self.channel_box.autoRange(padding=0.0)
        height, width = values.shape
        self.caption.setText(
            f"{data.grid_name} channel {channel} of {data.activation.shape[0]} · "
            f"{height}×{width} · min {low:.4g} · mean {float(values.mean()):.4g} · "
            f"max {high:.4g} · colormap {data.options.colormap}, its own min–max"
        )

    def clear(self) -> None:
        """Forget the channel (another image, network or stage)."""
        self.channel = None
        self.input_image.clear()
        self.channel_image.clear()
        self.caption.setText("Click a tile in the grid to see its channel here.")

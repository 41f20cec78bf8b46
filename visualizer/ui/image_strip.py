"""The strip of images the user added: thumbnails, one selected at a time."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

from visualizer.ui.jobs import THUMBNAIL_SIZE, Picture


class ImageStrip(QListWidget):
    """Thumbnails of the images added; selecting one analyses it."""

    picture_selected = Signal(int)  # Picture.key

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.TopToBottom)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.setGridSize(QSize(THUMBNAIL_SIZE + 24, THUMBNAIL_SIZE + 34))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setFixedWidth(THUMBNAIL_SIZE + 44)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # a name's end tells frames apart
        self.setToolTip("Drop images or folders anywhere on the window")
        self.currentItemChanged.connect(self._changed)

    def add_picture(self, picture: Picture) -> None:
        """Add a thumbnail of ``picture`` at the end."""
        height, width, _ = picture.thumbnail.shape
        image = QImage(
            picture.thumbnail.data, width, height, 3 * width, QImage.Format.Format_RGB888
        ).copy()  # a deep copy: the QImage must not share the numpy buffer
        item = QListWidgetItem(QIcon(QPixmap.fromImage(image)), _short(picture.label))
        item.setData(Qt.ItemDataRole.UserRole, picture.key)
        item.setToolTip(picture.where)
        self.addItem(item)

    def select(self, key: int) -> None:
        """Select the image with ``key``."""
        for row in range(self.count()):
            if self.item(row).data(Qt.ItemDataRole.UserRole) == key:
                self.setCurrentRow(row)
                return

    def keys(self) -> list[int]:
        """The keys of the images, in strip order."""
        return [self.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.count())]

    def _changed(self, current: QListWidgetItem | None, _previous: object) -> None:
        if current is not None:
            self.picture_selected.emit(current.data(Qt.ItemDataRole.UserRole))


def _short(name: str, limit: int = 16) -> str:
    """``name`` in at most ``limit`` characters, cut in the middle: names that differ at the
    end (``clip_frame00012``, ``clip_frame00012_2``, ``IMG_0412.jpg``) stay apart."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return name[:head] + "…" + name[len(name) - (limit - 1 - head) :]

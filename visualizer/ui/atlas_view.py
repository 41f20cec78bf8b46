"""The dataset index's answer for one channel: the images that excite it most, as patches
(each cropped to the receptive field of the channel's maximum), with rank, score and file name.
A click on a patch opens its image."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFontMetrics, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.atlas_jobs import PATCH_SIZE, Patch, Patches
from visualizer.ui.flow_layout import FlowLayout

TILE_WIDTH = PATCH_SIZE + 24  # pixels: a patch and its two lines of words


class PatchTile(QToolButton):
    """One patch: its picture, ``#rank · score`` and the file name under it; a click opens the
    image (``patch_clicked``)."""

    def __init__(self, patch: Patch | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.patch = patch
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        self.setIconSize(QSize(PATCH_SIZE, PATCH_SIZE))
        self.setFixedWidth(TILE_WIDTH)
        self.setAutoRaise(True)
        if patch is None:  # its pixels are on their way
            self.setText("loading…\n")
            self.setEnabled(False)
            self.setIcon(_blank())
            return
        name = QFontMetrics(self.font()).elidedText(
            patch.name, Qt.TextElideMode.ElideMiddle, TILE_WIDTH - 8
        )
        self.setText(f"#{patch.rank} · {patch.score:.4g}\n{name}")
        left, top, right, bottom = patch.box
        where = f"{patch.source}\nbox x {left}–{right}, y {top}–{bottom} (its own pixels)"
        if patch.pixels is None:
            self.setIcon(_blank())
            self.setEnabled(False)
            self.setToolTip(f"{where}\ncannot be read: {patch.error}")
            return
        height, width, _ = patch.pixels.shape
        image = QImage(patch.pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
        self.setIcon(QIcon(QPixmap.fromImage(image.copy())))  # a deep copy, off numpy's buffer
        self.setToolTip(f"{where}\nscore {patch.score:.6g}, rank {patch.rank}: click to open it")
        self.setCursor(Qt.CursorShape.PointingHandCursor)


def _blank() -> QIcon:
    pixmap = QPixmap(PATCH_SIZE, PATCH_SIZE)
    pixmap.fill(Qt.GlobalColor.lightGray)
    return QIcon(pixmap)


class AtlasPanel(QWidget):
    """The channel's top images from the open dataset index, or a line saying why none are
    shown; a button exports them as an annotated PNG."""

    patch_clicked = Signal(str)  # the source image of the patch clicked
    export_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tiles: list[PatchTile] = []
        self.shown: Patches | None = None  # the patches on screen
        self.title = QLabel()
        self.title.setObjectName("panelTitle")
        self.export_button = QPushButton("Export atlas PNG…")
        self.export_button.setToolTip(
            "This channel's top dataset images, with rank, score and file name, beside its map "
            "for the image shown, as an annotated PNG"
        )
        self.export_button.clicked.connect(self.export_requested)
        self.statistics = QLabel()
        self.statistics.setObjectName("readout")
        self.statistics.setWordWrap(True)
        self.statistics.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.area = QScrollArea()
        self.area.setWidgetResizable(True)
        self.area.setFrameShape(QScrollArea.Shape.NoFrame)
        self.holder = QWidget()
        self.flow = FlowLayout(self.holder, spacing=4)
        self.flow.setContentsMargins(0, 0, 0, 0)
        self.area.setWidget(self.holder)
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.title, 1)
        header.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.statistics)
        layout.addWidget(self.area, 1)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def show_note(self, text: str, *, title: str = "Dataset index") -> None:
        """No patches: ``text`` says why (no channel chosen, a stage the index lacks)."""
        self.shown = None
        self._set_tiles([])
        self.title.setText(title)
        self.statistics.setText(text)
        self.export_button.setEnabled(False)

    def waiting(self, layer: str, channel: int, count: int, index: str) -> None:
        """``count`` patches of ``channel`` at ``layer`` are being cropped from ``index``."""
        self.shown = None
        self.title.setText(self._title(layer, channel, count, index))
        self.statistics.setText("Reading the images…")
        self._set_tiles([PatchTile(None) for _ in range(count)])
        self.export_button.setEnabled(False)

    def show_patches(self, patches: Patches) -> None:
        """Show ``patches``, best first."""
        self.shown = patches
        count = len(patches.patches)
        self.title.setText(
            self._title(patches.layer, patches.channel, count, patches.atlas.folder.name)
        )
        unreadable = sum(patch.pixels is None for patch in patches.patches)
        words = [f"Dataset {patches.statistics}" if patches.statistics else ""]
        if unreadable:
            words.append(f"{unreadable} image(s) cannot be read any more: hover for why")
        self.statistics.setText(" · ".join(word for word in words if word))
        self.statistics.setToolTip("Click a patch to open its image")
        tiles = [PatchTile(patch) for patch in patches.patches]
        for tile in tiles:
            if tile.patch is not None:
                tile.clicked.connect(
                    lambda _=False, s=tile.patch.source: self.patch_clicked.emit(s)
                )
        self._set_tiles(tiles)
        self.export_button.setEnabled(count > 0)

    def room(self) -> int:
        """The height in pixels this panel needs to show a whole row of patches."""
        tile = PatchTile(None).sizeHint().height()
        words = self.title.sizeHint().height() + self.statistics.sizeHint().height()
        margins = self.layout().contentsMargins()
        return words + tile + 2 * self.layout().spacing() + margins.top() + margins.bottom() + 8

    @staticmethod
    def _title(layer: str, channel: int, count: int, index: str) -> str:
        return f"Top {count} dataset images of {layer} channel {channel} ({index})"

    def _set_tiles(self, tiles: list[PatchTile]) -> None:
        for tile in self.tiles:
            self.flow.removeWidget(tile)
            tile.deleteLater()
        self.tiles = tiles
        for tile in tiles:
            self.flow.addWidget(tile)
        self.holder.updateGeometry()

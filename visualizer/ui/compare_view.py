"""Compare mode: two networks side by side on one image, linked — the two architectures, or
one architecture with two sets of weights (ImageNet against fine-tuned).

Both panes show the same stage, order, colormap and scale (the window sends both the same
options), and Grad-CAMs of the same class when both networks have the same classes; when
their classes differ, each explains its own (its top-1, or the one picked in its pane), and
the note says so. The grids' zoom and pan can be linked too. Below them the comparison strip
puts the stages of both networks side by side.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from visualizer.choices import MODEL_LABELS, MODELS
from visualizer.ui.cam_panel import CamControls, CamView, ClassPicker, Predictions, escaped
from visualizer.ui.comparison_strip import ComparisonStrip
from visualizer.ui.grid_view import HOVER_HINT, GridView
from visualizer.ui.jobs import ViewData
from visualizer.ui.method_jobs import LAYER_METHODS, METHOD_TITLES

DEFAULT_LABELS = tuple(MODEL_LABELS[model] for model in MODELS)


class ComparePane(QWidget):
    """One network's half: its stage grid, its Grad-CAM and its top-5."""

    def __init__(self, label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self.data: ViewData | None = None
        self.failed = False  # its latest request failed
        self.title = QLabel(f"<b>{label}</b>")
        self.title.setObjectName("panelTitle")
        self.grid = GridView(hint=HOVER_HINT)  # a click opens nothing here
        self.cam = CamView(minimum=180, method_line=False)
        self.picker = ClassPicker()  # shown when the two networks' classes differ
        self.picker.setToolTip("The class this network's Grad-CAM explains")
        self.picker.hide()
        self.predictions = Predictions()
        self.predictions.setMinimumWidth(180)
        beside = QWidget()  # the Grad-CAM over the top-5, to the right of the grid
        column = QVBoxLayout(beside)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.cam, 1)
        column.addWidget(self.picker)
        column.addWidget(self.predictions)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.grid)
        split.addWidget(beside)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 0)
        layout.addWidget(self.title)
        layout.addWidget(split, 1)

    def set_label(self, label: str) -> None:
        """Name the pane's network ``label`` (the title follows with the next data)."""
        if label != self.label:
            self.label = label
            self.title.setText(f"<b>{escaped(label)}</b>")

    def show_data(self, data: ViewData) -> None:
        self.data, self.failed = data, False
        channels, height, width = data.activation.shape
        shown = len(data.grid.layout.order)
        self.title.setText(
            f"<b>{escaped(self.label)}</b> · {data.options.stage}: "
            f"{shown if shown < channels else 'all'} of {channels} channels, "
            f"{height}×{width} each · top-1 {escaped(data.topk[0][1])} "
            f"({data.topk[0][2] * 100:.1f} %)"
        )
        self.grid.show_data(data)
        self.cam.show_data(data)
        self.predictions.show_data(data)

    def waiting(self, text: str, *, failed: bool = False) -> None:
        """Show nothing but what the pane waits for (its analysis), or why it failed."""
        self.data, self.failed = None, failed
        self.title.setText(f"<b>{escaped(self.label)}</b> · {escaped(text)}")
        self.grid.clear()
        self.cam.clear()
        self.predictions.clear()

    def updating(self) -> None:
        """Say that what is shown is of an earlier image, until the new one comes."""
        if self.data is not None and "updating" not in self.title.text():
            self.title.setText(f"{self.title.text()} · <i>updating…</i>")


class CompareView(QWidget):
    """Both panes, the shared Grad-CAM controls, the note when they disagree, the strip."""

    target_chosen = Signal(object)  # for both sides: they share their classes
    side_target_chosen = Signal(int, object)  # (side, class or None): their classes differ
    colormap_chosen = Signal(str)
    stage_chosen = Signal(str)
    opacity_changed = Signal(float)
    method_chosen = Signal(str)  # one method for both sides

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        labels = DEFAULT_LABELS
        self.controls = CamControls(in_a_row=True)
        self.link = QCheckBox("Link zoom")
        self.link.setChecked(True)
        self.link.setToolTip("Zoom and pan both grids together (to the same part of each)")
        self.note = QLabel("")
        self.note.setObjectName("note")
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        self.panes = [ComparePane(label) for label in labels]
        self.strip = ComparisonStrip(labels)
        self._syncing = False
        for index, pane in enumerate(self.panes):
            pane.predictions.target_chosen.connect(lambda t, i=index: self._class_chosen(i, t))
            pane.picker.target_chosen.connect(lambda t, i=index: self.side_target_chosen.emit(i, t))
            pane.grid.box.sigRangeChanged.connect(lambda *_, i=index: self._zoomed(i))
        self.controls.target_chosen.connect(self.target_chosen)
        self.controls.colormap_chosen.connect(self.colormap_chosen)
        self.controls.stage_chosen.connect(self.stage_chosen)
        self.controls.method_chosen.connect(self.method_chosen)
        self.controls.opacity_changed.connect(self._opacity_moved)
        self._lay_out()

    def _lay_out(self) -> None:
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 4, 0)
        bar.addWidget(self.controls, 1)
        bar.addWidget(self.link)
        sides = QSplitter(Qt.Orientation.Horizontal)
        for pane in self.panes:
            sides.addWidget(pane)
        top = QWidget()
        column = QVBoxLayout(top)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addLayout(bar)
        column.addWidget(self.note)
        column.addWidget(sides, 1)
        self.body = QSplitter(Qt.Orientation.Vertical)
        self.body.addWidget(top)
        self.body.addWidget(self.strip)
        self.body.setStretchFactor(0, 3)
        self.body.setStretchFactor(1, 1)
        self.body.setSizes([580, 236])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.body)

    def set_labels(self, labels: tuple[str, str]) -> None:
        """Name the networks compared, left and right."""
        for pane, label in zip(self.panes, labels, strict=True):
            pane.set_label(label)
        self.strip.set_labels(labels)

    def shared_classes(self) -> bool:
        """False when both sides are shown and their networks' classes differ: each side
        then explains its own class."""
        shown = [pane.data for pane in self.panes]
        if any(data is None for data in shown):
            return all(data is None or data.shared for data in shown)
        return shown[0].model.categories == shown[1].model.categories

    def show_side(self, side: int, data: ViewData) -> None:
        """Show network ``side`` (0: left, 1: right)."""
        self.panes[side].show_data(data)
        self.controls.show_data(data)
        self.strip.show_side(side, data)
        shared = self.shared_classes()
        self.controls.show_class_picker(shared)
        for pane in self.panes:
            pane.picker.setVisible(not shared)
            if pane.data is not None:
                pane.picker.show_target(pane.data.model.categories, pane.data.target)
        self._update_note()

    def waiting(self, side: int, text: str, *, failed: bool = False) -> None:
        """Network ``side`` has nothing to show yet (or failed): say so."""
        self.panes[side].waiting(text, failed=failed)
        self.strip.show_side(side, None)
        self._update_note()

    def updating(self, picture: int) -> None:
        """A new request for ``picture`` is on its way: mark panes that show another image."""
        for pane in self.panes:
            if pane.data is not None and pane.data.picture != picture:
                pane.updating()

    def set_opacity(self, opacity: float) -> None:
        for pane in self.panes:
            pane.cam.set_opacity(opacity)

    def complete(self, picture: int) -> bool:
        """True when both panes show ``picture`` with the same options."""
        shown = [pane.data for pane in self.panes]
        return all(data is not None and data.picture == picture for data in shown) and (
            shown[0].options == shown[1].options
        )

    def _update_note(self) -> None:
        shown = [pane.data for pane in self.panes]
        if any(data is None for data in shown) or shown[0].picture != shown[1].picture:
            self.note.setText("")
            self.note.setVisible(False)
            return
        shared = self.shared_classes()
        maps = _maps(shown[0].options.cam_method)
        if shown[0].options != shown[1].options or (shared and shown[0].target != shown[1].target):
            self.note.setText("Updating: one network's view is still on its way…")
            self.note.setProperty("differ", False)
            self.note.style().polish(self.note)
            self.note.setVisible(True)
            return
        if not shared:
            each = "; ".join(
                f"{escaped(pane.label)} ({_classes(data.model.num_classes)}): "
                f"<b>{data.target} {escaped(data.target_label)}</b>"
                for pane, data in zip(self.panes, shown, strict=True)
            )
            self.note.setText(
                f"<b>The networks have different classes</b>: each {maps[:-1]} explains its own "
                f"class ({each}); pick a class in each pane to change it."
            )
            self.note.setProperty("differ", True)
            self.note.style().polish(self.note)
            self.note.setVisible(True)
            return
        tops = [data.topk[0] for data in shown]
        target = f"<b>{shown[0].target} {escaped(shown[0].target_label)}</b>"
        if tops[0][0] == tops[1][0]:
            text = f"Both networks rank <b>{escaped(tops[0][1])}</b> first. "
        else:
            each = "; ".join(
                f"{escaped(pane.label)}: {index} {escaped(label)} ({p * 100:.1f} %)"
                for pane, (index, label, p) in zip(self.panes, tops, strict=True)
            )
            text = f"<b>The top-1 classes differ</b> ({each}). "
        self.note.setText(f"{text}Both {maps} explain {target}; click a class to change it.")
        self.note.setProperty("differ", tops[0][0] != tops[1][0])
        self.note.style().polish(self.note)
        self.note.setVisible(True)

    def _class_chosen(self, side: int, target: object) -> None:
        """A class clicked in a pane's top-k: for both sides, or (classes differ) its own."""
        if self.shared_classes():
            self.target_chosen.emit(target)
        else:
            self.side_target_chosen.emit(side, target)

    def _opacity_moved(self, opacity: float) -> None:
        self.set_opacity(opacity)
        self.opacity_changed.emit(opacity)

    def _zoomed(self, source: int) -> None:
        """Zoom the other grid to the same fraction of its own extent."""
        if self._syncing or not self.link.isChecked():
            return
        panes = self.panes
        other = 1 - source
        if panes[source].data is None or panes[other].data is None:
            return
        (x0, x1), (y0, y1) = panes[source].grid.box.viewRange()
        height, width = panes[source].data.grid.indices.shape
        other_height, other_width = panes[other].data.grid.indices.shape
        sx, sy = other_width / width, other_height / height
        self._syncing = True
        try:
            panes[other].grid.box.setRange(
                xRange=(x0 * sx, x1 * sx), yRange=(y0 * sy, y1 * sy), padding=0
            )
        finally:
            self._syncing = False


def _maps(method: str) -> str:
    """``"Grad-CAMs"``, ``"Saliency maps"``: the plural of the maps shown."""
    title = METHOD_TITLES.get(method, method)
    return f"{title}s" if method in LAYER_METHODS else f"{title} maps"


def _classes(count: int) -> str:
    return f"{count} class" if count == 1 else f"{count} classes"

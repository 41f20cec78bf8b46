"""Top-5 predictions and the Grad-CAM (or another attribution method's map) of any class over
the input, with its controls."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from visualizer.choices import COLORMAPS
from visualizer.ui.jobs import STAGES, ViewData, ViewOptions
from visualizer.ui.method_jobs import LAYER_METHODS, METHOD_TITLES, SLOW_METHODS

METHOD = "Captum LayerGradCam, ReLU, bilinear upsampling, min–max"
METHOD_LINES = {  # how each method's map is made, in a line (attribution_methods' table)
    "gradcam": METHOD,
    "guided-gradcam": "Captum GuidedGradCam, max over channels of |value|, min–max",
    "saliency": "Captum Saliency (|gradient|), max over channels, min–max",
    "integrated-gradients": "Captum IntegratedGradients, sum over channels of |value|, min–max",
    "occlusion": "Captum Occlusion, sum over channels, negatives set to 0, min–max",
    "smoothgrad-saliency": "Captum NoiseTunnel(Saliency), SmoothGrad, max over channels, min–max",
    "smoothgrad-ig": "Captum NoiseTunnel(IntegratedGradients), SmoothGrad, sum of |value|, min–max",
}


class ClassPicker(QWidget):
    """The class a Grad-CAM explains: a searchable list of the network's classes (by index
    and label) and a Top-1 button."""

    target_chosen = Signal(object)  # a class index, or None for the top-1 class

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._categories: tuple[str, ...] = ()
        self.classes = QComboBox()
        self.classes.setEditable(True)
        self.classes.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.classes.lineEdit().setPlaceholderText("Search the classes…")
        self.classes.setToolTip("Explain any class of the network: type part of its name")
        self.classes.setMinimumContentsLength(18)
        self.classes.activated.connect(self._class_picked)
        self.top1 = QPushButton("Top-1")
        self.top1.setToolTip("Explain the class the network ranks first")
        self.top1.clicked.connect(lambda: self.target_chosen.emit(None))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.classes, 1)
        row.addWidget(self.top1)

    def show_target(self, categories: tuple[str, ...], target: int | None) -> None:
        """List ``categories`` and show ``target`` (None: nothing chosen, the top-1 shown),
        without reporting it as a choice."""
        self._set_categories(categories)
        wanted = target if target is not None and target < len(categories) else -1
        if self.classes.currentIndex() != wanted and not self.classes.lineEdit().hasFocus():
            with QSignalBlocker(self.classes):
                self.classes.setCurrentIndex(wanted)

    def _set_categories(self, categories: tuple[str, ...]) -> None:
        if categories == self._categories:
            return
        self._categories = categories
        self.classes.blockSignals(True)
        self.classes.clear()
        self.classes.addItems([f"{index} {name}" for index, name in enumerate(categories)])
        self.classes.setCurrentIndex(-1)
        self.classes.blockSignals(False)
        count = len(categories)
        self.classes.lineEdit().setPlaceholderText(
            f"Search the {count} classes…" if count != 1 else "One class only"
        )
        completer = QCompleter(self.classes.model(), self.classes)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.activated.connect(self._completion_picked)
        self.classes.setCompleter(completer)

    def _class_picked(self, row: int) -> None:
        if 0 <= row < len(self._categories):
            self.target_chosen.emit(row)

    def _completion_picked(self, text: str) -> None:
        head = text.split(" ", 1)[0]
        if head.isdigit() and int(head) < len(self._categories):
            self.target_chosen.emit(int(head))


class CamControls(QWidget):
    """What the Grad-CAM explains and how it looks: class, stage, opacity, colormap."""

    target_chosen = Signal(object)  # a class index, or None for the top-1 class
    colormap_chosen = Signal(str)
    stage_chosen = Signal(str)
    opacity_changed = Signal(float)
    method_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, in_a_row: bool = False) -> None:
        super().__init__(parent)
        self.method = QComboBox()
        for method, title in METHOD_TITLES.items():
            self.method.addItem(title, method)
        self.method.setToolTip(
            "The attribution method of the map (Captum's); "
            + ", ".join(METHOD_TITLES[m] for m in SLOW_METHODS)
            + " run the network many times: slow on a CPU, with their progress below"
        )
        # Narrow: its longest title would widen the row of compare mode, and so the window.
        self.method.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.method.setMinimumContentsLength(9)
        self.method.currentIndexChanged.connect(
            lambda: self.method_chosen.emit(self.method.currentData())
        )
        self.picker = ClassPicker()
        self.picker.target_chosen.connect(self.target_chosen)
        self.classes, self.top1 = self.picker.classes, self.picker.top1
        self.class_label = QLabel("Grad-CAM class")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.valueChanged.connect(lambda value: self.opacity_changed.emit(value / 100))
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.colormap.setCurrentText("turbo")
        self.colormap.currentTextChanged.connect(self.colormap_chosen)
        self.stage = QComboBox()
        self.stage.addItems(STAGES)
        self.stage.setCurrentText("C5")
        self.stage.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)  # a layer
        self.stage.setToolTip("The stage whose activations and gradients make the map")
        self.stage.currentTextChanged.connect(self.stage_chosen)  # or the layer picked
        if in_a_row:
            self.opacity.setMaximumWidth(140)
            row = QHBoxLayout(self)
            row.setContentsMargins(4, 2, 4, 2)
            row.addWidget(self.class_label)
            row.addWidget(self.picker, 1)
            for text, widget in (
                ("Method", self.method), ("Stage", self.stage), ("Opacity", self.opacity),
                ("Colormap", self.colormap),
            ):  # fmt: skip
                row.addWidget(QLabel(text))
                row.addWidget(widget)
            return
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Class", self.picker)
        where = QWidget()  # "Grad-CAM at C5": the method and its stage on one line
        line = QHBoxLayout(where)
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(self.method, 1)
        line.addWidget(QLabel("at"))
        line.addWidget(self.stage)
        form.addRow("Method", where)
        form.addRow("Opacity", self.opacity)
        form.addRow("Colormap", self.colormap)

    def show_data(self, data: ViewData) -> None:
        """Show the class, stage and colormap of ``data`` without reporting them as changes."""
        self.picker.show_target(data.model.categories, data.options.target)
        self.show_options(data.options)

    def show_options(self, options: ViewOptions) -> None:
        """Show the method, stage (or layer picked) and colormap of ``options`` without
        reporting them as changes."""
        title = METHOD_TITLES.get(options.cam_method, options.cam_method)
        at_layer = options.cam_method in LAYER_METHODS
        with QSignalBlocker(self.colormap), QSignalBlocker(self.stage), QSignalBlocker(self.method):
            self.colormap.setCurrentText(options.cam_colormap)
            self.method.setCurrentIndex(max(0, self.method.findData(options.cam_method)))
            while self.stage.count() > len(STAGES):  # an earlier layer picked
                self.stage.removeItem(self.stage.count() - 1)
            if options.cam_layer is not None:
                self.stage.addItem(options.cam_layer)
            self.stage.setCurrentText(options.cam_at)
        self.stage.setEnabled(at_layer)
        self.class_label.setText(f"{title} class")
        self.stage.setToolTip(
            "The stage (or layer picked) whose activations and gradients make the map"
            if at_layer
            else f"{title} attributes at the input: no stage"
        )

    def show_class_picker(self, shown: bool) -> None:
        """Show the class picker (False: each side of a comparison has its own)."""
        self.class_label.setVisible(shown)
        self.picker.setVisible(shown)


class CamView(QWidget):
    """The input with its Grad-CAM heat map over it, and a title saying what it explains."""

    def __init__(
        self, parent: QWidget | None = None, *, minimum: int = 240, method_line: bool = True
    ) -> None:
        super().__init__(parent)
        self._method_line = method_line
        self.title = QLabel("Grad-CAM")
        self.title.setObjectName("panelTitle")
        self.title.setWordWrap(True)
        self.plot = pg.GraphicsLayoutWidget()
        self.plot.setBackground("#1e1e1e")
        self.plot.ci.setContentsMargins(0, 0, 0, 0)
        self.plot.setMinimumSize(minimum, minimum)
        self.box = self.plot.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.picture = pg.ImageItem(axisOrder="row-major")
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.picture)
        self.box.addItem(self.heat)
        self._opacity = 0.5
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)

    def show_data(self, data: ViewData) -> None:
        """Show ``data``'s input and Grad-CAM."""
        self.picture.setImage(data.view, levels=(0, 255))
        self.heat.setImage(data.cam, levels=(0.0, 1.0), lut=data.cam_lut)
        self.heat.setOpacity(self._opacity)
        self.box.autoRange(padding=0.0)
        empty = "" if data.cam.max() > 0 else " · <i>empty: no positive evidence here</i>"
        if data.scores == "sigmoid":
            score = f"sigmoid {data.target_probability * 100:.1f} %"
        else:
            rank = "top-1" if data.target_rank == 1 else f"rank {data.target_rank}"
            score = f"{data.target_probability * 100:.1f} %, {rank}"
        method = METHOD_LINES.get(data.options.cam_method, data.options.cam_method)
        line = f"<br><small>{method}</small>" if self._method_line else ""
        title, _, where = data.cam_title.partition(" at ")
        at = f" at {escaped(where)}" if where else ""
        self.title.setText(
            f"{escaped(title)} of <b>{data.target} {escaped(data.target_label)}</b> "
            f"({score}){at}{empty}{line}"
        )
        self.title.setToolTip(method)

    def set_opacity(self, opacity: float) -> None:
        self._opacity = opacity
        self.heat.setOpacity(opacity)

    def clear(self) -> None:
        self.picture.clear()
        self.heat.clear()
        self.title.setText("Grad-CAM")


class Predictions(QListWidget):
    """The top-5 classes (all of a network with fewer) with their probabilities, or the
    sigmoid probability of a one-output network; a click asks for that class's Grad-CAM."""

    target_chosen = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("predictions")
        self.setToolTip("Click a class to see its Grad-CAM")
        # Tall enough for all five rows: the top-5 never scrolls.
        self.setFixedHeight(5 * (self.fontMetrics().height() + 2) + 2 * self.frameWidth() + 6)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.itemClicked.connect(
            lambda item: self.target_chosen.emit(item.data(Qt.ItemDataRole.UserRole))
        )

    def show_data(self, data: ViewData) -> None:
        """List ``data``'s top-k, the class explained in bold."""
        self.clear()
        for index, label, probability in data.topk:
            item = QListWidgetItem(f"{probability * 100:5.1f} %   {label}  ({index})")
            item.setData(Qt.ItemDataRole.UserRole, index)
            if index == data.target:
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            self.addItem(item)


class CamPanel(QWidget):
    """The input with its Grad-CAM heat map, the class it explains and the predictions."""

    target_chosen = Signal(object)  # a class index, or None for the top-1 class
    colormap_chosen = Signal(str)
    stage_chosen = Signal(str)
    opacity_changed = Signal(float)
    method_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = CamView()
        self.controls = CamControls()
        self.predictions = Predictions()
        # The parts tests and the window reach for.
        self.title, self.box = self.view.title, self.view.box
        self.picture, self.heat = self.view.picture, self.view.heat
        self.classes, self.top1 = self.controls.classes, self.controls.top1
        self.opacity, self.colormap, self.stage = (
            self.controls.opacity, self.controls.colormap, self.controls.stage
        )  # fmt: skip
        self.controls.target_chosen.connect(self.target_chosen)
        self.predictions.target_chosen.connect(self.target_chosen)
        self.controls.colormap_chosen.connect(self.colormap_chosen)
        self.controls.stage_chosen.connect(self.stage_chosen)
        self.controls.method_chosen.connect(self.method_chosen)
        self.controls.opacity_changed.connect(self._opacity_moved)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.controls)
        self.heading = QLabel("Top-5 predictions")
        self.heading.setObjectName("panelTitle")
        layout.addWidget(self.heading)
        layout.addWidget(self.predictions)

    def show_data(self, data: ViewData) -> None:
        """Show ``data``'s input, Grad-CAM and predictions."""
        self.controls.show_data(data)
        self.view.show_data(data)
        self.predictions.show_data(data)
        self.heading.setText(predictions_heading(data))

    def _opacity_moved(self, opacity: float) -> None:
        self.view.set_opacity(opacity)
        self.opacity_changed.emit(opacity)


def escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def predictions_heading(data: ViewData) -> str:
    """``"Top-5 predictions"``, ``"Top-2 of 2 classes"``, or for one output
    ``"Sigmoid probability (one output)"``."""
    if data.scores == "sigmoid":
        return "Sigmoid probability (one output)"
    classes = data.model.num_classes
    if len(data.topk) == classes <= 5:
        return f"Top-{classes} of {classes} classes"
    return f"Top-{len(data.topk)} predictions"

"""The "Network" dialog: architecture, weights, labels and preprocessing of a network, as a
``NetworkSpec`` — for File → Load weights… and View → Compare with…; and the settings that
remember such a network."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from visualizer.choices import MODEL_LABELS, MODELS
from visualizer.networks import NetworkSpec, parse_size, parse_values

NAMED = {"imagenet": "ImageNet", "random": "random (untrained)"}
# The architectures' ImageNet transforms (torchvision's weights in use), for the placeholders.
DEFAULT_RESIZE = {"vgg16": 256, "resnet101": 232}
DEFAULT_CROP = 224
DEFAULT_MEAN = "0.485, 0.456, 0.406"
DEFAULT_STD = "0.229, 0.224, 0.225"
CHECKPOINTS = "Checkpoints (*.pth *.pt *.ckpt *.bin *.safetensors);;All files (*)"
LABEL_FILES = "Labels (*.txt *.json *.csv);;All files (*)"
FIELDS = ("model", "weights", "labels", "mean", "std", "resize", "crop")


class NetworkDialog(QDialog):
    """Asks for a network: architecture, weights (ImageNet, random or a checkpoint file),
    an optional labels file, and mean, std, resize and crop (empty: the checkpoint's values,
    else the architecture's ImageNet ones).

    ``network()`` gives what the fields say, or raises ``ValueError`` with the reason; the
    dialog accepts only fields that make a network, and says why not beside the buttons.

    Examples::

        dialog = NetworkDialog(NetworkSpec("resnet101"), title="Load weights")
        if dialog.exec() == QDialog.DialogCode.Accepted:
            spec = dialog.network()
    """

    def __init__(
        self,
        spec: NetworkSpec,
        parent: QWidget | None = None,
        *,
        title: str = "Network",
        folder: str = "",
        intro: str = "",
    ) -> None:
        super().__init__(parent)
        self.setObjectName("networkDialog")
        self.setWindowTitle(title)
        self.folder = folder
        self.architecture = QComboBox()
        for model in MODELS:
            self.architecture.addItem(MODEL_LABELS[model], model)
        self.weights = QComboBox()
        self.weights.setEditable(True)
        self.weights.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        for value in NAMED:
            self.weights.addItem(value)
        self.weights.setToolTip(
            "imagenet, random, or a checkpoint file (.pth, .pt, .ckpt, .safetensors): a state "
            "dict, also nested in training state or under a prefix such as 'model.'"
        )
        self.weights.setMinimumContentsLength(36)
        self.browse_weights = QPushButton("Browse…")
        self.browse_weights.clicked.connect(self._browse_weights)
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("optional: the checkpoint's, else ImageNet's or 'class i'")
        self.labels.setToolTip(
            "One name a line, a JSON list, a JSON object (index → name or name → index), "
            "or a CSV of index,name"
        )
        self.browse_labels = QPushButton("Browse…")
        self.browse_labels.clicked.connect(self._browse_labels)
        self.mean = QLineEdit()
        self.std = QLineEdit()
        self.resize_ = QLineEdit()
        self.crop = QLineEdit()
        for field, tip in (
            (self.mean, "R,G,B (one value for a grey-scale network), in [0, 1] pixel units"),
            (self.std, "R,G,B (one value for a grey-scale network)"),
            (self.resize_, "the shorter side is resized to this many pixels"),
            (self.crop, "the centre crop the network sees, in pixels"),
        ):
            field.setToolTip(f"{tip}; empty: the checkpoint's value, else the default shown")
        self.problem = QLabel("")
        self.problem.setObjectName("problem")
        self.problem.setStyleSheet("color: #a00;")
        self.problem.setWordWrap(True)
        self.problem.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.architecture.currentIndexChanged.connect(self._show_defaults)
        self._lay_out(intro)
        self.show_network(spec)

    def _lay_out(self, intro: str) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Architecture", self.architecture)
        form.addRow("Weights", _beside(self.weights, self.browse_weights))
        form.addRow("Labels", _beside(self.labels, self.browse_labels))
        form.addRow("Mean", self.mean)
        form.addRow("Std", self.std)
        form.addRow("Resize", self.resize_)
        form.addRow("Crop", self.crop)
        layout = QVBoxLayout(self)
        if intro:
            text = QLabel(intro)
            text.setWordWrap(True)
            layout.addWidget(text)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(560)

    def show_network(self, spec: NetworkSpec) -> None:
        """Fill the fields from ``spec``."""
        index = self.architecture.findData(spec.model)
        self.architecture.setCurrentIndex(max(index, 0))
        self.weights.setCurrentText(spec.weights)
        self.labels.setText(spec.labels or "")
        self.mean.setText(_values(spec.mean))
        self.std.setText(_values(spec.std))
        self.resize_.setText("" if spec.resize is None else str(spec.resize))
        self.crop.setText("" if spec.crop is None else str(spec.crop))
        self._show_defaults()

    def network(self) -> NetworkSpec:
        """What the fields say.

        Raises:
            ValueError: one line naming the field and why, e.g. ``"Mean: '0.5,x': 'x' is
                not a number"``.
        """
        weights = self.weights.currentText().strip() or "imagenet"
        if weights not in NAMED and not Path(weights).is_file():
            raise ValueError(f"Weights: {weights}: no such file")
        labels = self.labels.text().strip() or None
        if labels is not None and not Path(labels).is_file():
            raise ValueError(f"Labels: {labels}: no such file")
        values: dict[str, object] = {}
        for name, field, parse in (
            ("Mean", self.mean, parse_values),
            ("Std", self.std, parse_values),
            ("Resize", self.resize_, parse_size),
            ("Crop", self.crop, parse_size),
        ):
            text = field.text().strip()
            try:
                values[name.lower()] = parse(text) if text else None
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        if values["std"] is not None and any(v <= 0 for v in values["std"]):  # type: ignore[attr-defined]
            raise ValueError("Std: every value must be above 0")
        return NetworkSpec(self.architecture.currentData(), weights, labels, **values)  # type: ignore[arg-type]

    def accept(self) -> None:
        """Close with the network, or say what is wrong and stay open."""
        try:
            self.network()
        except ValueError as error:
            self.problem.setText(str(error))
            self.problem.show()
            return
        self.problem.hide()
        super().accept()

    def _show_defaults(self) -> None:
        model = self.architecture.currentData()
        for field, default in (
            (self.mean, f"{DEFAULT_MEAN} (or the checkpoint's)"),
            (self.std, f"{DEFAULT_STD} (or the checkpoint's)"),
            (self.resize_, f"{DEFAULT_RESIZE.get(model, 256)} (or in proportion to the crop)"),
            (self.crop, f"{DEFAULT_CROP} (or the checkpoint's input size)"),
        ):
            field.setPlaceholderText(f"default: {default}")

    def _browse_weights(self) -> None:
        label = MODEL_LABELS.get(self.architecture.currentData(), "")
        path, _ = QFileDialog.getOpenFileName(
            self, f"Load {label} weights", self._start(self.weights.currentText()), CHECKPOINTS
        )
        if path:
            self.weights.setCurrentText(path)

    def _browse_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load labels", self._start(self.labels.text()), LABEL_FILES
        )
        if path:
            self.labels.setText(path)

    def _start(self, current: str) -> str:
        """Where a file dialog opens: beside the file named, else the folder last used."""
        if current and Path(current).parent.is_dir() and current not in NAMED:
            return str(Path(current).parent)
        return self.folder


def ask_network(
    parent: QWidget | None, spec: NetworkSpec, *, title: str, folder: str = "", intro: str = ""
) -> NetworkSpec | None:
    """The network the user chose in a ``NetworkDialog`` filled from ``spec``; None when
    cancelled."""
    dialog = NetworkDialog(spec, parent, title=title, folder=folder, intro=intro)
    try:
        if dialog.exec() == QDialog.DialogCode.Accepted:
            return dialog.network()
        return None
    finally:
        dialog.deleteLater()


def save_network(settings: QSettings, group: str, spec: NetworkSpec | None) -> None:
    """Remember ``spec`` under ``group`` (None: forget it)."""
    settings.remove(group)
    if spec is None:
        return
    texts = {
        "model": spec.model,
        "weights": spec.weights,
        "labels": spec.labels or "",
        "mean": _values(spec.mean),
        "std": _values(spec.std),
        "resize": "" if spec.resize is None else str(spec.resize),
        "crop": "" if spec.crop is None else str(spec.crop),
    }
    for name, text in texts.items():
        settings.setValue(f"{group}/{name}", text)


def saved_network(settings: QSettings, group: str) -> NetworkSpec | None:
    """The network remembered under ``group``; None when there is none, or it makes no sense
    (an unknown architecture, a value that does not parse)."""
    texts = {name: settings.value(f"{group}/{name}") for name in FIELDS}
    if not all(isinstance(text, str) for text in texts.values()):
        return None
    if texts["model"] not in MODELS or not texts["weights"]:
        return None
    try:
        return NetworkSpec(
            str(texts["model"]),
            str(texts["weights"]),
            str(texts["labels"]) or None,
            parse_values(str(texts["mean"])) if texts["mean"] else None,
            parse_values(str(texts["std"])) if texts["std"] else None,
            parse_size(str(texts["resize"])) if texts["resize"] else None,
            parse_size(str(texts["crop"])) if texts["crop"] else None,
        )
    except ValueError:
        return None


def _values(values: tuple[float, ...] | None) -> str:
    return "" if values is None else ", ".join(f"{value:g}" for value in values)


def _beside(field: QWidget, button: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(field, 1)
    layout.addWidget(button, 0, Qt.AlignmentFlag.AlignRight)
    return row

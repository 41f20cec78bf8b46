"""The toolbars: network, device, stage and how the grid looks."""

from __future__ import annotations

from PySide6.QtCore import QObject, QSignalBlocker, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox, QToolBar, QWidget

from visualizer.choices import COLORMAPS, MODEL_LABELS
from visualizer.ui.atlas_jobs import DATASET_ORDERS
from visualizer.ui.jobs import STAGES, ModelSpec, ViewOptions

DEVICES = {"auto": "Auto", "cpu": "CPU", "cuda": "CUDA", "mps": "MPS"}
SCALES = {"channel": "Scale: channel", "stage": "Scale: stage"}
ORDERS = {"index": "Order: index", "mean": "Order: mean", "gradcam": "Order: Grad-CAM"}
ORDER_TIP = "Tile order: channel index, mean activation or Grad-CAM weight (highest first)"
DATASET_ORDER_TIP = (
    "; with the dataset index open, by its statistics of each channel: mean score, active "
    "fraction, mean activation or the spread of scores (highest first)"
)


def _combo(items: dict[str, str], tip: str) -> QComboBox:
    combo = QComboBox()
    for value, text in items.items():
        combo.addItem(text, value)
    combo.setToolTip(tip)
    return combo


def _choose(combo: QComboBox, value: str) -> None:
    index = combo.findData(value)
    if index >= 0 and index != combo.currentIndex():
        combo.blockSignals(True)
        combo.setCurrentIndex(index)
        combo.blockSignals(False)


class Controls(QObject):
    """Pickers for the network and the view; emits what the user changed."""

    model_changed = Signal(str)
    device_changed = Signal(str)
    stage_changed = Signal(str)
    view_changed = Signal(dict)  # ViewOptions fields that changed

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.model = _combo(MODEL_LABELS, "Network")
        self.device = _combo(DEVICES, "Where the network runs (Auto: CUDA, then MPS, then CPU)")
        self.colormap = _combo({name: name for name in COLORMAPS}, "Colormap of the grid")
        self.scale = _combo(
            SCALES, "Stretch each channel over the colormap by itself, or the stage as a whole"
        )
        self.order = _combo(ORDERS, ORDER_TIP)
        self.top_n = QSpinBox()
        self.top_n.setRange(0, 4096)
        self.top_n.setSpecialValueText("all")
        self.top_n.setPrefix("show ")
        self.top_n.setToolTip("Show only the first N channels of the order (0: all)")
        self.top_n.setKeyboardTracking(False)
        self.stage_group = QActionGroup(self)
        # None checked while the grid shows a layer picked in the layer tree.
        self.stage_group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        self.stage_actions: dict[str, QAction] = {}
        for number, stage in enumerate(STAGES, start=1):
            action = QAction(stage, self, checkable=True)
            action.setShortcut(QKeySequence(str(number)))
            action.setToolTip(f"Stage {stage} (key {number})")
            action.triggered.connect(lambda _=False, stage=stage: self._stage_triggered(stage))
            self.stage_group.addAction(action)
            self.stage_actions[stage] = action
        self.model.currentIndexChanged.connect(
            lambda: self.model_changed.emit(self.model.currentData())
        )
        self.device.currentIndexChanged.connect(
            lambda: self.device_changed.emit(self.device.currentData())
        )
        self.colormap.currentIndexChanged.connect(
            lambda: self.view_changed.emit({"colormap": self.colormap.currentData()})
        )
        self.scale.currentIndexChanged.connect(
            lambda: self.view_changed.emit({"scale": self.scale.currentData()})
        )
        self.order.currentIndexChanged.connect(
            lambda: self.view_changed.emit({"order": self.order.currentData()})
        )
        self.top_n.valueChanged.connect(lambda n: self.view_changed.emit({"top_n": n}))

    def _stage_triggered(self, stage: str) -> None:
        # A click on the stage checked would uncheck it (the group allows none): checked again.
        self.stage_actions[stage].setChecked(True)
        self.stage_changed.emit(stage)

    def network_toolbar(self, parent: QWidget) -> QToolBar:
        bar = QToolBar("Network", parent)
        bar.setObjectName("networkToolbar")
        bar.addWidget(QLabel(" Network "))
        bar.addWidget(self.model)
        bar.addWidget(QLabel("  Device "))
        bar.addWidget(self.device)
        return bar

    def view_toolbar(self, parent: QWidget) -> QToolBar:
        bar = QToolBar("View", parent)
        bar.setObjectName("viewToolbar")
        bar.addWidget(QLabel(" Stage "))
        for action in self.stage_actions.values():
            bar.addAction(action)
        bar.addSeparator()
        for widget in (self.colormap, self.scale, self.order, self.top_n):
            bar.addWidget(widget)
        return bar

    def show_spec(self, spec: ModelSpec) -> None:
        """Set the pickers to ``spec`` without reporting it as a change."""
        _choose(self.model, spec.model)
        _choose(self.device, spec.device)

    def show_dataset_orders(self, shown: bool, current: str) -> None:
        """Offer the orders by the dataset index's statistics (``shown``: an index covering
        the grid's stage or layer is open) or not, and show ``current`` as chosen, without
        reporting either as a change."""
        with QSignalBlocker(self.order):
            present = self.order.findData(next(iter(DATASET_ORDERS))) >= 0
            if shown and not present:
                for value, (_statistic, text, _meaning) in DATASET_ORDERS.items():
                    self.order.addItem(text, value)
            elif not shown and present:
                for value in DATASET_ORDERS:
                    self.order.removeItem(self.order.findData(value))
            self.order.setToolTip(ORDER_TIP + (DATASET_ORDER_TIP if shown else ""))
            _choose(self.order, current)

    def show_options(self, options: ViewOptions) -> None:
        """Set the pickers to ``options`` without reporting it as a change."""
        if options.layer is None:
            self.stage_actions[options.stage].setChecked(True)
        elif (checked := self.stage_group.checkedAction()) is not None:
            checked.setChecked(False)
        _choose(self.colormap, options.colormap)
        _choose(self.scale, options.scale)
        _choose(self.order, options.order)
        if self.top_n.value() != options.top_n:
            self.top_n.blockSignals(True)
            self.top_n.setValue(options.top_n)
            self.top_n.blockSignals(False)

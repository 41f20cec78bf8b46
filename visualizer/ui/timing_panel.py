"""How long every layer took: a sortable table, a bar chart and the totals per stage. A click
on a layer's row shows that layer (its channels and Grad-CAM), as the layer tree does."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from visualizer.choices import HEAD, STAGES
from visualizer.ui.jobs import LayerRow, ViewData

COLUMNS = ("Layer", "Type", "Output shape", "ms", "Share %")
STAGE_COLOURS = {
    "C1": "#4e79a7",
    "C2": "#f28e2b",
    "C3": "#59a14f",
    "C4": "#e15759",
    "C5": "#b07aa1",
    HEAD: "#9c9c9c",
}


class LayerTable(QAbstractTableModel):
    """The layers of one analysis as table rows; sorting keeps numbers numeric."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[int, LayerRow]] = []  # (execution index, layer)
        self._total = 1.0

    def set_layers(self, layers: tuple[LayerRow, ...], total_ms: float) -> None:
        self.beginResetModel()
        self._rows = list(enumerate(layers))
        self._total = total_ms or 1.0
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> object:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        _, layer = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(layer, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column >= 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{layer.name} ({layer.stage}): click to see its channels and Grad-CAM"
        return None

    def layer_at(self, row: int) -> str | None:
        """The name of the layer on ``row`` as the table is sorted now."""
        return self._rows[row][1].name if 0 <= row < len(self._rows) else None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        keys = {
            0: lambda row: row[0],
            1: lambda row: row[1].kind,
            2: lambda row: math.prod(row[1].shape) if row[1].shape else 0,
            3: lambda row: row[1].ms,
            4: lambda row: row[1].ms,
        }
        self.layoutAboutToBeChanged.emit()
        self._rows.sort(key=keys[column], reverse=order == Qt.SortOrder.DescendingOrder)
        self.layoutChanged.emit()

    def _text(self, layer: LayerRow, column: int) -> str:
        if column == 0:
            return layer.name
        if column == 1:
            return layer.kind
        if column == 2:
            return "×".join(str(n) for n in layer.shape[1:]) if layer.shape else "–"
        if column == 3:
            return f"{layer.ms:.3f}"
        return f"{100 * layer.ms / self._total:.1f}"


class TimingPanel(QWidget):
    """Per-layer timings of the analysis on screen."""

    layer_clicked = Signal(str)  # the name of a layer whose row was clicked

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.totals = QLabel("Timings appear after the first analysis.")
        self.totals.setObjectName("readout")
        self.totals.setTextFormat(Qt.TextFormat.RichText)
        self.totals.setWordWrap(True)  # a narrow window wraps it rather than grows for it
        self.layers = LayerTable(self)
        self.table = QTableView()
        self.table.setModel(self.layers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # execution order
        self.table.clicked.connect(self._clicked)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for column, width in enumerate((190, 130, 110, 70)):
            header.resizeSection(column, width)
        self.chart = pg.PlotWidget(background="#1e1e1e")
        self.chart.setLabel("left", "ms")
        self.chart.setLabel("bottom", "layer, in execution order")
        self.chart.setMouseEnabled(x=True, y=False)
        self.chart.showGrid(y=True, alpha=0.2)
        self.bars: list[pg.BarGraphItem] = []
        self._shown: tuple = ()
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setSizes([520, 480])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.totals)
        layout.addWidget(split, 1)

    def show_data(self, data: ViewData) -> None:
        """Show the timings of ``data``'s analysis (nothing to redo for another view of it)."""
        if data.layers == self._shown:
            return
        self._shown = data.layers
        total = data.total_ms or 1.0
        self._fill_table(data, total)
        self._draw_chart(data)
        per_stage = {stage: 0.0 for stage in (*STAGES, HEAD)}
        for row in data.layers:
            per_stage[row.stage] += row.ms
        parts = " · ".join(
            f"<span style='color:{STAGE_COLOURS[stage]}'>■</span> {stage} {ms:.1f} ms"
            for stage, ms in per_stage.items()
        )
        self.totals.setText(
            f"{parts} · <b>total {data.total_ms:.1f} ms</b> on {data.device}, "
            f"{len(data.layers)} layers · {data.timing}"
        )

    def _clicked(self, index: QModelIndex) -> None:
        name = self.layers.layer_at(index.row())
        if name is not None:
            self.layer_clicked.emit(name)

    def _fill_table(self, data: ViewData, total: float) -> None:
        self.layers.set_layers(data.layers, total)
        header = self.table.horizontalHeader()
        self.layers.sort(header.sortIndicatorSection(), header.sortIndicatorOrder())

    def _draw_chart(self, data: ViewData) -> None:
        for bar in self.bars:
            self.chart.removeItem(bar)
        self.bars = []
        milliseconds = np.array([layer.ms for layer in data.layers], dtype=float)
        stages = np.array([layer.stage for layer in data.layers])
        for stage, colour in STAGE_COLOURS.items():
            positions = np.flatnonzero(stages == stage)
            if positions.size:
                bar = pg.BarGraphItem(
                    x=positions, height=milliseconds[positions], width=0.8, brush=colour, pen=None
                )
                self.chart.addItem(bar)
                self.bars.append(bar)
        self.chart.enableAutoRange()

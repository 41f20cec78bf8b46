"""How long every layer took: a sortable table, a bar chart and the totals per stage."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.jobs import HEAD, STAGES, ViewData

COLUMNS = ("Layer", "Type", "Output shape", "ms", "Share %")
STAGE_COLOURS = {
    "C1": "#4e79a7",
    "C2": "#f28e2b",
    "C3": "#59a14f",
    "C4": "#e15759",
    "C5": "#b07aa1",
    HEAD: "#9c9c9c",
}


class _Number(QTableWidgetItem):
    """A cell that sorts by its value, not its text."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        self.value = value
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _Number):
            return self.value < other.value
        return super().__lt__(other)


class TimingPanel(QWidget):
    """Per-layer timings of the analysis on screen."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.totals = QLabel("Timings appear after the first analysis.")
        self.totals.setObjectName("readout")
        self.totals.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # execution order
        self.chart = pg.PlotWidget(background="#1e1e1e")
        self.chart.setLabel("left", "ms")
        self.chart.setLabel("bottom", "layer, in execution order")
        self.chart.setMouseEnabled(x=True, y=False)
        self.chart.showGrid(y=True, alpha=0.2)
        self.bars: list[pg.BarGraphItem] = []
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setSizes([520, 480])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.totals)
        layout.addWidget(split, 1)

    def show_data(self, data: ViewData) -> None:
        """Show the timings of ``data``'s analysis."""
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
            f"{len(data.layers)} layers"
        )

    def _fill_table(self, data: ViewData, total: float) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(data.layers))
        for row, layer in enumerate(data.layers):
            shape = "×".join(str(n) for n in layer.shape[1:]) if layer.shape else "–"
            cells = (
                _Number(row, layer.name),
                QTableWidgetItem(layer.kind),
                QTableWidgetItem(shape),
                _Number(layer.ms, f"{layer.ms:.3f}"),
                _Number(layer.ms / total, f"{100 * layer.ms / total:.1f}"),
            )
            cells[0].setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            cells[0].setToolTip(f"{layer.name} ({layer.stage})")
            for column, cell in enumerate(cells):
                self.table.setItem(row, column, cell)
        self.table.setSortingEnabled(True)

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

"""Two networks stage by stage: output shapes, times and parameters side by side, and the
per-stage times as a bar chart."""

from __future__ import annotations

import html

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

from visualizer.choices import GROUPS
from visualizer.ui.jobs import ViewData

MODEL_COLOURS = ("#4e79a7", "#f28e2b")  # left network, right network
BAR_WIDTH = 0.38


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(n) for n in shape)


def _parameters(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1e6:.2f} M"
    return f"{count / 1e3:.1f} k" if count >= 1_000 else str(count)


class ComparisonStrip(QWidget):
    """Stage shapes, times and parameters of the networks compared, as they arrive."""

    def __init__(self, labels: tuple[str, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels = labels
        self._shown: dict[int, tuple] = {}
        self._timing: dict[int, str] = {}
        self.totals = QLabel("The comparison appears as each network's analysis arrives.")
        self.totals.setObjectName("readout")
        self.totals.setTextFormat(Qt.TextFormat.RichText)
        self.totals.setWordWrap(True)  # a narrow window wraps it rather than grows for it
        self.table = QTableWidget(len(GROUPS) + 1, 1 + 3 * len(labels))
        self.set_labels(labels)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setMinimumSectionSize(60)
        for row, group in enumerate((*GROUPS, "total")):
            self.table.setItem(row, 0, QTableWidgetItem(group))
        self.chart = pg.PlotWidget(background="#1e1e1e")
        self.chart.setLabel("left", "ms")
        self.chart.setMouseEnabled(x=False, y=False)
        self.chart.showGrid(y=True, alpha=0.2)
        self.chart.getAxis("bottom").setTicks([list(enumerate(GROUPS))])
        self.chart.setLabel("bottom", "time per stage (colours as in the totals above)")
        self.bars: dict[int, pg.BarGraphItem] = {}
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setSizes([640, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.totals)
        layout.addWidget(split, 1)

    def set_labels(self, labels: tuple[str, str]) -> None:
        """Name the networks, left and right."""
        self.labels = labels
        headers = ["Stage"]
        for what in ("output", "ms", "parameters"):
            # "ResNet101 · ft5.pth" on two lines: the columns stay narrow.
            headers += [f"{label.replace(' · ', chr(10))}\n{what}" for label in labels]
        self.table.setHorizontalHeaderLabels(headers)
        if self._shown:
            self._total()

    def show_side(self, side: int, data: ViewData | None) -> None:
        """Show network ``side`` (0 left, 1 right) from ``data``; None clears it."""
        rows = data.stage_rows if data is not None else ()
        self._timing[side] = data.timing if data is not None else ""
        if self._shown.get(side) == rows:
            return
        self._shown[side] = rows
        columns = [1 + side, 1 + len(self.labels) + side, 1 + 2 * len(self.labels) + side]
        cells = [(_shape(r.shape), f"{r.ms:.1f}", _parameters(r.parameters)) for r in rows]
        if rows:
            cells.append(
                ("", f"{sum(r.ms for r in rows):.1f}", _parameters(sum(r.parameters for r in rows)))
            )
        for row in range(len(GROUPS) + 1):
            texts = cells[row] if row < len(cells) else ("", "", "")
            for column, text in zip(columns, texts, strict=True):
                item = QTableWidgetItem(text)
                if column > len(self.labels):
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(row, column, item)
        self._draw(side, rows)
        self._total()

    def _draw(self, side: int, rows: tuple) -> None:
        if side in self.bars:
            self.chart.removeItem(self.bars.pop(side))
        if not rows:
            return
        offset = (side - (len(self.labels) - 1) / 2) * BAR_WIDTH
        bar = pg.BarGraphItem(
            x=np.arange(len(rows)) + offset,
            height=[row.ms for row in rows],
            width=BAR_WIDTH,
            brush=MODEL_COLOURS[side],
            pen=None,
        )
        self.chart.addItem(bar)
        self.bars[side] = bar
        self.chart.enableAutoRange()

    def _total(self) -> None:
        parts = []
        for side, label in enumerate(self.labels):
            rows = self._shown.get(side)
            if rows:
                total = sum(row.ms for row in rows)
                parameters = sum(row.parameters for row in rows)
                colour = MODEL_COLOURS[side]
                parts.append(
                    f"<span style='color:{colour}'>■</span> <b>{html.escape(label)}</b> "
                    f"{total:.1f} ms, "
                    f"{parameters / 1e6:.1f} M parameters"
                )
            else:
                parts.append(f"{html.escape(label)}: waiting for its analysis…")
        # Both sides are timed alike; say how, once (or each side's way if they differ).
        timing = dict.fromkeys(text for text in self._timing.values() if text)
        self.totals.setText(" · ".join(parts + list(timing)))

"""Attribution methods side by side: for the image and class on screen, each method ticked as
a map over the input, with how faithful it is (the deletion and insertion curves of RISE and
the areas under them).

The panel only displays and asks: it emits the `MethodJob` it wants next (`wanted`) and the
window sends it to the worker, one method at a time, and hands back the reply (`arrived`,
`failed`) and each pass of a slow method (`stepped`). A newer request (another image, class,
layer or set of methods) drops what is queued and overtakes the method running, which stops at
its next pass; *Cancel* stops it all.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from visualizer.ui.cam_panel import escaped
from visualizer.ui.flow_layout import flowing
from visualizer.ui.jobs import ModelSpec, Picture
from visualizer.ui.method_jobs import (
    DEFAULT_METHODS,
    LAYER_METHODS,
    METHOD_TITLES,
    METHODS,
    SLOW_METHODS,
    MethodData,
    MethodJob,
    MethodSettings,
    method_title,
)

BACKGROUND = "#1e1e1e"
DELETION_COLOUR = "#e15759"  # falls fast for a faithful map: a low area is good
INSERTION_COLOUR = "#4e79a7"  # rises fast for a faithful map: a high area is good
MOST_COLUMNS = 4
CURVES_HEIGHT = 104
SMALLEST_MAP = 150
LARGEST_MAP = 420
EXPLAINED = (
    "Deletion removes the pixels in the order of the map and insertion restores them into a "
    "blank input: a faithful map makes the class's probability fall fast (low deletion AUC, ↓) "
    "and rise fast (high insertion AUC, ↑). The curves: the probability (up, 0 to 1) against "
    "the fraction of pixels removed or restored (across, 0 to 1)."
)


@dataclass(frozen=True, eq=False)
class MethodsContext:
    """What the methods explain: an image, a network, a class, the layer for Grad-CAM; and
    how the maps look (the Grad-CAM panel's colormap and opacity)."""

    spec: ModelSpec
    picture: Picture
    target: int
    label: str  # the class's name
    standing: str  # how the network rates it, e.g. "12.3 %, top-1"
    layer: str  # where the layer methods attribute: a stage or a feature layer
    cam_lut: np.ndarray = field(repr=False)  # (256, 4) uint8
    opacity: float = 0.5

    @property
    def key(self) -> tuple[object, ...]:
        """What a method's map depends on: a new key asks for every map again."""
        return (self.spec, self.picture.key, self.target, self.layer)


class SquarePlot(pg.GraphicsLayoutWidget):
    """A pyqtgraph view as tall as it is wide (the inputs are square crops), up to
    LARGEST_MAP: no band of background above and below the picture."""

    def __init__(self) -> None:
        super().__init__()
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setMinimumSize(SMALLEST_MAP, SMALLEST_MAP)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt's name)
        return max(SMALLEST_MAP, min(width, LARGEST_MAP))

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(SMALLEST_MAP, SMALLEST_MAP)


class MethodCell(QWidget):
    """One method: its map over the input, its two areas, and its two curves."""

    def __init__(self, method: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.method = method
        self.data: MethodData | None = None
        self.title = QLabel(f"<b>{METHOD_TITLES[method]}</b>")
        self.title.setObjectName("panelTitle")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)  # a long title does not widen its column
        self.parameters = QLabel("")
        self.parameters.setObjectName("parameters")
        self.parameters.setStyleSheet("color: #555; font-size: 8pt;")
        self.parameters.setWordWrap(True)
        self.plot = SquarePlot()
        self.plot.setBackground(BACKGROUND)
        self.plot.ci.setContentsMargins(0, 0, 0, 0)
        self.box = self.plot.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.box.setMouseEnabled(x=False, y=False)
        self.picture = pg.ImageItem(axisOrder="row-major")
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.picture)
        self.box.addItem(self.heat)
        self.status = QLabel("waiting…")
        self.status.setObjectName("readout")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.aucs = QLabel("")
        self.aucs.setTextFormat(Qt.TextFormat.RichText)
        self.aucs.setWordWrap(True)  # a narrow column wraps it rather than widens
        self.aucs.setToolTip(EXPLAINED)
        self.curves = curves_plot()
        self.deletion = self.curves.plot(pen=pg.mkPen(DELETION_COLOUR, width=2))
        self.insertion = self.curves.plot(pen=pg.mkPen(INSERTION_COLOUR, width=2))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 6)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.plot)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.aucs)
        layout.addWidget(self.curves)
        layout.addWidget(self.parameters)  # last: the maps of a row stay level
        layout.addStretch(1)

    def set_heading(self, layer: str | None) -> None:
        """Title the cell with its method (and for a layer method, its layer)."""
        self.title.setText(f"<b>{escaped(method_title(self.method, layer))}</b>")

    def waiting(self, text: str = "waiting…") -> None:
        """Show nothing but ``text``: the method's map for the request on screen is to come."""
        self.data = None
        self.picture.clear()
        self.heat.clear()
        self.deletion.setData([], [])
        self.insertion.setData([], [])
        self.aucs.setText("")
        self.progress.hide()
        self.status.setText(text)
        self.status.show()

    def running(self, done: int, total: int, what: str) -> None:
        """Show the progress of the method (``done`` of ``total`` passes of ``what``)."""
        self.progress.show()
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.status.setText(f"{escaped(what)}: pass {done} of {total}")
        else:
            self.progress.setRange(0, 0)  # busy, amount unknown
            self.status.setText(escaped(what))
        self.status.show()

    def failed(self, error: str) -> None:
        """Say why the method failed."""
        self.waiting(f"<span style='color:#c0392b'>failed: {escaped(error)}</span>")

    def show_data(self, data: MethodData, lut: np.ndarray, opacity: float) -> None:
        """Show ``data``: the map over the input, the areas and the curves."""
        self.data = data
        self.set_heading(data.layer)
        self.parameters.setText(f"parameters: {escaped(data.parameters)}")
        self.picture.setImage(data.view, levels=(0, 255))
        self.heat.setImage(np.ascontiguousarray(data.map), levels=(0.0, 1.0), lut=lut)
        self.heat.setOpacity(opacity)
        self.box.autoRange(padding=0.0)
        self.deletion.setData(data.fractions, data.deletion)
        self.insertion.setData(data.fractions, data.insertion)
        self.curves.enableAutoRange(axis="y")
        self.curves.setXRange(0.0, 1.0, padding=0.02)
        self.aucs.setText(auc_text(data))
        self.progress.hide()
        self.status.hide()

    def set_look(self, lut: np.ndarray, opacity: float) -> None:
        """Another colormap or opacity for the map shown."""
        if self.data is not None:
            self.heat.setLookupTable(lut)
            self.heat.setOpacity(opacity)


def curves_plot() -> pg.PlotWidget:
    """A small plot for the deletion and insertion curves: the class's probability (up) as
    a fraction of the pixels (across, 0 to 1) is removed or restored."""
    plot = pg.PlotWidget(background=BACKGROUND)
    plot.setFixedHeight(CURVES_HEIGHT)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.setMenuEnabled(False)
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.getPlotItem().getAxis("left").setWidth(28)
    plot.setXRange(0.0, 1.0, padding=0.02)
    plot.setToolTip(EXPLAINED)
    return plot


def auc_text(data: MethodData) -> str:
    """The two areas, one a line, coloured as their curves: ``"■ deletion AUC 0.1234 …"``."""
    return (
        f"<span style='color:{DELETION_COLOUR}'>■</span> deletion AUC "
        f"<b>{data.deletion_auc:.4f}</b> ↓<br>"
        f"<span style='color:{INSERTION_COLOUR}'>■</span> insertion AUC "
        f"<b>{data.insertion_auc:.4f}</b> ↑"
    )


class MethodsPanel(QWidget):
    """The methods ticked, side by side, for the image and class on screen.

    ``settings``: the methods' parameters and the curves' steps (small ones make it quick,
    e.g. in tests); ``methods``: the methods ticked at the start.
    """

    wanted = Signal(object)  # a MethodJob to run now (it overtakes the one running)
    cancel_requested = Signal()  # stop the method running
    export_requested = Signal()  # the user asked for the figure of the methods shown
    methods_changed = Signal(tuple)  # the methods ticked, in the order they are listed

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        settings: MethodSettings | None = None,
        methods: Sequence[str] = DEFAULT_METHODS,
    ) -> None:
        super().__init__(parent)
        self.settings = settings or MethodSettings()
        self.context: MethodsContext | None = None
        self.cells: dict[str, MethodCell] = {}
        self._done: dict[str, tuple[object, ...]] = {}  # method → the key of the map it shows
        self._queue: list[str] = []
        self.running: MethodJob | None = None
        self._running_key: tuple[object, ...] | None = None  # the context key it is for
        self._requests = itertools.count(1)
        self._stopped = False  # cancelled by the user: nothing runs until asked again
        self._cells_made = False  # the cells are made when the panel is first shown
        self.boxes: dict[str, QCheckBox] = {}
        ticks = self._bar(methods)
        self.note = QLabel("Add an image: the methods explain its class once it is analysed.")
        self.note.setObjectName("readout")
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.RichText)
        self.note.setToolTip(EXPLAINED)
        self.sheet = QWidget()
        self.grid = QGridLayout(self.sheet)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(6)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.sheet)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(ticks)
        layout.addWidget(self.note)
        layout.addWidget(scroll, 1)
        self._lay_out()
        self._update_buttons()

    def _bar(self, methods: Sequence[str]) -> QWidget:
        """The methods to tick, and the buttons: in rows that wrap in a narrow pane."""
        widgets: list[QWidget] = [QLabel("Methods:")]
        for method in METHODS:
            box = QCheckBox(METHOD_TITLES[method])
            box.setChecked(method in methods)
            slow = " (many passes of the network: slow on a CPU)" if method in SLOW_METHODS else ""
            box.setToolTip(f"Show {METHOD_TITLES[method]}{slow}")
            box.toggled.connect(self._ticked)
            self.boxes[method] = box
            widgets.append(box)
        self.compute = QPushButton("Compute")
        self.compute.setToolTip("Compute the methods not shown yet (after a Cancel)")
        self.compute.clicked.connect(self.resume)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the method running and those waiting")
        self.cancel_button.clicked.connect(self.cancel)
        self.export = QPushButton("Export figure…")
        self.export.setToolTip("Save the methods shown, their curves and areas as one PNG")
        self.export.clicked.connect(self.export_requested)
        bar = flowing([*widgets, self.compute, self.cancel_button, self.export])
        bar.layout().setContentsMargins(4, 2, 4, 0)
        return bar

    # What is asked for

    def ticked(self) -> tuple[str, ...]:
        """The methods ticked, in the order they are listed."""
        return tuple(method for method, box in self.boxes.items() if box.isChecked())

    def set_methods(self, methods: Sequence[str]) -> None:
        """Tick ``methods`` (and only them)."""
        for method, box in self.boxes.items():
            box.blockSignals(True)
            box.setChecked(method in methods)
            box.blockSignals(False)
        self._ticked()

    def set_settings(self, settings: MethodSettings) -> None:
        """Run the methods with ``settings`` from now on (every map is made again)."""
        if settings != self.settings:
            self.settings = settings
            self._done.clear()
            if self.context is not None:
                self._say(self.context)
            self._restart()

    def set_context(self, context: MethodsContext | None) -> None:
        """Explain ``context`` (None: nothing to explain); the maps of the same image, network,
        class and layer are kept, and only take the new colormap and opacity."""
        old = self.context
        self.context = context
        if context is None:
            self._queue = []
            if self.running is not None:
                self.running = None
                self.cancel_requested.emit()
            for cell in self.cells.values():
                cell.waiting("")
            self._update_buttons()
            return
        self._say(context)
        if old is not None and old.key == context.key:
            for cell in self.cells.values():
                cell.set_look(context.cam_lut, context.opacity)
            if not self.busy():  # paused meanwhile: what is missing runs now
                self._restart()
            return
        self._stopped = False
        for method, cell in self.cells.items():
            cell.set_heading(context.layer if method in LAYER_METHODS else None)
        self._restart()

    def shown(self) -> dict[str, MethodData]:
        """The maps on screen for the context, by method, in the order they are listed."""
        key = self.context.key if self.context is not None else None
        return {
            method: cell.data
            for method, cell in self.cells.items()
            if cell.data is not None and self._done.get(method) == key
        }

    def busy(self) -> bool:
        """True while a method runs or waits to."""
        return self.running is not None or bool(self._queue)

    def cancel(self) -> None:
        """Stop the method running and drop those waiting; they stay undone until *Compute*
        or another request."""
        stopped = [self.running.method] if self.running is not None else []
        stopped += self._queue
        self._queue = []
        self._stopped = True
        if self.running is not None:
            self.running = None
            self.cancel_requested.emit()
        for method in stopped:
            if method in self.cells:
                self.cells[method].waiting("cancelled: press Compute to run it")
        self._update_buttons()

    def pause(self) -> None:
        """Stop the method running and drop those waiting, for now: the window wants the
        worker for a view that explains something else. The next context starts them again."""
        if self.running is not None:
            if self.running.method in self.cells:
                self.cells[self.running.method].waiting()
            self.running = None
            self.cancel_requested.emit()
        self._queue = []
        self._update_buttons()

    def resume(self) -> None:
        """Compute the methods ticked that are not shown yet."""
        self._stopped = False
        self._restart()

    # What comes back

    def arrived(self, job: MethodJob, data: MethodData) -> None:
        """The worker's map for ``job``: shown if it is the one awaited, then the next."""
        if job is not self.running or self.context is None:
            return
        self.running = None
        self._done[job.method] = self._running_key
        if job.method in self.cells:
            self.cells[job.method].show_data(data, self.context.cam_lut, self.context.opacity)
        self._next()

    def failed(self, job: MethodJob, error: str) -> None:
        """``job`` failed: its cell says why, and the next method runs."""
        if job is not self.running:
            return
        self.running = None
        if job.method in self.cells:
            self.cells[job.method].failed(error)
        self._next()

    def stepped(self, done: int, total: int, what: str) -> None:
        """A pass of the method running."""
        if self.running is not None and self.running.method in self.cells:
            self.cells[self.running.method].running(done, total, what)

    # Qt

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if not self._cells_made:  # not before: the window opens sooner without them
            self._cells_made = True
            self._lay_out()
        self._restart()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 (Qt's name)
        super().hideEvent(event)
        self.pause()  # nobody looks: it runs again when shown

    # Inside

    def _ticked(self) -> None:
        self._lay_out()
        self.methods_changed.emit(self.ticked())
        self._restart()

    def _lay_out(self) -> None:
        """A cell for each method ticked, up to MOST_COLUMNS in a row."""
        if not self._cells_made:
            return
        ticked = self.ticked()
        for method in [m for m in self.cells if m not in ticked]:
            cell = self.cells.pop(method)
            self.grid.removeWidget(cell)
            cell.deleteLater()
            self._done.pop(method, None)
        for method in ticked:
            if method not in self.cells:
                cell = MethodCell(method)
                if self.context is not None:
                    cell.set_heading(self.context.layer if method in LAYER_METHODS else None)
                cell.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
                self.cells[method] = cell
        columns = max(1, min(MOST_COLUMNS, len(ticked)))
        for index, method in enumerate(ticked):
            self.grid.addWidget(self.cells[method], index // columns, index % columns)
        for column in range(MOST_COLUMNS):
            self.grid.setColumnStretch(column, 1 if column < columns else 0)

    def _restart(self) -> None:
        """Queue the methods ticked whose map for the context is not shown, and run the
        first (overtaking one running for an earlier request)."""
        context = self.context
        if context is None or not self.isVisible():
            self._update_buttons()
            return
        missing = [m for m in self.ticked() if self._done.get(m) != context.key]
        running = self.running
        still_wanted = (
            running is not None
            and running.method in missing
            and self._running_key == context.key
            and running.settings == self.settings
            and not self._stopped
        )
        if still_wanted:
            self._queue = [m for m in missing if m != running.method]
            self._update_buttons()
            return
        for method in missing:
            self.cells[method].waiting(
                "not computed: press Compute" if self._stopped else "waiting…"
            )
        self._queue = [] if self._stopped else missing
        if running is not None:
            self.running = None
            if not self._queue:
                self.cancel_requested.emit()  # nothing overtakes it: stop it
        self._next()

    def _next(self) -> None:
        context = self.context
        if self.running is not None or context is None or not self._queue:
            self._update_buttons()
            return
        method = self._queue.pop(0)
        self._running_key = context.key
        self.running = MethodJob(
            request=next(self._requests),
            spec=context.spec,
            picture=context.picture,
            method=method,
            target=context.target,
            layer=context.layer if method in LAYER_METHODS else None,
            settings=self.settings,
        )
        self.cells[method].running(0, 0, "starting")
        self._update_buttons()
        self.wanted.emit(self.running)

    def _say(self, context: MethodsContext) -> None:
        steps = self.settings.steps
        self.note.setText(
            f"Explaining <b>{context.target} {escaped(context.label)}</b> ({context.standing}) "
            f"for {escaped(context.picture.label)} with {escaped(context.spec.label)}; Grad-CAM "
            f"and Guided Grad-CAM at {escaped(context.layer)}. Under each map, the class's "
            f"probability as its pixels are removed (<span style='color:{DELETION_COLOUR}'>"
            f"deletion</span>) or restored (<span style='color:{INSERTION_COLOUR}'>insertion"
            f"</span>) against the fraction of them (0 to 1), in {steps} steps; ↓ lower and ↑ "
            "higher are better."
        )

    def _update_buttons(self) -> None:
        context = self.context
        busy = self.busy()
        self.cancel_button.setEnabled(busy)
        missing = context is not None and any(
            self._done.get(m) != context.key for m in self.ticked()
        )
        self.compute.setEnabled(not busy and missing)
        self.export.setEnabled(bool(self.shown()))

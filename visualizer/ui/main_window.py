"""The main window: images on the left, the stage grid (or the attribution methods side by
side) in the middle, Grad-CAM on the right, timings, the layer tree and the chosen channel
below. It asks the worker for everything and only displays."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QMimeData, QSettings, QSignalBlocker, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from visualizer.folders import image_files
from visualizer.networks import NetworkSpec
from visualizer.ui.atlas_jobs import (
    DATASET_ORDERS,
    Patches,
    atlas_patches,
    covers,
    dataset_order,
    describe_atlas,
)
from visualizer.ui.cam_panel import CamPanel
from visualizer.ui.channel_view import ChannelView
from visualizer.ui.compare_view import CompareView
from visualizer.ui.controls import Controls
from visualizer.ui.files import local_file, pasted_picture, qimage_to_rgba
from visualizer.ui.grid_view import GridView
from visualizer.ui.image_strip import ImageStrip
from visualizer.ui.jobs import (
    STAGES,
    ModelInfo,
    ModelSpec,
    Picture,
    ViewData,
    ViewOptions,
    load_picture,
    untrained_banner,
)
from visualizer.ui.layer_tree import LayerTree
from visualizer.ui.live import LIVE_KINDS, LiveController
from visualizer.ui.live_bar import LiveBar
from visualizer.ui.live_jobs import VIDEO_SUFFIXES, LiveFrame, is_video
from visualizer.ui.message_bar import MessageBar
from visualizer.ui.method_jobs import (
    DEFAULT_METHODS,
    METHODS,
    MethodJob,
    MethodSettings,
    method_title,
)
from visualizer.ui.methods_panel import MethodsContext, MethodsPanel
from visualizer.ui.network_dialog import ask_network, save_network, saved_network
from visualizer.ui.state import SIDES, Requests, WindowState
from visualizer.ui.worker import Reply, Worker

EXPORTS = {
    "grid": "Stage grid PNG…",
    "grids": "All five stage grids…",
    "overlay": "Grad-CAM overlay PNG…",
    "grid_figure": "Annotated stage grid PNG…",
    "overlay_figure": "Annotated Grad-CAM PNG…",
    "timings": "Timings CSV…",
    "methods": "Attribution methods figure PNG…",
    "atlas": "Channel atlas PNG (dataset index)…",
    "comparison": "Comparison PNG…",
    "comparison_timings": "Comparison timings CSV…",
}
EXPORT_BUTTONS = {
    "grid": "Grid PNG",
    "grids": "All grids",
    "overlay": "Overlay PNG",
    "grid_figure": "Annotated",
    "timings": "Timings CSV",
    "comparison": "Comparison PNG",
    "comparison_timings": "Comparison CSV",
}
EXPORT_KEYS = {"grid": "Ctrl+E", "grids": "Ctrl+Shift+E", "comparison": "Ctrl+E"}
STAGE_EXPORTS = ("grid", "grids", "grid_figure")  # of the stages C1–C5, not of a layer picked
CAM_EXPORTS = ("overlay", "overlay_figure")  # of Grad-CAM at a stage
METHODS_SETTING = "methods"  # the methods ticked in the Methods tab
SCALE_NOTES = {"channel": "each channel scaled by itself", "stage": "one scale for the stage"}
SAVED_VIEW_OPTIONS = ("colormap", "scale", "order", "cam_colormap")
CUSTOM_NETWORK = "network"  # settings group: the last custom network that loaded
COMPARED_NETWORK = "compared"  # settings group: the network compared with the one in use
NETWORK_IN_USE = "in_use"  # settings group: the network in use, for the next start
LABEL_FILES = "Labels (*.txt *.json *.csv);;All files (*)"
RELAYOUT_GAIN = 1.15  # a resized pane lays its tiles out again when they gain this much
STYLE = """
#banner { background: #fff3cd; color: #533f03; border-bottom: 1px solid #e0c36a; }
#errors { background: #f8d7da; color: #58151c; border-bottom: 1px solid #e4a1a8; }
#live { background: #e3f1e6; color: #14381f; border-bottom: 1px solid #9ccaa8; }
#liveStats { font-family: monospace; }
#panelTitle { font-weight: bold; padding: 4px 0; }
#readout { color: #444; padding: 2px 4px; }
#note { background: #e7f0fb; color: #15325c; padding: 3px 6px; }
#note[differ="true"] { background: #fff3cd; color: #533f03; }
"""


class MainWindow(QMainWindow):
    """fmviz's window: the controller between its views, its Qt-free ``state`` and the worker.

    ``spec`` is the network to load; ``other`` the one compare mode compares it with (None:
    the one remembered if ``remembered``, else the other architecture); ``settings``
    remembers choices. The views show the state by subscribing to its events; the window
    changes the state in answer to the user and to the worker's replies.
    """

    view_shown = Signal()  # a complete view (grid, predictions, Grad-CAM) is on screen
    patches_shown = Signal()  # the Channel tab shows a channel's top dataset images
    error_shown = Signal(str)  # every error the user is shown, as it is shown

    def __init__(
        self,
        spec: ModelSpec,
        settings: QSettings,
        parent: QWidget | None = None,
        *,
        compare: bool = False,
        other: ModelSpec | None = None,
        remembered: bool = True,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        if other is None and remembered:
            saved = saved_network(settings, COMPARED_NETWORK)
            other = ModelSpec.of(saved, spec.device) if saved is not None else None
        self.state = WindowState(spec, self._saved_options(), other=other)
        self.requests = Requests()
        self.data: ViewData | None = None  # the single page's view on screen
        self.method_settings = MethodSettings()  # how methods other than Grad-CAM run
        self._tree_spec: ModelSpec | None = None  # the network whose layers the tree lists
        # The (index, layer, channel) whose patches the Channel tab shows or awaits.
        self._patches_for: tuple[object, str, int] | None = None
        self._channel_follows: str | None = None  # the image of a patch clicked, on its way
        self._room_made: object = None  # the index the lower panel was last made room for
        self._keys = itertools.count(1)
        self._banner_text = ""
        self.worker = Worker(self)
        self.worker.replied.connect(self._received)
        self.worker.progress.connect(self._progress)
        self.worker.stepped.connect(self._stepped)
        # Replies of the kinds that the window only hands on.
        self._repliers = {
            "method": self._method_replied,
            "layers": self._layers_replied,
            "atlas": self._atlas_replied,
            "atlas_check": self._atlas_checked,
            "patches": self._patches_replied,
        }
        self._build()
        self.live = LiveController(self)
        self._subscribe()
        self._show_sides()
        self._restore_geometry()
        self._update_title()
        self.set_compare(compare)

    # The state, read-only here: it changes through the methods below.

    @property
    def spec(self) -> ModelSpec:
        return self.state.spec

    @property
    def options(self) -> ViewOptions:
        return self.state.options

    @property
    def compare(self) -> bool:
        return self.state.compare

    @property
    def current(self) -> int | None:
        return self.state.current

    @property
    def pictures(self) -> dict[int, Picture]:
        return self.state.pictures

    # Building

    def _build(self) -> None:
        self.setAcceptDrops(True)
        self.setStyleSheet(STYLE)
        self.controls = Controls(self)
        self.controls.show_spec(self.spec)
        self.controls.show_options(self.options)
        self.controls.model_changed.connect(lambda model: self.set_spec(model=model))
        self.controls.device_changed.connect(lambda device: self.set_spec(device=device))
        self.controls.stage_changed.connect(self.show_stage)
        self.controls.view_changed.connect(lambda changes: self.set_options(**changes))
        self.addToolBar(self.controls.network_toolbar(self))
        self.addToolBar(self.controls.view_toolbar(self))

        self.strip = ImageStrip()
        self.strip.picture_selected.connect(self.select_picture)
        self.banner = MessageBar("banner")
        self.errors = MessageBar("errors")
        self.grid = GridView()
        self.grid.channel_clicked.connect(self.show_channel)
        self.grid.aspect_changed.connect(self._grid_resized)
        self.cam = CamPanel()
        self.cam.target_chosen.connect(lambda target: self.set_options(target=target))
        self.cam.colormap_chosen.connect(lambda name: self.set_options(cam_colormap=name))
        self.cam.stage_chosen.connect(self._cam_stage_chosen)
        self.cam.method_chosen.connect(lambda method: self.set_options(cam_method=method))
        self.cam.opacity_changed.connect(self._opacity_changed)
        self.timing = TimingTabs()
        self.channel = self.timing.channel
        self.layer_tree = self.timing.tree
        self.layer_tree.layer_chosen.connect(self.pick_layer)
        self.layer_tree.stage_chosen.connect(self.show_stage)
        self.timing.timings.layer_clicked.connect(self._timing_row_clicked)
        self.channel.atlas.patch_clicked.connect(self.open_patch)
        self.channel.atlas.export_requested.connect(lambda: self.export("atlas"))
        self.methods = MethodsPanel(settings=self.method_settings, methods=self._saved_methods())
        self.methods.wanted.connect(self._request_method)
        self.methods.cancel_requested.connect(lambda: self.worker.cancel("method"))
        self.methods.export_requested.connect(lambda: self.export("methods"))
        self.methods.methods_changed.connect(
            lambda ticked: self.settings.setValue(METHODS_SETTING, list(ticked))
        )
        self.compare_view = CompareView()
        self.compare_view.target_chosen.connect(lambda target: self.set_options(target=target))
        self.compare_view.side_target_chosen.connect(self.set_side_target)
        self.compare_view.colormap_chosen.connect(lambda name: self.set_options(cam_colormap=name))
        self.compare_view.stage_chosen.connect(self._cam_stage_chosen)
        self.compare_view.method_chosen.connect(lambda method: self.set_options(cam_method=method))
        self.compare_view.opacity_changed.connect(self._opacity_changed)
        self.compare_view.panes[0].grid.aspect_changed.connect(self._grid_resized)
        self._lay_out()
        self._build_menus()
        self._build_status_bar()
        for child in self.findChildren(QWidget):  # a drop anywhere lands on the window
            child.setAcceptDrops(False)

    def _lay_out(self) -> None:
        middle = QWidget()
        column = QVBoxLayout(middle)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        self.grid_title = QLabel("Drop images here, or File → Open…")
        self.grid_title.setObjectName("panelTitle")
        column.addWidget(self.grid_title)
        column.addWidget(self.grid, 1)
        self.views = QTabWidget()  # the grid, or the attribution methods side by side
        self.views.setObjectName("views")
        self.views.setDocumentMode(True)
        self.views.addTab(middle, "Channels")
        self.views.addTab(self.methods, "Attribution methods")
        self.views.setTabToolTip(1, "Captum's methods side by side, with deletion and insertion")
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.views)
        top.addWidget(self.cam)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 1)
        top.setSizes([760, 360])
        self.body = QSplitter(Qt.Orientation.Vertical)
        self.body.setObjectName("body")
        self.body.addWidget(top)
        self.body.addWidget(self.timing)
        self.body.setStretchFactor(0, 3)
        self.body.setStretchFactor(1, 1)
        self.body.setSizes([560, 240])
        self.pages = QStackedWidget()  # one network, or the two compared
        self.pages.addWidget(self.body)
        self.pages.addWidget(self.compare_view)
        outer = QSplitter(Qt.Orientation.Horizontal)
        outer.addWidget(self.strip)
        outer.addWidget(self.pages)
        outer.setStretchFactor(1, 1)
        outer.setSizes([140, 1260])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.errors)
        self.live_bar = LiveBar()
        layout.addWidget(self.live_bar)
        layout.addWidget(outer, 1)
        self.setCentralWidget(central)

    def _build_menus(self) -> None:
        files = self.menuBar().addMenu("&File")
        self._action(files, "&Open images…", self.open_images, QKeySequence.StandardKey.Open)
        self._action(files, "&Paste image", self.paste, QKeySequence.StandardKey.Paste)
        self.weights_action = self._action(files, "Load &weights…", self.load_weights)
        self.weights_action.setToolTip(
            "A network: architecture, weights (ImageNet, random or a checkpoint), labels and "
            "preprocessing"
        )
        self.labels_action = self._action(files, "Load &labels…", self.load_labels)
        files.addSeparator()
        self.index_action = self._action(files, "Open &index…", self.open_index_dialog)
        self.index_action.setToolTip(
            "A dataset index made by fmviz index: each channel's top dataset images in the "
            "Channel tab, and grid orders by the dataset's statistics"
        )
        self.close_index_action = self._action(files, "&Close index", self.close_index)
        self.close_index_action.setEnabled(False)
        files.addSeparator()
        export = files.addMenu("&Export")
        self.export_actions = {}
        for what, text in EXPORTS.items():
            if what == "comparison":
                export.addSeparator()
            action = self._action(export, text, lambda _=False, what=what: self.export(what))
            if what in EXPORT_KEYS:  # a key used twice is only ever visible once (set_compare)
                action.setShortcut(QKeySequence(EXPORT_KEYS[what]))
            self.export_actions[what] = action
        files.addSeparator()
        self._action(files, "&Quit", self.close, "Ctrl+Q")
        view = self.menuBar().addMenu("&View")
        for action in self.controls.stage_actions.values():
            view.addAction(action)
        view.addSeparator()
        self.compare_action = self._action(view, "&Compare two networks", self.set_compare)
        self.compare_action.setCheckable(True)
        self.compare_action.setShortcut(QKeySequence("Ctrl+K"))
        self.compare_action.setIconText("Compare")
        self.compare_action.setToolTip(
            "Two networks side by side on the same image and stage (Ctrl+K); "
            "View → Compare with… chooses the second"
        )
        self.compare_with_action = self._action(view, "Compare &with…", self.compare_with)
        view.addSeparator()
        self.methods_action = self._action(view, "Attribution &methods", self.show_methods)
        self.methods_action.setCheckable(True)
        self.methods_action.setShortcut(QKeySequence("Ctrl+M"))
        self.methods_action.setToolTip(
            "Captum's methods side by side for the image and class shown (Ctrl+M)"
        )
        self.views.currentChanged.connect(lambda index: self.methods_action.setChecked(index == 1))
        self.views.currentChanged.connect(self._show_exports)
        self.layers_action = self._action(view, "&Layers", self.show_layers, "Ctrl+L")
        self._add_live_action(view)
        self.findChild(QToolBar, "networkToolbar").addAction(self.compare_action)
        bar = self.addToolBar("Export")
        bar.setObjectName("exportToolbar")
        bar.addWidget(QLabel(" Export "))
        for what, action in self.export_actions.items():
            if what in EXPORT_BUTTONS:  # the menu has them all; the toolbar the usual ones
                action.setIconText(EXPORT_BUTTONS[what])
                bar.addAction(action)
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&About fmviz", self._about)

    def _add_live_action(self, view: QMenu) -> None:
        view.addSeparator()
        self.live_action = self._action(view, "L&ive…", self.choose_live, "Ctrl+Shift+L")
        self.live_action.setToolTip(
            "A camera or a video file, analysed as it plays (drop a video on the window too)"
        )

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.busy = QProgressBar()
        self.busy.setMaximumWidth(180)
        self.busy.setTextVisible(False)
        self.busy.hide()
        self.device_label = QLabel("loading…")
        self.weights_label = QLabel("")
        self.labels_label = QLabel("")  # where the class names come from
        self.preprocessing_label = QLabel("")  # the input transform in use
        bar.addPermanentWidget(self.busy)
        bar.addPermanentWidget(self.device_label)
        bar.addPermanentWidget(self.weights_label)
        bar.addPermanentWidget(self.labels_label)
        bar.addPermanentWidget(self.preprocessing_label)

    def _subscribe(self) -> None:
        """The views (and the saved settings) follow the state."""
        events = self.state.events
        events.spec.connect(self.controls.show_spec)
        events.spec.connect(self._save_spec)
        events.spec.connect(self._update_title)
        events.options.connect(self.controls.show_options)
        events.options.connect(self._save_options)
        events.spec.connect(self._show_sides)
        events.other.connect(self._show_sides)
        events.other.connect(self._update_title)
        events.other.connect(self._save_other)
        events.compare.connect(self._show_mode)
        events.compare.connect(self._update_title)
        events.current.connect(self._update_title)
        events.current.connect(lambda key: key is not None and self.strip.select(key))
        events.options.connect(self._show_orders)
        events.atlas.connect(self._atlas_changed)
        self.state.picture_added.connect(self.strip.add_picture)

    def _save_spec(self, spec: ModelSpec) -> None:
        self.settings.setValue("model", spec.model)
        self.settings.setValue("device", spec.device)
        save_network(self.settings, NETWORK_IN_USE, spec.network)

    def _save_other(self, other: ModelSpec | None) -> None:
        save_network(self.settings, COMPARED_NETWORK, other.network if other else None)

    def _show_sides(self, *_changed: object) -> None:
        self.compare_view.set_labels(self.state.side_labels())

    def _save_options(self, options: ViewOptions) -> None:
        for name in SAVED_VIEW_OPTIONS:
            if name == "order" and options.order in DATASET_ORDERS:
                continue  # an index's order, for this index only: the last other one is kept
            if self.settings.value(name) != getattr(options, name):
                self.settings.setValue(name, getattr(options, name))

    # What the user does

    def start(self, paths: Iterable[str]) -> None:
        """Load the network (behind the window) and the images given."""
        if not self.compare:  # compared networks load with their views
            self._request_model()
        self.add_files(list(paths))

    def add_files(self, paths: list[str]) -> None:
        """Read ``paths`` (files; folders give the images inside) into the strip.

        Folders are listed off the event loop; the first new image is shown once read.
        """
        paths = list(paths)
        videos = [path for path in paths if is_video(path) and os.path.isfile(path)]
        if videos:  # played live, one after the other; the images beside them are read as usual
            self.live.open_all(videos)
            paths = [path for path in paths if path not in videos]
            if not paths:
                return
        self._send("scan", lambda _s: image_files(paths), lane="files", latest_wins=False)

    def _scanned(self, found: tuple[list[str], list[str]]) -> None:
        files, problems = found
        for problem in problems:
            self.show_error(problem)
        known = {os.path.realpath(p.source): key for key, p in self.pictures.items()}
        known |= self.requests.loading
        again = [known[real] for real in map(os.path.realpath, files) if real in known]
        if again and again[0] in self.pictures:  # already in the strip: show it again
            self.select_picture(again[0])
        batch = []
        for path in files:
            real = os.path.realpath(path)
            if real in known:
                continue
            key = known[real] = self.requests.loading[real] = next(self._keys)
            batch.append(key)
            self._send("load", lambda _s, key=key, path=path: load_picture(key, path),
                       lane="files", latest_wins=False, context=(key, real))  # fmt: skip
        if batch:
            self.requests.select_next = batch  # the newest batch decides what is shown

    def add_image(self, image: QImage, name: str) -> None:
        """Add an image given in memory (pasted or dropped from another program)."""
        key = next(self._keys)
        rgba = qimage_to_rgba(image)
        self.requests.select_next = [key]
        self._send("load", lambda _s: pasted_picture(key, name, rgba),
                   lane="files", latest_wins=False, context=(key, None))  # fmt: skip

    def add_mime(self, mime: QMimeData | None, where: str) -> None:
        """Add what a drop or the clipboard holds: local files, else image data."""
        files = [local_file(url) for url in mime.urls() if url.isLocalFile()] if mime else []
        if files:
            self.add_files(files)
        elif mime is not None and mime.hasImage():
            self.add_image(QImage(mime.imageData()), f"{where} {next(self._keys)}")
        else:
            source = "clipboard" if where == "pasted" else "drop"
            self.show_error(f"Nothing to add: the {source} holds no image file or image data.")

    def select_picture(self, key: int) -> None:
        """Analyse the picture ``key`` and show it (again, after a failure)."""
        leaving_live = self.live.showing
        if leaving_live:  # the live frames stop; Play in the live bar brings them back
            self.live.leave()
            self._update_title()
        if key not in self.pictures or (
            key == self.current and not self.requests.view_failed and not leaving_live
        ):
            return
        follows = self._channel_follows
        self._channel_follows = None
        if follows is None or os.path.realpath(self.pictures[key].source) != follows:
            self._clear_channel()  # a patch clicked keeps its channel: seen on its own image
        self.state.current = key
        self._request_view()

    def set_spec(self, **changes: object) -> None:
        """Use another network, device, weights, labels or preprocessing.

        Another architecture drops a weights file (it fits one architecture only) for
        ImageNet weights, with the labels and preprocessing that went with it.
        """
        spec = self.state.changed_spec(**changes)
        if spec == self.spec:
            return
        self._use_spec(spec)

    def set_network(self, network: NetworkSpec) -> None:
        """Use ``network`` (architecture, weights, labels, preprocessing) on the device in use."""
        spec = ModelSpec.of(network, self.spec.device)
        if spec != self.spec:
            self._use_spec(spec)

    def set_other(self, network: NetworkSpec | None) -> None:
        """Compare the network in use with ``network`` (None: the other architecture), and
        show the comparison."""
        other = ModelSpec.of(network, self.spec.device) if network is not None else None
        if other != self.state.other:
            self.state.side_targets = (None, None)
            self.state.other = other
            if self.compare:
                self._request_view()
        if not self.compare:
            self.set_compare(True)

    def set_side_target(self, side: int, target: int | None) -> None:
        """Compare mode, the two networks' classes differing: explain ``target`` (None: its
        top-1) on ``side``."""
        targets = list(self.state.side_targets)
        targets[side] = target
        if tuple(targets) != self.state.side_targets:
            self.state.side_targets = (targets[0], targets[1])
            self._request_view()

    def _use_spec(self, spec: ModelSpec) -> None:
        before = self.spec
        self._clear_channel()
        if not _same_classes(spec, self.spec):  # a class chosen may mean nothing now
            self.state.options = dataclasses.replace(self.options, target=None)
            self.state.side_targets = (None, None)
        if spec.model != self.spec.model:  # the layers picked are the other network's
            self.state.options = self.options.single()
            self.layer_tree.clear_layers(f"Loading the layers of {spec.label}…")
        if self.state.other is not None:
            self.state.other = dataclasses.replace(self.state.other, device=spec.device)
        self.state.spec = spec
        if not self.compare:  # compared networks load with their views
            self._request_model()
        atlas = self.state.atlas
        if atlas is not None and (spec.model, spec.weights) != (before.model, before.weights):
            self.state.atlas = None  # another architecture or weights: surely not its index
            self.show_error(
                f"The index {atlas.folder} was closed: it was made for {_in_words(before)}, "
                f"and {_in_words(spec)} is in use now."
            )
        elif atlas is not None:  # labels, preprocessing, device: is it still this network's?
            self._send("atlas_check", lambda session: session.check_atlas(spec, atlas),
                       context=spec)  # fmt: skip
        self._request_view()

    def set_compare(self, on: bool) -> None:
        """Show VGG16 and ResNet101 side by side (``on``), or the one network chosen."""
        on, changed = bool(on), bool(on) != self.compare
        if not changed:
            self._show_mode(on)  # the window's first call: the mode is shown as it is
            return
        if on and self.live.active:  # the live view is of one network
            self.live.stop()
        self.state.compare = on  # the views follow (_show_mode)
        self.settings.setValue("compare", on)
        # What the other mode asked for and has not started is not needed any more.
        self.worker.cancel(*(["view"] if on else [f"view:{side}" for side in SIDES]))
        if on and self.current is not None and not self.compare_view.complete(self.current):
            for side in SIDES:
                self.compare_view.waiting(side, "analysing…")
        if not on and self.data is not None and self.data.picture != self.current:
            self.data = None  # the single page shows an earlier image: nothing to export
            self.grid_title.setText("Analysing…")
        self._request_view()

    def _show_mode(self, on: bool) -> None:
        """Compare mode (``on``) or the one network: its page, toolbar and exports."""
        self.compare_action.setChecked(on)
        self.pages.setCurrentWidget(self.compare_view if on else self.body)
        self.controls.model.setEnabled(not on)
        self.controls.model.setToolTip("Compare mode shows both networks" if on else "Network")
        self.weights_action.setEnabled(not on)
        self.labels_action.setEnabled(not on)
        self._show_exports()

    def _show_exports(self) -> None:
        """The exports of what is on screen: the comparison's in compare mode, else the
        network's, the methods' figure while the methods are shown, and a channel's atlas
        while a dataset index is open."""
        on = self.compare
        methods = not on and self.views.currentWidget() is self.methods
        for what, action in self.export_actions.items():
            if what == "methods":
                shown = methods
            elif what == "atlas":
                shown = not on and self.state.atlas is not None
            else:
                shown = what.startswith("comparison") == on
            action.setVisible(shown)

    def show_stage(self, stage: str) -> None:
        """Show ``stage`` in the grid (keys 1–5), and Grad-CAM at its stage again if a layer
        was picked."""
        self.set_options(stage=stage, layer=None, cam_layer=None)

    def pick_layer(self, layer: str) -> None:
        """Show the feature layer ``layer``'s channels in the grid and its Grad-CAM: its
        output is captured for the image (one more pass of the network), the first time."""
        if self.compare:
            self.set_compare(False)  # layers are one network's
        self.views.setCurrentIndex(0)
        self.set_options(layer=layer, cam_layer=layer)

    def show_methods(self, on: bool = True) -> None:
        """Show the attribution methods side by side (``on``), or the channel grid."""
        if on and self.compare:
            self.set_compare(False)  # one network's methods
        self.views.setCurrentIndex(1 if on else 0)

    def show_layers(self) -> None:
        """Show the layer tree (below the grid) and put the cursor in its filter."""
        if self.compare:
            self.set_compare(False)
        self.timing.setCurrentWidget(self.layer_tree)
        self.layer_tree.filter.setFocus()

    def set_method_settings(self, settings: MethodSettings) -> None:
        """Run the attribution methods with ``settings`` (parameters, curve steps) from now
        on; the map beside the grid is asked for again if it is not Grad-CAM at a stage."""
        if settings == self.method_settings:
            return
        self.method_settings = settings
        self.methods.set_settings(settings)
        if self.options.cam_method != "gradcam":
            self._request_view()

    def _cam_stage_chosen(self, stage: str) -> None:
        if stage in STAGES:  # else the layer picked, listed after them
            self.set_options(cam_stage=stage, cam_layer=None)

    def _timing_row_clicked(self, layer: str) -> None:
        if layer in self.layer_tree.names():
            self.pick_layer(layer)
        else:
            self.statusBar().showMessage(
                f"{layer}: its output is no single feature map (a module used several times in "
                "a pass, or no image-shaped output), so it cannot be shown as a grid",
                8000,
            )

    def set_options(self, **changes: object) -> None:
        """Change how the analysis is shown (stage, colormap, order, class, …)."""
        changes.setdefault("aspect", self.state.grid_aspect)  # the tiles fill the pane
        options = self._with_dataset_order(dataclasses.replace(self.options, **changes))
        if options == self.options:
            return
        if options.grid_name != self.options.grid_name:
            self._clear_channel()
        self.state.options = options
        self._request_view()

    def _with_dataset_order(self, options: ViewOptions) -> ViewOptions:
        """``options`` with the channels of a dataset order filled in from the open index;
        an index's order where no index covers the grid's stage (or layer): channel order."""
        if options.order not in DATASET_ORDERS:
            return (
                dataclasses.replace(options, dataset_order=()) if options.dataset_order else options
            )
        atlas = self.state.atlas
        if atlas is None or not covers(atlas, options.grid_name):
            self.statusBar().showMessage(
                f"No dataset index covers {options.grid_name}: the grid is in channel order", 8000
            )
            return dataclasses.replace(options, order="index", dataset_order=())
        order = dataset_order(atlas, options.grid_name, options.order)
        return dataclasses.replace(options, dataset_order=order)

    def _show_orders(self, options: ViewOptions) -> None:
        """The order picker offers the dataset's orders while an index covers the grid."""
        self.controls.show_dataset_orders(
            covers(self.state.atlas, options.grid_name), options.order
        )

    def _clear_channel(self) -> None:
        self.channel.clear()
        if self.timing.currentWidget() is self.channel:
            self.timing.setCurrentWidget(self.timing.timings)
        self._show_patches()

    def show_channel(self, channel: int) -> None:
        """Open ``channel`` of the stage large, beside the input (and its top dataset images,
        with an index open)."""
        if self.data is not None:
            self.channel.show_channel(self.data, channel)
            self.timing.setCurrentWidget(self.channel)
            self._show_patches()

    # The dataset index

    def open_index_dialog(self) -> None:
        """Ask for an index folder (made by ``fmviz index``) and open it."""
        folder = QFileDialog.getExistingDirectory(self, "Open a dataset index", self._folder())
        if folder:
            self._remember_folder(folder)
            self.open_index(folder)

    def open_index(self, folder: str) -> None:
        """Open the dataset index in ``folder`` (read, and checked against the network in use,
        off the event loop). An index of another network, other weights or other
        preprocessing is refused with the reason, and the index open before stays open."""
        spec = self.spec
        self._send("atlas", lambda session: session.open_atlas(spec, folder), context=spec)

    def close_index(self) -> None:
        """Close the dataset index: no patches, no dataset orders."""
        self.worker.cancel("atlas", "atlas_check", "patches")
        self.state.atlas = None

    def _atlas_replied(self, reply: Reply) -> None:
        if reply.error is not None:
            self.show_error(reply.error)  # the index open before (if any) stays
        elif reply.context != self.spec:  # checked for a network no longer in use
            self.show_error(
                f"The index {reply.value.folder} was checked against {reply.context.label}, "
                f"and {self.spec.label} is in use now: open it again."
            )
        else:
            self.state.atlas = reply.value
            self.statusBar().showMessage(f"Index {describe_atlas(reply.value)}", 10000)

    def _atlas_checked(self, reply: Reply) -> None:
        if reply.context == self.spec and reply.error is not None and self.state.atlas:
            self.state.atlas = None
            self.show_error(f"{reply.error}. The index was closed.")

    def _atlas_changed(self, atlas: object) -> None:
        self.close_index_action.setEnabled(atlas is not None)
        self._show_exports()
        self.close_index_action.setText(
            f"&Close index {atlas.folder.name}" if atlas is not None else "&Close index"
        )
        options = self._with_dataset_order(self.options)
        self._show_orders(options)
        if options != self.options:  # the order by the index is now by this one, or gone
            self.state.options = options
            self._request_view()
        self._show_patches()

    def _show_patches(self) -> None:
        """The Channel tab's dataset images: those of the channel shown, from the index open
        (cropped off the event loop), or a line saying why there are none."""
        panel, atlas, channel = self.channel.atlas, self.state.atlas, self.channel.channel
        if atlas is None:
            self._patches_for = None
            self.channel.show_atlas(False)
            return
        self.channel.show_atlas(True)
        if channel is None or self.data is None:
            self._patches_for = None
            panel.show_note("Click a tile in the grid to see the dataset images that excite its "
                            f"channel most (index {describe_atlas(atlas)}).")  # fmt: skip
            return
        layer = self.data.grid_name
        if not covers(atlas, layer):
            self._patches_for = None
            panel.show_note(
                f"The index {atlas.folder.name} covers {', '.join(atlas.layers)}, not {layer}: "
                "choose one of those to see its channels' dataset images."
            )
            return
        wanted = (atlas, layer, channel)
        if wanted == self._patches_for:
            return
        self._patches_for = wanted
        panel.waiting(layer, channel, len(atlas.top(layer, channel)), atlas.folder.name)
        self._send("patches", lambda _session: atlas_patches(atlas, layer, channel),
                   lane="atlas", context=wanted)  # fmt: skip

    def _patches_replied(self, reply: Reply) -> None:
        if reply.context != self._patches_for:
            return  # another channel, layer or index since
        if reply.error is not None:
            self._patches_for = None  # asked again when the channel is shown again
            self.channel.atlas.show_note(f"The dataset images cannot be shown: {reply.error}")
            self.show_error(reply.error)
            return
        patches: Patches = reply.value
        self.channel.atlas.show_patches(patches)
        self._make_room_for_patches()
        self.patches_shown.emit()

    def _make_room_for_patches(self) -> None:
        """Once an index is open: the lower panel grows, if it must, to show a whole row of
        patches (the user's own size is kept after that)."""
        if self._room_made is self.state.atlas:
            return
        self._room_made = self.state.atlas
        panel = self.channel.atlas
        need = panel.room() + self.timing.height() - panel.height()
        top, bottom = self.body.sizes()
        if bottom < need and top + bottom > need:
            self.body.setSizes([top + bottom - need, need])

    def open_patch(self, source: str) -> None:
        """Open the image of a patch clicked, as if the user had opened the file: it joins the
        strip and is analysed, and the channel stays in view, on that image."""
        self._channel_follows = os.path.realpath(source)
        self.add_files([source])

    def choose_live(self) -> None:
        """View → Live…: a camera (the first by default) or a video file, played live."""
        from visualizer.core.live import list_cameras  # noqa: PLC0415

        cameras = list_cameras()
        names = [camera.name for camera in cameras]
        names = [  # two cameras of one make are told apart by their device
            f"{name} ({camera.device})" if names.count(name) > 1 else name
            for name, camera in zip(names, cameras, strict=True)
        ]
        other = "A video file…"
        label = (
            "Analyse as it plays:"
            if cameras
            else ("No camera found on this machine. Play a video file instead:")
        )
        chosen, ok = QInputDialog.getItem(self, "Live", label, [*names, other], 0, False)
        if not ok:
            return
        if chosen != other:
            self.live.open(cameras[names.index(chosen)].device)
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Play a video live", self._folder(),
            f"Videos ({VIDEO_FILTER});;All files (*)",
        )  # fmt: skip
        if path:
            self._remember_folder(path)
            self.live.open(path)

    def live_options(self) -> ViewOptions:
        """The options a live frame is shown with: the single view's (compare is off)."""
        return self.options

    def show_live(self, frame: LiveFrame) -> None:
        """Show a live frame's view (the controller's reply)."""
        self._show(frame.data, live=True)

    def live_started(self, description: str | None) -> None:
        """A live source plays (``description``: a new one): its frames take the view."""
        if self.compare:
            self.set_compare(False)
        self._update_title()

    def live_stopped(self) -> None:
        """The live view closed: the strip's image is shown again."""
        self._update_title()
        self.data = None  # the last frame's view: not the strip's image
        if self.current is not None:
            self._request_view()
        else:
            self.grid_title.setText("Drop images here, or File → Open…")

    def add_frame(self, frame: LiveFrame) -> Picture:
        """Add a live frame to the strip as an image (a snapshot), unselected. Its name is
        the frame's (``clip_frame00012``), with ``_2``, ``_3``… once that is taken (the same
        frame kept twice, or a camera's frame numbers starting again), so that exports named
        after it never overwrite another's."""
        taken = {Path(picture.name).stem for picture in self.pictures.values()}  # as exported
        name, copies = frame.picture.name, 1
        while name in taken:
            copies += 1
            name = f"{frame.picture.name}_{copies}"
        picture = dataclasses.replace(frame.picture, key=next(self._keys), name=name, live=False)
        self.state.add_picture(picture)
        return picture

    def picture_of(self, data: ViewData) -> Picture:
        """The picture a view shows: the strip's, or the live frame's."""
        if data.picture in self.pictures:
            return self.pictures[data.picture]
        return self.live.last.picture

    def ask_record_path(self, name: str) -> str:
        path, _ = QFileDialog.getSaveFileName(
            self, "Record the live view", str(Path(self._folder()) / name),
            "Video (*.mp4 *.mkv *.mov *.avi *.webm)",
        )  # fmt: skip
        if path and not Path(path).suffix:
            path += ".mp4"
        return path

    def open_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open images", self._folder(), "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif "
            f"*.tiff *.webp *.ppm *.pgm);;Videos, played live ({VIDEO_FILTER});;All files (*)",
        )  # fmt: skip
        if paths:
            self._remember_folder(paths[0])
            self.add_files(paths)

    def paste(self) -> None:
        """Add the clipboard's image, or the image files it names."""
        self.add_mime(QGuiApplication.clipboard().mimeData(), "pasted")

    def load_weights(self) -> None:
        """Ask for a network (the Network dialog: architecture, weights, labels,
        preprocessing), filled with the one in use or else the last custom one, and use it."""
        shown = self.spec.network
        if not shown.custom:
            remembered = saved_network(self.settings, CUSTOM_NETWORK)
            shown = remembered if remembered is not None else shown
        network = self.ask_network("Network", shown)
        if network is not None:
            if not network.named_weights:
                self._remember_folder(network.weights)
            self.set_network(network)

    def load_labels(self) -> None:
        """Ask for a labels file for the network in use, and use it."""
        path, _ = QFileDialog.getOpenFileName(
            self, f"Load labels for {self.spec.label}", self._folder(), LABEL_FILES
        )
        if path:
            self._remember_folder(path)
            self.set_spec(labels=path)

    def compare_with(self) -> None:
        """Ask for the network to compare the one in use with, and compare them."""
        specs = self.state.compare_specs()
        other = self.state.other or next((s for s in specs if s != self.spec), specs[-1])
        network = self.ask_network(
            "Compare with",
            other.network,
            intro=f"The network to show beside {self.spec.label}: another architecture, or the "
            "same one with other weights (ImageNet against fine-tuned, one epoch against "
            "another).",
        )
        if network is not None:
            self.set_other(network)

    def ask_network(self, title: str, spec: NetworkSpec, *, intro: str = "") -> NetworkSpec | None:
        """The network chosen in the Network dialog filled from ``spec``; None: cancelled."""
        return ask_network(self, spec, title=title, folder=self._folder(), intro=intro)

    def export(self, what: str) -> None:
        """Ask where, then write ``what`` (see `jobs.Session.export`) of the view on screen."""
        if what.startswith("comparison"):
            self._export_comparison(what)
            return
        if what == "methods":
            self._export_methods()
            return
        if what == "atlas":
            self._export_atlas()
            return
        if self.data is None:
            self.show_error("Nothing to export yet: add an image first.")
            return
        refused = self._refused_export(what, self.data.options)
        if refused:
            self.show_error(refused)
            return
        path = self.ask_export_path(what, self._export_name(what))
        if not path:
            return
        self._remember_folder(path if what == "grids" else str(Path(path).parent))
        # What is on screen, with the opacity the slider shows.
        spec, picture = self.data.model.spec, self.picture_of(self.data)
        options = dataclasses.replace(self.data.options, opacity=self.options.opacity)
        self._send("export", lambda session: session.export(spec, picture, options, what, path),
                   latest_wins=False, context=what)  # fmt: skip

    @staticmethod
    def _refused_export(what: str, options: ViewOptions) -> str | None:
        """Why ``what`` cannot be exported of a view with ``options``; None when it can."""
        if what in STAGE_EXPORTS and options.layer is not None:
            return (
                f"The grid exports are of the stages C1–C5, and the grid shows {options.layer}: "
                "press 1–5 for a stage first."
            )
        if what in CAM_EXPORTS and (options.cam_method != "gradcam" or options.cam_layer):
            return (
                "The overlay exports are of Grad-CAM at a stage C1–C5: choose them beside the "
                "map, or export the attribution methods' figure (Attribution methods tab)."
            )
        return None

    def _export_methods(self) -> None:
        shown, context = self.methods.shown(), self.methods.context
        if context is None or not shown:
            self.show_error(
                "Nothing to export yet: open the Attribution methods tab and let a method finish."
            )
            return
        stem = Path(context.picture.name).stem
        path = self.ask_export_path("methods", f"{stem}_{context.spec.model}_methods.png")
        if not path:
            return
        self._remember_folder(str(Path(path).parent))
        jobs = [
            MethodJob(0, context.spec, context.picture, method, context.target, data.layer,
                      self.method_settings)
            for method, data in shown.items()
        ]  # fmt: skip
        look = (self.options.cam_colormap, self.options.opacity)
        self._send("export", lambda session: session.export_methods(jobs, path, *look),
                   latest_wins=False, context="methods")  # fmt: skip

    def _export_atlas(self) -> None:
        """The channel shown, its top dataset images and its map for the image on screen as
        an annotated PNG (``atlas.figure.save_atlas_figure``)."""
        atlas, channel, data = self.state.atlas, self.channel.channel, self.data
        if atlas is None:
            self.show_error("No dataset index is open: File → Open index… first.")
            return
        if channel is None or data is None:
            self.show_error("Nothing to export yet: click a tile in the grid to choose a channel.")
            return
        layer = data.grid_name
        if not covers(atlas, layer):
            self.show_error(f"The index {atlas.folder.name} covers {', '.join(atlas.layers)}, "
                            f"not {layer}: choose one of those first.")  # fmt: skip
            return
        picture = self.picture_of(data)
        name = f"{data.model.spec.model}_{layer}_channel{channel}_atlas.png"
        path = self.ask_export_path("atlas", name)
        if not path:
            return
        self._remember_folder(str(Path(path).parent))
        activation = np.array(data.activation[channel], dtype=np.float32)  # a copy for the thread
        look = {"activation": activation, "image": picture.name, "colormap": data.options.colormap}
        self._send(
            "export",
            lambda session: session.export_atlas(atlas, layer, channel, path, **look),
            lane="atlas",
            latest_wins=False,
            context="atlas",
        )

    def _export_comparison(self, what: str) -> None:
        complete = self.current is not None and self.compare_view.complete(self.current)
        if self.requests.compare_pending or not complete:
            failed = [pane.label for pane in self.compare_view.panes if pane.failed]
            self.show_error(
                f"Nothing to compare: the analysis of {' and '.join(failed)} failed."
                if failed
                else "Nothing to compare yet: wait for both networks' analyses."
            )
            return
        shown = self.compare_view.panes[0].data
        stem = Path(self.pictures[shown.picture].name).stem
        suffix = "timings.csv" if what == "comparison_timings" else f"{shown.options.stage}.png"
        path = self.ask_export_path(what, f"{stem}_compare_{suffix}")
        if not path:
            return
        self._remember_folder(str(Path(path).parent))
        specs, lead = self.state.compare_specs(), self.state.lead()
        targets, labels = self.state.side_targets, self.state.side_labels()
        picture = self.pictures[shown.picture]
        options = dataclasses.replace(shown.options, opacity=self.options.opacity)
        self._send(
            "export",
            lambda session: session.export_comparison(
                specs, picture, options, what, path, lead=lead, own_targets=targets, labels=labels
            ),
            latest_wins=False,
            context=what,
        )

    def ask_export_path(self, what: str, name: str) -> str:
        """The file (or, for all grids, the folder) to export to; empty when cancelled."""
        if what == "grids":
            return QFileDialog.getExistingDirectory(
                self, "Export all five grids to", self._folder()
            )
        table = what.endswith("timings")
        kind = "CSV (*.csv)" if table else "PNG image (*.png)"
        path, _ = QFileDialog.getSaveFileName(
            self, EXPORTS[what], str(Path(self._folder()) / name), kind
        )
        if path and not Path(path).suffix:
            path += ".csv" if table else ".png"
        return path

    def idle(self) -> bool:
        """True when every request sent to the worker has been answered."""
        return self.requests.waiting == 0

    def show_error(self, text: str) -> None:
        """The one way errors reach the user: the red line at the top of the window."""
        self.errors.add(text)
        self.statusBar().showMessage(text, 8000)
        self.error_shown.emit(text)

    # Requests and replies

    def _send(self, kind: str, job, **options) -> int:
        self.requests.waiting += 1
        self._show_busy(True)
        return self.worker.submit(kind, job, **options)

    def _request_model(self) -> None:
        spec = self.spec
        self._send("model", lambda session: session.model(spec), context=spec)

    def _request_view(self) -> None:
        if self.live.showing:  # the next frame shows the new options (or, paused, this one)
            self.live.refresh()
            return
        if self.current is None:
            return
        spec, picture, options = self.spec, self.pictures[self.current], self.options
        methods = self.method_settings
        self.requests.view_failed = False
        if not self.compare:
            self._methods_outdated(spec, picture, options)
            self._send(
                "view",
                lambda session: session.view(spec, picture, options, methods=methods),
                context=spec,
            )
            return
        options = options.single()  # compare mode shows stages
        if options.order in DATASET_ORDERS:  # the index is one network's: channel order
            options = dataclasses.replace(options, order="index", dataset_order=())
        # The lead network first: the other explains its top-1 class, so needs its analysis.
        lead, specs = self.state.lead(), self.state.compare_specs()
        targets = self.state.side_targets
        self.requests.compare_pending = set(SIDES)
        self.requests.compare_errors = set()
        self.compare_view.updating(self.current)
        for side in sorted(SIDES, key=lambda side: specs[side] != lead):
            self._send(
                f"view:{side}",
                lambda session, side=side: session.view(
                    specs[side],
                    picture,
                    options,
                    lead,
                    own_target=targets[side],
                    partner=specs[1 - side],
                    methods=methods,
                ),
                context=(side, specs[side]),
            )

    def _methods_outdated(self, spec: ModelSpec, picture: Picture, options: ViewOptions) -> None:
        """A view that explains something else (another network, image, class or layer) is
        asked for: the methods of the one on screen stop now, so that the view does not wait
        for them; they start again for the new one once it is shown. Other views (a stage, a
        colormap) wait for the method running, if any."""
        context = self.methods.context
        if context is None or not self.methods.busy():
            return
        top1_before = self.data is not None and self.data.options.target is None
        same_class = options.target == context.target or (options.target is None and top1_before)
        if (
            context.spec != spec
            or context.picture.key != picture.key
            or context.layer != options.cam_at
            or not same_class
        ):
            self.methods.pause()

    def _request_method(self, job: MethodJob) -> None:
        self._send("method", lambda session: session.method(job), context=job)

    def _request_layers(self, spec: ModelSpec) -> None:
        if spec != self._tree_spec:
            self._tree_spec = spec
            self._send("layers", lambda session: session.layers(spec), context=spec)

    def _stepped(self, kind: str, generation: int, done: int, total: int, what: str) -> None:
        if kind == "method" and self.worker.is_latest(kind, generation):
            self.methods.stepped(done, total, what)

    def _answered(self) -> None:
        """One request fewer awaited; none left: not busy any more."""
        self.requests.waiting -= 1
        if self.requests.waiting <= 0:
            self.requests.waiting = 0
            self._show_busy(False)

    def _received(self, reply: Reply) -> None:
        if reply.kind in LIVE_KINDS:  # the live view's own: not counted as waited for
            self.live.replied(reply)
        else:
            self._replied(reply)

    def _replied(self, reply: Reply) -> None:
        self._answered()
        if reply.skipped or not self.worker.is_current(reply):
            return  # a newer request of the same kind is on its way: latest wins
        if reply.kind in self._repliers:
            self._repliers[reply.kind](reply)
            return
        if reply.kind in ("model", "view") and reply.context != self.spec:
            return  # for a network no longer in use
        compared = reply.kind.startswith("view:")
        if (reply.kind == "view" and self.compare) or (
            compared and (not self.compare or not self._still_compared(*reply.context))
        ):
            return  # for the other mode, or a pair no longer compared
        if reply.kind == "load" and reply.error is not None:
            self._load_failed(reply.context[0])
        if reply.error is not None:
            self._failed(reply)
        elif reply.kind == "scan":
            self._scanned(reply.value)
        elif reply.kind == "load":
            self._picture_arrived(reply.value)
        elif reply.kind == "model":
            self._model_ready(reply.value)
        elif reply.kind == "view":
            self._show(reply.value)
        elif compared:
            self._show_side(reply.context[0], reply.value)
        elif reply.kind == "export":
            self._exported(reply.value)

    def _method_replied(self, reply: Reply) -> None:
        if reply.error is None:
            self.methods.arrived(reply.context, reply.value)
        else:
            self.methods.failed(reply.context, reply.error)
            self.show_error(f"{method_title(reply.context.method)}: {reply.error}")
        if not self.methods.busy():  # the last pass's progress is said no more
            self.statusBar().clearMessage()

    def _layers_replied(self, reply: Reply) -> None:
        if reply.context != self.spec:
            return
        if reply.error is None:
            self.layer_tree.set_layers(reply.value, reply.context.label)
            self.layer_tree.show_layer(self.options.layer, self.options.stage)
        else:
            self._tree_spec = None  # asked again with the next view
            self.show_error(f"The layers of {reply.context.label}: {reply.error}")

    def _still_compared(self, side: int, spec: ModelSpec) -> bool:
        return self.state.compare_specs()[side] == spec

    def _failed(self, reply: Reply) -> None:
        if reply.kind.startswith("view:"):
            self._compare_failed(reply)
            return
        self.show_error(reply.error)
        if reply.kind == "view":
            self.requests.view_failed = True  # selecting the image again retries
        if reply.kind not in ("model", "view"):
            return
        # The network asked for could not be had: go back to the last one that worked or,
        # at the start, to ImageNet (else untrained) weights on the best device.
        fallback = self.requests.fallback(self.spec)
        if fallback is not None:
            self._use_spec(fallback)

    def _compare_failed(self, reply: Reply) -> None:
        """One compared network failed: say so once, and go back to a device that worked."""
        self.requests.view_failed = True  # selecting the image again retries
        side, _spec = reply.context
        self.requests.compare_pending.discard(side)
        if reply.error not in self.requests.compare_errors:  # both fail alike on a missing device
            self.requests.compare_errors.add(reply.error)
            self.show_error(f"{self.state.side_labels()[side]}: {reply.error}")
        self.compare_view.waiting(side, f"failed: {reply.error}", failed=True)
        good = self.requests.good_device or (
            self.requests.good_spec.device if self.requests.good_spec else None
        )
        if good is not None and good != self.spec.device:
            self.set_spec(device=good)

    def _picture_arrived(self, picture: Picture) -> None:
        self.requests.forget_loading(picture.key)
        self.state.add_picture(picture)
        if picture.notes:  # read all the same: worth a word, not a red line
            self.statusBar().showMessage(" · ".join(picture.notes), 10000)
        if self.live.showing:  # the live frames keep the view; the image waits in the strip
            self.requests.select_next = []
        elif self.requests.select_next[:1] == [picture.key] or self.current is None:
            self.requests.select_next = []
            self.select_picture(picture.key)

    def _load_failed(self, key: int) -> None:
        self.requests.forget_loading(key)
        if key in self.requests.select_next:  # the next image of the batch is shown instead
            self.requests.select_next.remove(key)

    def _model_ready(self, info: ModelInfo, notice: str | None = None) -> None:
        if info.spec != self.spec:
            return
        self.requests.good_spec = info.spec
        network = info.spec.network
        if network.custom and saved_network(self.settings, CUSTOM_NETWORK) != network:
            save_network(self.settings, CUSTOM_NETWORK, network)  # for the Network dialog
        self.device_label.setText(f"Device: {info.device}")
        self._show_network([info])
        self._show_banner(notice, info.banner)
        self._request_layers(info.spec)

    def _show_network(self, infos: list[ModelInfo], labels: tuple[str, ...] = ()) -> None:
        """Say in the status bar the weights, the labels' source and the preprocessing of
        the network(s) shown (what was unwrapped from a checkpoint too). Where two are
        compared (``labels``: their names), the weights of each by its name, the rest as
        ``left | right``, or once when both are the same."""

        def each(texts: list[str]) -> str:
            return texts[0] if len(set(texts)) == 1 else " | ".join(texts)

        def each_input(texts: list[str]) -> str:
            """``"resize 256, crop 224 | resize 232, crop 224 (ImageNet default)"``: where
            both come from, said once."""
            heads, _, sources = zip(*(text.rpartition(" (") for text in texts), strict=True)
            if len(set(texts)) > 1 and len(set(sources)) == 1 and all(heads):
                return f"{' | '.join(heads)} ({sources[0]}"
            return each(texts)

        weights, details = [], []
        for index, info in enumerate(infos):
            unwrapped = f" ({info.unwrapped})" if info.unwrapped else ""
            network = info.spec.network
            if network.named_weights:  # "ResNet101 random (untrained, seed 0)"
                name = f"{info.spec.label} {info.weights}" if labels else info.weights
            else:  # "ResNet101 · ft5.pth": the label names the file
                name = labels[index] if labels else network.weights_label
            # Two compared leave the unwrapping to the tooltip: the bar is full.
            weights.append(name if labels else f"{name}{unwrapped}")
            details.append(f"{info.weights}{unwrapped}")
        self.weights_label.setText(f"Weights: {' | '.join(dict.fromkeys(weights))}")
        self.weights_label.setToolTip("\n".join(dict.fromkeys(details)))
        sources = [info.labels_source for info in infos]
        self.labels_label.setText(f"Labels: {each(sources)}" if any(sources) else "")
        inputs = [info.preprocessing for info in infos]
        self.preprocessing_label.setText(f"Input: {each_input(inputs)}" if any(inputs) else "")
        self.preprocessing_label.setToolTip(
            "\n".join(dict.fromkeys(info.preprocessing_detail for info in infos))
        )

    def _show_banner(self, *texts: str | None) -> None:
        banner = "\n".join(dict.fromkeys(text for text in texts if text))
        if banner != self._banner_text:  # a banner the user closed stays closed
            self._banner_text = banner
            if banner:
                self.banner.show_message(banner)
            else:
                self.banner.clear()

    def _show(self, data: ViewData, *, live: bool = False) -> None:
        if not live and (data.picture != self.current or self.live.showing):
            return
        self.data = data
        self._model_ready(data.model, data.notice)
        self.device_label.setText(f"Device: {data.device}")
        self.grid.show_data(data)
        channels, height, width = data.activation.shape
        shown = len(data.grid.layout.order)
        name = data.grid_name
        if data.grid_kind:
            name = f"{name} ({data.grid_kind})"
        note = f" · {data.grid_note}" if data.grid_note else ""
        self.grid_title.setText(
            f"{name}: {shown if shown < channels else 'all'} of {channels} "
            f"channels, {height}×{width} each · {self.spec.label} · "
            f"{SCALE_NOTES[data.options.scale]}{note}"
        )
        self.cam.show_data(data)
        self.timing.timings.show_data(data)
        self.layer_tree.show_layer(data.options.layer, data.options.stage)
        if not live:  # the methods explain a snapshot, not frames going by
            self.methods.set_context(self._methods_context(data))
        if self.channel.channel is not None and self.channel.channel < channels:
            self.channel.show_channel(data, self.channel.channel)
            self._show_patches()
        if live:  # the live bar says the frame, its rates and its time
            # A network loaded, a layer captured for this frame: said no more.
            if self.requests.waiting == 0 and (self.live.analysed == 1 or self.busy.isVisible()):
                self.statusBar().clearMessage()
                self._show_busy(False)
            self.view_shown.emit()
            return
        self.statusBar().showMessage(
            f"{self.pictures[data.picture].label}: top-1 {data.topk[0][1]} "
            f"({data.topk[0][2] * 100:.1f} %), {data.total_ms:.0f} ms",  # the device is beside it
            10000,
        )
        self.view_shown.emit()

    def _methods_context(self, data: ViewData) -> MethodsContext:
        """What the methods tab explains for the view ``data``: its image, network, class,
        Grad-CAM layer and look."""
        if data.scores == "sigmoid":
            standing = f"sigmoid {data.target_probability * 100:.1f} %"
        else:
            rank = "top-1" if data.target_rank == 1 else f"rank {data.target_rank}"
            standing = f"{data.target_probability * 100:.1f} %, {rank}"
        return MethodsContext(
            spec=data.model.spec,
            picture=self.pictures[data.picture],
            target=data.target,
            label=data.target_label,
            standing=standing,
            layer=data.options.cam_at,
            cam_lut=data.cam_lut,
            opacity=self.options.opacity,
        )

    def _show_side(self, side: int, data: ViewData) -> None:
        if data.picture != self.current:
            return
        self.requests.compare_pending.discard(side)
        self.compare_view.show_side(side, data)
        panes = [pane for pane in self.compare_view.panes if pane.data is not None]
        shown = [pane.data for pane in panes]
        banner = untrained_banner([d.model for d in shown], load_weights=False)
        self._show_banner(*(d.notice for d in shown), banner)
        self.device_label.setText(f"Device: {data.device}")
        self._show_network([d.model for d in shown], tuple(pane.label for pane in panes))
        if self.requests.compare_pending or not self.compare_view.complete(self.current):
            return  # the other pane still shows an earlier request
        self.requests.good_device = self.spec.device
        # No message: the panes' titles give each top-1, the strip below their times, and the
        # labels of both networks fill the bar (a message there would be cut off).
        self.statusBar().clearMessage()
        self.view_shown.emit()

    def _exported(self, paths: list[Path]) -> None:
        where = paths[0].parent if paths else ""
        self.statusBar().showMessage(
            f"Saved {len(paths)} file(s) in {where}: " + ", ".join(p.name for p in paths), 10000
        )

    def _progress(self, text: str, fraction: float) -> None:
        self.statusBar().showMessage(text)
        self.busy.show()
        if fraction < 0:
            self.busy.setRange(0, 0)
        else:
            self.busy.setRange(0, 1000)
            self.busy.setValue(int(fraction * 1000))

    def _show_busy(self, busy: bool) -> None:
        if busy:
            self.busy.setRange(0, 0)
            self.busy.show()
        else:
            self.busy.hide()

    def _grid_resized(self, aspect: float) -> None:
        """The grid's pane changed shape: lay the tiles out again when other columns would
        show them clearly larger (by RELAYOUT_GAIN); otherwise the shape is kept for the next
        view asked for, so that a line of text appearing above the grid moves nothing."""
        aspect = round(aspect, 2)
        grid = self.grid if not self.compare else self.compare_view.panes[0].grid
        if aspect == self.state.grid_aspect or not grid.isVisible():
            return
        self.state.grid_aspect = aspect
        data = self.data if not self.compare else self.compare_view.panes[0].data
        # Nothing shown yet: the view on its way (if any) is asked for again (latest wins).
        if data is None or self._relayout_gain(data, aspect) >= RELAYOUT_GAIN:
            self.set_options(aspect=aspect)

    @staticmethod
    def _relayout_gain(data: ViewData, aspect: float) -> float:
        """How much larger the tiles of ``data`` would show laid out anew for ``aspect``."""
        from visualizer.core.render import fitting_columns, layout_scale  # noqa: PLC0415

        layout = data.grid.layout
        tile = (len(layout.order), layout.tile_height, layout.tile_width)
        best = fitting_columns(*tile, aspect)
        return layout_scale(*tile, best, aspect) / layout_scale(*tile, layout.columns, aspect)

    def _opacity_changed(self, opacity: float) -> None:
        self.state.options = dataclasses.replace(self.options, opacity=opacity)
        for controls in (self.cam.controls, self.compare_view.controls):  # both show it
            with QSignalBlocker(controls.opacity):
                controls.opacity.setValue(round(opacity * 100))
        self.cam.view.set_opacity(opacity)
        self.compare_view.set_opacity(opacity)
        if self.methods.context is not None:
            self.methods.set_context(dataclasses.replace(self.methods.context, opacity=opacity))

    # Drops, settings, closing

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt's name)
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt's name)
        self.add_mime(event.mimeData(), "dropped")
        event.acceptProposedAction()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.settings.setValue("compare", self.compare)
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState())
        self.settings.sync()
        self.hide()  # gone at once, even while a last job winds down
        self.live.stop(wait=True)  # the camera released, the recording finished
        self.worker.shutdown()
        super().closeEvent(event)

    def _restore_geometry(self) -> None:
        geometry = self.settings.value("geometry")
        state = self.settings.value("state")
        if isinstance(geometry, QByteArray) and self.restoreGeometry(geometry):
            if isinstance(state, QByteArray):
                self.restoreState(state)
        else:
            self.resize(1400, 900)

    def _saved_options(self) -> ViewOptions:
        saved = {}
        for name in SAVED_VIEW_OPTIONS:
            value = self.settings.value(name)
            if isinstance(value, str):
                saved[name] = value
        options = ViewOptions(**saved)
        from visualizer.choices import COLORMAPS, ORDERS, SCALES  # noqa: PLC0415

        valid = (
            options.colormap in COLORMAPS
            and options.cam_colormap in COLORMAPS
            and options.scale in SCALES
            and options.order in ORDERS
        )
        return options if valid else ViewOptions()

    def _saved_methods(self) -> tuple[str, ...]:
        """The methods ticked when the window was last closed (else the defaults)."""
        saved = self.settings.value(METHODS_SETTING)
        if isinstance(saved, str):  # an INI file gives a one-item list as its item
            saved = [saved]
        if isinstance(saved, list) and all(method in METHODS for method in saved):
            return tuple(saved)
        return DEFAULT_METHODS

    def _folder(self) -> str:
        folder = self.settings.value("folder")
        return folder if isinstance(folder, str) and Path(folder).is_dir() else str(Path.home())

    def _remember_folder(self, path: str) -> None:
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        self.settings.setValue("folder", str(folder))

    def _export_name(self, what: str) -> str:
        data = self.data  # what is on screen
        stem = Path(self.picture_of(data).name).stem
        model, stage = data.model.spec.model, data.options.stage
        return {
            "grid": f"{stem}_{model}_{stage}.png",
            "overlay": f"{stem}_{model}_gradcam_{data.options.cam_stage}.png",
            "grid_figure": f"{stem}_{model}_{stage}_annotated.png",
            "overlay_figure": f"{stem}_{model}_gradcam_{data.options.cam_stage}_annotated.png",
            "timings": f"{stem}_{model}_timings.csv",
        }.get(what, "")

    def _update_title(self, *_changed: object) -> None:
        parts = ["fmviz"]
        if self.live.showing:
            parts.append(f"{self.live.name} (live)")
        elif self.current is not None:
            parts.append(self.pictures[self.current].label)
        parts.append(" vs ".join(self.state.side_labels()) if self.compare else self.spec.label)
        self.setWindowTitle(" — ".join(parts))

    def _about(self) -> None:
        from visualizer import __version__  # noqa: PLC0415

        QMessageBox.about(
            self,
            "About fmviz",
            f"fmviz {__version__}: what VGG16 and ResNet101 see, stage by stage.\n"
            "Grad-CAM by Captum (LayerGradCam, ReLU).",
        )


VIDEO_FILTER = " ".join(f"*{suffix}" for suffix in sorted(VIDEO_SUFFIXES))


def _same_classes(one: ModelSpec, other: ModelSpec) -> bool:
    """True when ``one`` and ``other`` surely have the same classes: the same weights and
    labels, or ImageNet's (named weights, no labels file)."""
    if (one.weights, one.labels) == (other.weights, other.labels):
        return True
    return all(spec.network.named_weights and spec.labels is None for spec in (one, other))


def _in_words(spec: ModelSpec) -> str:
    """``"ResNet101 with random weights"``, or ``"ResNet101 · ft5.pth"`` (a checkpoint)."""
    return f"{spec.label} with {spec.weights} weights" if spec.network.named_weights else spec.label


class TimingTabs(QTabWidget):
    """The lower panel: per-layer timings, the layer tree, and the channel clicked in the
    grid."""

    def __init__(self, parent: QWidget | None = None) -> None:
        from visualizer.ui.timing_panel import TimingPanel  # noqa: PLC0415

        super().__init__(parent)
        self.timings = TimingPanel()
        self.tree = LayerTree()
        self.channel = ChannelView()
        self.addTab(self.timings, "Layer timing")
        self.addTab(self.tree, "Layers")
        self.addTab(self.channel, "Channel")
        self.setTabToolTip(1, "Every module whose output is a feature map (Ctrl+L)")

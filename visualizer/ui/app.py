"""Starting the desktop app: the window first, the network behind it."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import shiboken6
from PySide6.QtCore import QBuffer, QIODevice, QSettings, QTimer
from PySide6.QtWidgets import QApplication

from visualizer.choices import DEVICES, MODELS
from visualizer.networks import NetworkSpec, parse_size, parse_values
from visualizer.ui.jobs import ModelSpec
from visualizer.ui.main_window import NETWORK_IN_USE, MainWindow
from visualizer.ui.network_dialog import saved_network
from visualizer.ui.worker import Reply

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
SETTINGS_VARIABLE = "FMVIZ_SETTINGS"  # an INI file to keep settings in, instead of the user's
SETTLE_MS = 300  # after the first complete view, before the screenshot: layouts settle


def sample_images() -> list[str]:
    """The bundled sample images, sorted (none when fmviz was installed without them)."""
    return sorted(str(path) for path in SAMPLES.glob("*.jpg")) if SAMPLES.is_dir() else []


def open_settings() -> QSettings:
    """The user's settings, or the INI file named by ``FMVIZ_SETTINGS``."""
    path = os.environ.get(SETTINGS_VARIABLE)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("fmviz", "fmviz")


Values = tuple[float, ...] | str | None
Size = int | str | None


def create_window(
    paths: Sequence[str],
    *,
    model: str | None = None,
    weights: str | None = None,
    device: str | None = None,
    settings: QSettings | None = None,
    compare: bool | None = None,
    labels: str | None = None,
    mean: Values = None,
    std: Values = None,
    resize: Size = None,
    crop: Size = None,
    other: NetworkSpec | None = None,
    remembered: bool = True,
    index: str | None = None,
    live: str | None = None,
    record: str | None = None,
) -> MainWindow:
    """The main window, shown, with the network loading and ``paths`` (or the samples) read.

    ``labels``, ``mean``, ``std``, ``resize``, ``crop``: as ``NetworkSpec``'s (None: the
    checkpoint's, else the defaults; text is parsed as ``--mean`` is). ``other``: the network
    compare mode shows beside it (None: the one remembered, unless not ``remembered``, else the
    other architecture).
    ``compare``: open in compare mode; None: when ``other`` is given, else as the window was
    last closed unless a network or a custom one is named.
    ``weights``: None: the network last used, when neither ``model`` nor any of its options is
    given and ``remembered`` (a weights file that has gone since: ImageNet); else ImageNet.
    ``index``: a dataset index folder (``fmviz index``) to open once the network is known.
    ``live``: a video file or camera to play live (``""``: the first camera; the samples are
    then not read), recorded to ``record`` if given.

    Raises:
        ValueError: ``mean``, ``std``, ``resize`` or ``crop`` given as text that does not parse.
    """
    settings = settings if settings is not None else open_settings()
    saved_model = settings.value("model")
    saved_device = settings.value("device")
    named = (model, weights, labels, mean, std, resize, crop)
    last = saved_network(settings, NETWORK_IN_USE) if remembered else None
    if all(value is None for value in named) and last is not None and _still_there(last):
        network = last
    else:
        network = NetworkSpec(
            model=model or (saved_model if saved_model in MODELS else "resnet101"),
            weights=weights or "imagenet",
            labels=labels or None,
            mean=parse_values(mean) if isinstance(mean, str) else mean,
            std=parse_values(std) if isinstance(std, str) else std,
            resize=parse_size(resize) if isinstance(resize, str) else resize,
            crop=parse_size(crop) if isinstance(crop, str) else crop,
        )
    spec = ModelSpec.of(network, device or (saved_device if saved_device in DEVICES else "auto"))
    if compare is None:
        compare = other is not None or (
            settings.value("compare") in (True, "true") and model is None and not network.custom
        )
    compared = ModelSpec.of(other, spec.device) if other is not None else None
    window = MainWindow(spec, settings, compare=compare, other=compared, remembered=remembered)
    window.show()
    chosen = list(paths) or ([] if live is not None else sample_images())
    QTimer.singleShot(0, lambda: window.start(chosen))
    if live is not None:
        QTimer.singleShot(0, lambda: window.live.open(live or None, record=record))
    if index:
        QTimer.singleShot(0, lambda: window.open_index(index))
    return window


def _still_there(network: NetworkSpec) -> bool:
    """False when the network's weights or labels file has gone since it was last used."""
    files = [network.labels] + ([] if network.named_weights else [network.weights])
    return all(Path(file).is_file() for file in files if file)


def run(
    paths: Sequence[str],
    *,
    model: str | None = None,
    weights: str | None = None,
    device: str | None = None,
    screenshot: str | None = None,
    compare: bool | None = None,
    labels: str | None = None,
    mean: Values = None,
    std: Values = None,
    resize: Size = None,
    crop: Size = None,
    other: NetworkSpec | None = None,
    index: str | None = None,
    live: str | None = None,
    record: str | None = None,
) -> int:
    """Open the window and run until it closes; returns the exit status.

    ``labels``, ``mean``, ``std``, ``resize``, ``crop`` describe the network (see
    ``create_window``); ``other``: the network compared with it (compare mode, unless
    ``compare`` is False). ``index``: a dataset index to open; with ``screenshot``, the
    screenshot waits for the Channel tab to show the grid's first channel's dataset images.
    ``live``, ``record``: a camera or video to play live, and where to record it (see
    ``create_window``); with ``screenshot``, the screenshot is of the first frame's view.

    Qt aborts the process where its platform plugin cannot start: the caller checks first,
    before Qt loads (``platform_check.prepare``, as ``fmviz`` does).
    """
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("fmviz")
    app.setOrganizationName("fmviz")
    app.setStyle("Fusion")
    if screenshot:
        # A screenshot shows what the command line says, not the last session: its mode, and
        # its device (a device saved from another session may be missing here, and the run
        # would fail on what it was not asked for).
        compare = (other is not None) if compare is None else compare
        device = device or "auto"
    window = create_window(
        paths,
        model=model,
        weights=weights,
        device=device,
        compare=compare,
        labels=labels,
        mean=mean,
        std=std,
        resize=resize,
        crop=crop,
        other=other,
        remembered=not screenshot,
        index=index,
        live=live,
        record=record,
    )
    previous_hook = sys.excepthook
    sys.excepthook = _reporting_to(window)
    # Kept in a name: Qt would drop the connections of a collected object.
    screenshooter = (
        ScreenshotOnFirstView(window, screenshot, atlas=bool(index), live=live is not None)
        if screenshot
        else None
    )
    if os.environ.get("FMVIZ_STARTUP_REPORT"):  # fmviz bench --startup
        from visualizer.ui.startup_report import StartupReport  # noqa: PLC0415

        StartupReport(window, os.environ["FMVIZ_STARTUP_REPORT"])  # parented: kept alive
    try:
        return app.exec()
    finally:
        sys.excepthook = previous_hook
        if shiboken6.isValid(window):  # quit without closing (a screenshot taken): no closeEvent
            window.live.stop(wait=True)  # so a recording is finished, the camera released
        window.worker.shutdown()
        del screenshooter


class ScreenshotOnFirstView:
    """Saves a grab of the window once its first complete view is on screen, then quits.

    The exit status is ``fmviz export``'s: 0 when nothing failed; 1 when something did, with
    one ``error:`` line each. What the command line asked for (the network, its weights, its
    device) failing ends the run at once, with no screenshot, although the window itself falls
    back to another network to show something; an image that cannot be read leaves the others,
    and the screenshot of the first is still saved.
    """

    def __init__(
        self, window: MainWindow, path: str, *, atlas: bool = False, live: bool = False
    ) -> None:
        self.window, self.path, self.live = window, path, live
        self.asked = window.spec  # the network as the command line asked for it
        self.shown = False  # the first complete view is on screen: saved soon
        self.finished = False  # the exit status is decided
        self.errors = 0
        if atlas:  # the view, then the grid's first channel with its dataset images
            window.view_shown.connect(self._choose_channel)
            window.state.events.atlas.connect(self._choose_channel)
            window.patches_shown.connect(self._shown)
        else:
            window.view_shown.connect(self._shown)
        window.error_shown.connect(self._error_shown)
        window.worker.replied.connect(self._replied)  # after the window's own handler
        window.live.failed.connect(lambda _reason: self._fail())
        window.live.ended.connect(self._live_ended)

    def _choose_channel(self, *_changed: object) -> None:
        """With an index open and a view shown: the grid's first channel in the Channel tab."""
        window = self.window
        if self.shown or self.finished or window.data is None or window.state.atlas is None:
            return
        if window.channel.channel is None:
            window.show_channel(window.data.grid.layout.order[0])

    def _shown(self) -> None:
        if not (self.shown or self.finished):
            self.shown = True
            QTimer.singleShot(SETTLE_MS, self._save)

    def _save(self) -> None:
        from visualizer.core.export import write_atomically  # noqa: PLC0415

        if self.finished:
            return
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        self.window.grab().save(buffer, "PNG")
        try:
            write_atomically(self.path, bytes(buffer.data()))
        except OSError as error:
            self._fail(f"{self.path}: cannot save the screenshot ({error.strerror or error})")
            return
        print(f"saved {self.path}", file=sys.stderr)
        self.finished = True
        QApplication.exit(1 if self.errors else 0)  # as export: 1 when any input failed

    def _live_ended(self) -> None:
        if not (self.shown or self.finished):  # a video whose frames could not be shown
            self._fail(f"{self.window.live.name}: no frame could be analysed")

    def _error_shown(self, text: str) -> None:
        if not self.finished:
            self.errors += 1
            print(f"error: {text}", file=sys.stderr)

    def _replied(self, reply: Reply) -> None:
        if self.shown or self.finished:
            return
        failed = reply.error is not None and reply.kind.startswith(("model", "view"))
        if reply.error is not None and reply.kind in ("atlas", "patches"):
            self._fail()  # the index refused, or its images unreadable: no patches to show
            return
        # A compared side's context is (side, network).
        asked = reply.context[1] if reply.kind.startswith("view:") else reply.context
        if failed and asked == self.asked:
            # Checked before whether it is current: the window has already asked for the
            # network it falls back to, and would show that one instead.
            self._fail()
        elif not self.window.worker.is_current(reply):
            return  # overtaken: its failure does not decide what the screenshot shows
        elif failed or (self.live and reply.kind == "live" and reply.error is not None):
            self._fail()  # the network or the analysis failed: there will be no view
        elif not self.live and not self.window.pictures and self.window.idle():
            self._fail(None if self.errors else "no image to show")

    def _fail(self, text: str | None = None) -> None:
        """Exit 1; the errors that led here are already printed, one line each."""
        self.finished = True
        if text:
            print(f"error: {text}", file=sys.stderr)
        QApplication.exit(1)


def _reporting_to(window: MainWindow):
    """An excepthook: an error in the window's own code is shown, and printed, not fatal."""

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        traceback.print_exception(kind, error, trace, file=sys.stderr)
        window.show_error(f"unexpected {kind.__name__}: {' '.join(str(error).split())[:300]}")

    return hook

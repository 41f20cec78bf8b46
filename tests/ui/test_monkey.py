"""A seeded random walk through the window: 200 actions a user could take (drops with a bad
file among them, images chosen, stage keys, grid and Grad-CAM options, classes, the network,
compare mode, exports, opacity), quicker than the views come. Afterwards, once the worker is
idle: no exception, no error but the expected ones, and a consistent window: the page, the
title and the view(s) on screen are the current picture with the current options, as
``visualizer.core`` computes them, and every export is a whole file.

``FMVIZ_MONKEY_SEED=N`` replays another walk; every failure message names the seed.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

SEED = int(os.environ.get("FMVIZ_MONKEY_SEED", "20261126"))
# Each of the 17 kinds of action comes several times over: the rarest (weight 2 of 71) about
# 6 times, exports and network changes about 11, compare mode 8. 300 actions took 20 s here.
ACTIONS = 200
SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
STAGES = ("C1", "C2", "C3", "C4", "C5")
STAGE_KEYS = {stage: getattr(Qt.Key, f"Key_{number}") for number, stage in enumerate(STAGES, 1)}
COMPARED = ("vgg16", "resnet101")
LABELS = {"vgg16": "VGG16", "resnet101": "ResNet101"}
PAUSES_MS = (0, 0, 0, 5, 10, 20, 50, 150)  # after each action: mostly quicker than a view
# Errors a user is meant to see in this walk: the bad file, and exports asked for before
# there is anything on screen to export.
EXPECTED_ERRORS = (
    "Nothing to export yet: add an image first.",
    "Nothing to compare yet: wait for both networks' analyses.",
)


@dataclass
class Export:
    """An export the walk asked for, and what was on screen then."""

    what: str
    path: Path
    model: str | None = None  # the network on screen (one network)
    stage: str | None = None
    cam_stage: str | None = None
    stem: str | None = None


class Monkey:
    """Takes random actions on ``window`` from ``rng``; keeps a log of them."""

    def __init__(
        self,
        window: Any,
        qtbot: Any,
        rng: np.random.Generator,
        *,
        images: list[str],
        bad: str,
        exports: Path,
    ) -> None:
        self.window, self.qtbot, self.rng = window, qtbot, rng
        self.images, self.bad, self.exports = images, bad, exports
        self.log: list[str] = []
        self.exported: list[Export] = []
        self.errors: list[str] = []  # every error shown, as shown
        self.problems: list[str] = []  # what went wrong that no error line would show
        window.error_shown.connect(self.errors.append)
        self._pending: Export | None = None
        self.keys_taken = 0  # stage keys after which the window showed that stage
        self.actions: dict[str, tuple[int, Callable[[], str]]] = {
            "drop": (3, self.drop),
            "select": (10, self.select),
            "stage key": (10, self.stage_key),
            "order": (4, lambda: self.combo(window.controls.order)),
            "colormap": (4, lambda: self.combo(window.controls.colormap)),
            "scale": (3, lambda: self.combo(window.controls.scale)),
            "top n": (3, self.top_n),
            "prediction": (5, self.prediction),
            "any class": (4, self.any_class),
            "top-1": (2, self.top1),
            "cam stage": (3, lambda: self.combo(self.cam_controls().stage)),
            "cam colormap": (2, lambda: self.combo(self.cam_controls().colormap)),
            "opacity": (4, self.opacity),
            "network": (4, self.network),
            "compare": (3, self.compare),
            "export": (4, self.export),
            "wait": (3, self.wait),
        }

    def run(self, count: int) -> None:
        names = list(self.actions)
        weights = np.array([self.actions[name][0] for name in names], dtype=float)
        for number in range(count):
            name = names[self.rng.choice(len(names), p=weights / weights.sum())]
            what = self.actions[name][1]()
            self.log.append(f"{number}: {name} {what}")
            self.qtbot.wait(int(self.rng.choice(PAUSES_MS)))

    def history(self, last: int = 40) -> str:
        return "\n".join(self.log[-last:])

    # The actions; each says what it did.

    def drop(self) -> str:
        count = int(self.rng.integers(1, 4))
        paths = [str(p) for p in self.rng.choice(self.images, size=count, replace=False)]
        if self.rng.random() < 0.4:
            paths.insert(int(self.rng.integers(0, len(paths) + 1)), self.bad)
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(path) for path in paths])
        event = QDropEvent(
            QPointF(10, 10), Qt.DropAction.CopyAction, mime,
            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
        )  # fmt: skip
        self.window.dropEvent(event)
        return " ".join(Path(path).name for path in paths)

    def select(self) -> str:
        strip = self.window.strip
        if strip.count() == 0:
            return "(no image yet)"
        row = int(self.rng.integers(0, strip.count()))
        strip.setCurrentRow(row)
        return strip.item(row).toolTip()

    def stage_key(self) -> str:
        stage = STAGES[int(self.rng.integers(0, 5))]
        self.qtbot.keyClick(self.window, STAGE_KEYS[stage])
        self.keys_taken += self.window.options.stage == stage
        return f"{stage} (the window's stage: {self.window.options.stage})"

    def combo(self, combo: Any) -> str:
        if not combo.isEnabled():
            return "(disabled)"
        combo.setCurrentIndex(int(self.rng.integers(0, combo.count())))
        return combo.currentText()

    def top_n(self) -> str:
        value = int(self.rng.choice([0, 0, 1, 7, 16, 100, 4096]))
        self.window.controls.top_n.setValue(value)
        return str(value)

    def cam_controls(self) -> Any:
        window = self.window
        return window.compare_view.controls if window.compare else window.cam.controls

    def prediction(self) -> str:
        window = self.window
        if window.compare:
            lists = [pane.predictions for pane in window.compare_view.panes]
            predictions = lists[int(self.rng.integers(0, 2))]
        else:
            predictions = window.cam.predictions
        if predictions.count() == 0:
            return "(none shown)"
        item = predictions.item(int(self.rng.integers(0, predictions.count())))
        position = predictions.visualItemRect(item).center()
        self.qtbot.mouseClick(predictions.viewport(), Qt.MouseButton.LeftButton, pos=position)
        return str(item.data(Qt.ItemDataRole.UserRole))

    def any_class(self) -> str:
        target = int(self.rng.integers(0, 1000))
        self.window.set_options(target=target)
        return str(target)

    def top1(self) -> str:
        self.cam_controls().top1.click()
        return ""

    def opacity(self) -> str:
        value = int(self.rng.integers(0, 101))
        self.cam_controls().opacity.setValue(value)
        return str(value)

    def network(self) -> str:
        return self.combo(self.window.controls.model)

    def compare(self) -> str:
        self.window.compare_action.trigger()
        return "on" if self.window.compare else "off"

    def export(self) -> str:
        window = self.window
        waited = self.rng.random() < 0.6  # most users look at the view before they export it
        if waited:
            self.qtbot.waitUntil(window.idle, timeout=120_000)
        errors = len(self.errors)
        visible = [what for what, action in window.export_actions.items() if action.isVisible()]
        what = visible[int(self.rng.integers(0, len(visible)))]
        self._pending = Export(what, Path())
        data = window.data
        if window.compare:
            data = window.compare_view.panes[0].data
        if data is not None:
            self._pending = Export(
                what,
                Path(),
                model=data.model.spec.model,
                stage=data.options.stage,
                cam_stage=data.options.cam_stage,
                stem=Path(window.pictures[data.picture].name).stem,
            )
        window.export_actions[what].trigger()
        self._pending = None
        if waited and len(self.errors) > errors:  # the view was complete: it can be exported
            self.problems.append(f"{what} after the view came: {self.errors[errors:]}")
        return f"{what} (after the view came)" if waited else what

    def ask_export_path(self, what: str, _name: str) -> str:
        """The export dialog: a new file (or folder) in the exports folder each time."""
        number = len(self.exported)
        if what == "grids":
            path = self.exports / f"{number:03}_grids"
            path.mkdir()
        else:
            path = self.exports / f"{number:03}_{what}.{'csv' if 'timings' in what else 'png'}"
        assert self._pending is not None
        self.exported.append(dataclasses.replace(self._pending, path=path))
        return str(path)

    def wait(self) -> str:
        milliseconds = int(self.rng.integers(100, 600))
        self.qtbot.wait(milliseconds)
        return f"{milliseconds} ms"


@pytest.fixture
def walk_files(picture_file, tmp_path: Path) -> tuple[list[str], str]:
    """Eight small pictures of different sizes and formats, and a bad file named as a PNG."""
    rng = np.random.default_rng(SEED)
    images = []
    for index in range(8):
        width, height = (int(n) for n in rng.integers(32, 80, size=2))
        suffix = (".png", ".jpg", ".bmp")[index % 3]
        images.append(picture_file(f"walk/pic{index}{suffix}", width, height, seed=index))
    bad = tmp_path / "walk" / "broken.png"
    bad.write_text("this is not a picture\n")
    return images, str(bad)


def test_a_random_walk_leaves_a_consistent_window(
    open_window, qtbot, reference, walk_files, tmp_path: Path, *, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visualizer.ui.message_bar import MAX_KEPT

    images, bad = walk_files
    exports = tmp_path / "exports"
    exports.mkdir()
    raised: list[str] = []
    previous_hook = sys.excepthook

    def record(kind: type[BaseException], error: BaseException, trace: Any) -> None:
        raised.append(f"{kind.__name__}: {error}")
        previous_hook(kind, error, trace)

    monkeypatch.setattr(sys, "excepthook", record)
    monkeypatch.setattr(
        threading, "excepthook", lambda args: raised.append(f"in {args.thread}: {args.exc_value}")
    )
    reference.analyzer_of("vgg16")  # both networks built before the walk: it does not wait
    window = open_window([CHELSEA])
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    monkey = Monkey(
        window, qtbot, np.random.default_rng(SEED), images=images, bad=bad, exports=exports
    )
    monkeypatch.setattr(window, "ask_export_path", monkey.ask_export_path)

    def where() -> str:
        return f"seed {SEED} (FMVIZ_MONKEY_SEED), last actions:\n{monkey.history()}"

    try:
        monkey.run(ACTIONS)
        qtbot.waitUntil(window.idle, timeout=180_000)
        qtbot.wait(200)  # anything the last replies set off
        qtbot.waitUntil(window.idle, timeout=180_000)
    except Exception as error:
        raise AssertionError(f"{type(error).__name__}: {error}\n{where()}") from error

    errors = monkey.errors
    assert monkey.keys_taken > 0, f"the stage keys never reached the window; {where()}"
    assert raised == [], where()
    assert monkey.problems == [], where()
    unexpected = [text for text in errors if text not in EXPECTED_ERRORS and bad not in text]
    assert unexpected == [], where()
    assert window.errors.messages == errors[-MAX_KEPT:], where()  # the red line shows them
    check_window(window, reference, where)
    check_exports(monkey.exported, where)
    assert list(tmp_path.rglob("*.part")) == [], where()
    assert list(tmp_path.rglob(".*")) == [], where()
    for model in COMPARED:
        network = reference.analyzer_of(model).model
        hooked = [
            name
            for name, module in network.named_modules()
            if module._forward_hooks or module._forward_pre_hooks or "forward" in module.__dict__
        ]
        assert hooked == [], f"{model}: {hooked[:5]}; {where()}"
    counts = {text[:40]: errors.count(text) for text in errors}
    print(f"\nseed {SEED}: {len(monkey.log)} actions, {monkey.keys_taken} stage keys taken, "
          f"{len(monkey.exported)} exports, "
          f"expected errors {counts}, compare {window.compare}")  # fmt: skip


def check_window(window: Any, reference: Any, where: Callable[[], str]) -> None:
    """The page, the title and the view(s) shown are the current picture and options."""
    assert window.current is not None, where()
    picture = window.pictures[window.current]
    label = "VGG16 vs ResNet101" if window.compare else LABELS[window.spec.model]
    assert window.windowTitle() == f"fmviz — {picture.name} — {label}", where()
    page = window.compare_view if window.compare else window.body
    assert window.pages.currentWidget() is page, where()
    assert window.compare_action.isChecked() == window.compare, where()
    assert window.strip.currentItem().toolTip() == picture.source, where()
    options = window.options
    assert window.controls.stage_actions[options.stage].isChecked(), where()
    assert window.controls.order.currentData() == options.order, where()
    assert window.controls.colormap.currentData() == options.colormap, where()
    assert window.controls.scale.currentData() == options.scale, where()
    assert window.controls.top_n.value() == options.top_n, where()
    if window.compare:
        shown = [(pane.data, pane.grid) for pane in window.compare_view.panes]
        assert window.compare_view.complete(window.current), where()
        specs = [(model, window.spec.weights, window.spec.device) for model in COMPARED]
        lead = window.spec.model
    else:
        shown = [(window.data, window.grid)]
        specs = [(window.spec.model, window.spec.weights, window.spec.device)]
        lead = window.spec.model
    # With no class chosen, every side explains the top-1 class of the network chosen alone.
    target = options.target
    if target is None:
        target = reference.result(picture.source, lead).topk[0][0]
    for (data, grid), spec in zip(shown, specs, strict=True):
        assert data is not None, where()
        model = spec[0]
        assert data.picture == window.current, f"{model}: {where()}"
        shown_spec = data.model.spec
        assert (shown_spec.model, shown_spec.weights, shown_spec.device) == spec, where()
        assert dataclasses.replace(data.options, opacity=options.opacity) == options, where()
        assert data.target == target, f"{model}: {where()}"
        expected = reference.result(picture.source, model)
        np.testing.assert_allclose(
            data.activation, expected.stages[options.stage].numpy(), atol=1e-5, rtol=0,
            err_msg=f"{model}: {where()}",
        )  # fmt: skip
        np.testing.assert_allclose(
            data.cam, reference.cam(picture.source, options.cam_stage, target, model),
            atol=1e-5, rtol=0, err_msg=f"{model}: {where()}",
        )  # fmt: skip
        np.testing.assert_array_equal(
            np.asarray(grid.image.image), data.grid.indices, err_msg=f"{model}: {where()}"
        )
        assert len(data.grid.layout.order) == min(
            options.top_n or data.activation.shape[0], data.activation.shape[0]
        ), where()


def check_exports(exported: list[Export], where: Callable[[], str]) -> None:
    """Every export asked for is there, whole, and holds what was on screen when asked."""
    for export in exported:
        if export.what == "grids":
            names = sorted(path.name for path in export.path.iterdir())
            assert names == [f"{export.stem}_{export.model}_{s}.png" for s in STAGES], where()
            for name in names:
                text = png_text(export.path / name)
                assert (text["model"], text["stage"]) == (export.model, name[-6:-4]), where()
        elif export.path.suffix == ".png":
            text = png_text(export.path)
            if export.what == "grid":
                assert (text["model"], text["stage"]) == (export.model, export.stage), where()
            elif export.what == "overlay":
                assert (text["model"], text["stage"]) == (export.model, export.cam_stage), where()
        else:
            with export.path.open(newline="") as file:
                rows = list(csv.reader(file))
            assert len(rows) > 1, f"{export.path.name}: {where()}"
            assert len({len(row) for row in rows}) == 1, f"{export.path.name}: {where()}"
            assert export.path.read_bytes().endswith(b"\n"), where()


def png_text(path: Path) -> dict[str, str]:
    """The text chunks of a whole PNG (reading it all fails on a file cut short)."""
    with Image.open(path) as image:
        assert image.format == "PNG", path
        image.load()
        return dict(image.text)

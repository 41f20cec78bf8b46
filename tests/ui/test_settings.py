"""What the user chose is remembered: network, device, view options, window geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")


def test_the_next_window_opens_as_the_last_one_closed(
    open_window, settings_path: str, reference, shown_after, qtbot
) -> None:
    reference.analyzer_of("vgg16")  # built beforehand, shared
    first = open_window([CHELSEA])
    assert first.spec.model == "resnet101"
    shown_after(first, lambda: first.set_options(colormap="magma", order="mean", stage="C2"))
    shown_after(first, lambda: first.set_options(cam_colormap="inferno", scale="stage"))
    data = shown_after(first, lambda: first.controls.model.setCurrentIndex(0))  # VGG16
    assert data.model.spec.model == "vgg16"
    first.resize(1111, 777)
    first.move(40, 50)
    qtbot.waitUntil(lambda: first.size().width() == 1111 and first.pos().x() == 40)
    first.close()
    assert not first.isVisible()
    saved = QSettings(settings_path, QSettings.Format.IniFormat)
    assert saved.value("model") == "vgg16"
    assert saved.value("device") == "cpu"
    assert saved.value("colormap") == "magma"

    # No network or device asked for: those of last time; the view as it was left.
    second = open_window([CHELSEA], model=None, device=None)
    assert second.spec.model == "vgg16"
    assert second.spec.device == "cpu"
    assert second.controls.model.currentData() == "vgg16"
    assert second.controls.device.currentData() == "cpu"
    options = second.options
    assert (options.colormap, options.order, options.scale, options.cam_colormap) == (
        "magma",
        "mean",
        "stage",
        "inferno",
    )
    assert options.stage == "C1"  # the stage is not remembered: each image starts at C1
    assert second.controls.colormap.currentData() == "magma"
    assert second.controls.order.currentData() == "mean"
    assert second.cam.colormap.currentText() == "inferno"
    assert (second.width(), second.height()) == (1111, 777)
    assert (second.x(), second.y()) == (40, 50)
    assert second.windowTitle() == "fmviz — chelsea.jpg — VGG16"
    data = second.data
    assert data.model.spec.model == "vgg16"
    grid = reference.grid(
        CHELSEA,
        "C1",
        model="vgg16",
        colormap="magma",
        order="mean",
        scale="stage",
        aspect=data.options.aspect,
    )
    np.testing.assert_array_equal(np.asarray(second.grid.image.image), grid.indices)

    # Asked for on the command line, a network wins over the one remembered.
    third = open_window([CHELSEA], model="resnet101", device=None, wait=False)
    assert third.spec.model == "resnet101"
    assert third.windowTitle() == "fmviz — ResNet101"
    third.close()  # before it starts: nothing to wait for


def test_settings_that_make_no_sense_are_ignored(open_window, settings_path: str) -> None:
    settings = QSettings(settings_path, QSettings.Format.IniFormat)
    settings.setValue("model", "alexnet")
    settings.setValue("device", "tpu")
    settings.setValue("colormap", "rainbow")
    settings.setValue("geometry", "not a geometry")
    settings.sync()

    window = open_window([CHELSEA], model=None, device=None, wait=False)
    assert window.spec.model == "resnet101"
    assert window.spec.device == "auto"
    assert window.options.colormap == "viridis"
    assert (window.width(), window.height()) == (1400, 900)
    window.close()  # before it starts: no network is built

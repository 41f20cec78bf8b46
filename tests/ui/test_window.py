"""The window shows what ``visualizer.core`` computes: grids, predictions, Grad-CAM, timings;
stages, classes, orders and channels change as the user asks."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
ASTRONAUT = str(SAMPLES / "astronaut.jpg")
CHELSEA = str(SAMPLES / "chelsea.jpg")
COFFEE = str(SAMPLES / "coffee.jpg")
# ResNet101's stages for a 224×224 input: channels, height, width.
RESNET101_STAGES = {
    "C1": (64, 56, 56),
    "C2": (256, 56, 56),
    "C3": (512, 28, 28),
    "C4": (1024, 14, 14),
    "C5": (2048, 7, 7),
}


def shown_grid(window) -> np.ndarray:
    """The palette indices the grid's image item displays."""
    return np.asarray(window.grid.image.image)


def table_column(table, column: int) -> list[str]:
    """The texts of a table's column, top to bottom, as shown."""
    model = table.model()
    return [model.index(row, column).data() for row in range(model.rowCount())]


def leaf_layers(model) -> set[str]:
    return {name for name, module in model.named_modules() if not list(module.children())}


def test_launch_shows_the_first_sample_as_the_core_computes_it(
    open_window, reference, analyzer_of, qtbot
) -> None:
    from visualizer.core.render import grid_palette

    # A network built by the window's own worker, compared with one built independently.
    window = open_window([ASTRONAUT, CHELSEA, COFFEE], fresh=True)
    expected = reference.result(ASTRONAUT)
    data = window.data

    assert window.windowTitle() == "fmviz — astronaut.jpg — ResNet101"
    qtbot.waitUntil(lambda: window.strip.count() == 3)
    keys = window.strip.keys()
    assert [window.pictures[key].name for key in keys] == [
        "astronaut.jpg",
        "chelsea.jpg",
        "coffee.jpg",
    ]
    assert window.strip.currentItem().data(Qt.ItemDataRole.UserRole) == window.current
    assert window.pictures[window.current].source == ASTRONAUT
    assert data.picture == window.current

    # The C1 grid: every channel, in index order, each stretched by itself, viridis.
    assert data.options.stage == "C1"
    assert data.activation.shape == RESNET101_STAGES["C1"]
    np.testing.assert_array_equal(data.activation, expected.stages["C1"].numpy())
    grid = reference.grid(ASTRONAUT, "C1", aspect=data.options.aspect)
    np.testing.assert_array_equal(shown_grid(window), grid.indices)
    np.testing.assert_array_equal(window.grid.image.lut, grid_palette("viridis"))
    assert data.grid.layout == grid.layout
    assert window.grid_title.text().startswith("C1: all of 64 channels, 56×56 each · ResNet101")

    # Top-5 predictions, in order, with the top-1 class explained (in bold).
    items = [window.cam.predictions.item(row) for row in range(window.cam.predictions.count())]
    assert [item.data(Qt.ItemDataRole.UserRole) for item in items] == [
        index for index, _, _ in expected.topk
    ]
    for item, (index, label, probability) in zip(items, expected.topk, strict=True):
        assert label in item.text()
        assert f"({index})" in item.text()
        assert f"{probability * 100:5.1f} %" in item.text()
    assert items[0].font().bold()
    assert not any(item.font().bold() for item in items[1:])
    assert data.target == expected.topk[0][0]

    # Grad-CAM of the top-1 class at C1, over the input the network saw.
    cam = reference.cam(ASTRONAUT, "C5")  # Grad-CAM starts at C5, the grid at C1
    np.testing.assert_allclose(data.cam, cam, atol=1e-5, rtol=0)
    np.testing.assert_allclose(window.cam.heat.image, cam, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(window.cam.picture.image, np.asarray(expected.view))
    assert f"{data.target} " in window.cam.title.text()

    # One row per leaf layer call, in execution order.
    names = table_column(window.timing.timings.table, 0)
    assert names == [name for name, _, _ in expected.timings]
    assert set(names) == leaf_layers(analyzer_of("resnet101").model)
    assert "311 layers" in window.timing.timings.totals.text()
    # Steady-state timings, and the window says how they were taken.
    assert not expected.cold
    assert "after one untimed warm-up pass" in window.timing.timings.totals.text()

    # Random weights: said above the views, and in the status bar.
    assert len(window.banner.messages) == 1
    assert window.banner.messages[0].startswith("Untrained ResNet101")
    assert window.banner.isVisible()
    assert "random (untrained, seed 0)" in window.weights_label.text()
    assert window.device_label.text().startswith("Device: CPU")
    assert window.errors.messages == []
    assert not window.errors.isVisible()
    qtbot.waitUntil(window.idle)


@pytest.mark.parametrize("stage", ["C3", "C5"])
def test_switching_stage_shows_its_grid(open_window, reference, shown_after, stage) -> None:
    window = open_window([CHELSEA])
    data = shown_after(window, lambda: window.set_options(stage=stage))

    channels, height, width = RESNET101_STAGES[stage]
    assert data.options.stage == stage
    assert data.activation.shape == (channels, height, width)
    grid = reference.grid(CHELSEA, stage, aspect=data.options.aspect)
    layout = data.grid.layout
    assert layout == grid.layout
    assert len(layout.order) == channels
    assert (layout.tile_height, layout.tile_width) == (height, width)
    assert layout.rows * layout.columns >= channels > (layout.rows - 1) * layout.columns
    assert shown_grid(window).shape == layout.shape
    np.testing.assert_array_equal(shown_grid(window), grid.indices)
    # The Grad-CAM keeps its own stage, C5, whatever the grid shows.
    np.testing.assert_allclose(data.cam, reference.cam(CHELSEA, "C5"), atol=1e-5, rtol=0)
    assert window.controls.stage_actions[stage].isChecked()
    assert window.grid_title.text().startswith(f"{stage}: all of {channels} channels")


def test_keys_1_to_5_switch_stages(open_window, reference, qtbot) -> None:
    window = open_window([CHELSEA])
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    for key, stage in [(Qt.Key.Key_3, "C3"), (Qt.Key.Key_5, "C5"), (Qt.Key.Key_2, "C2")]:
        with qtbot.waitSignal(window.view_shown, timeout=60_000):
            qtbot.keyClick(window, key)
        assert window.options.stage == stage
        assert window.data.options.stage == stage
        assert window.data.activation.shape == RESNET101_STAGES[stage]
        grid = reference.grid(CHELSEA, stage, aspect=window.data.options.aspect)
        np.testing.assert_array_equal(shown_grid(window), grid.indices)
        assert window.controls.stage_actions[stage].isChecked()
    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        qtbot.keyClick(window, Qt.Key.Key_1)
    assert window.data.activation.shape == RESNET101_STAGES["C1"]


def test_choosing_a_class_shows_its_grad_cam(open_window, reference, shown_after, qtbot) -> None:
    window = open_window([CHELSEA])
    top1 = reference.result(CHELSEA).topk[0][0]
    top1_cam = reference.cam(CHELSEA, "C5")

    # Click the third prediction.
    predictions = window.cam.predictions
    item = predictions.item(2)
    third = item.data(Qt.ItemDataRole.UserRole)
    assert third != top1
    position = predictions.visualItemRect(item).center()
    data = shown_after(
        window,
        lambda: qtbot.mouseClick(predictions.viewport(), Qt.MouseButton.LeftButton, pos=position),
    )
    assert data.options.target == third
    assert data.target == third
    np.testing.assert_allclose(data.cam, reference.cam(CHELSEA, "C5", third), atol=1e-5, rtol=0)
    assert predictions.item(2).font().bold()
    assert not predictions.item(0).font().bold()

    # Any class by number: 281 (tabby cat), not among the predictions of a random network.
    data = shown_after(window, lambda: window.set_options(target=281))
    assert data.target == 281
    assert data.target_label == "tabby"
    cam = reference.cam(CHELSEA, "C5", 281)
    np.testing.assert_allclose(data.cam, cam, atol=1e-5, rtol=0)
    assert not np.allclose(cam, top1_cam, atol=1e-3), "the class should change the map"
    assert "281 tabby" in window.cam.title.text()

    # The class is kept on another stage.
    data = shown_after(window, lambda: window.set_options(cam_stage="C4"))
    assert data.target == 281
    np.testing.assert_allclose(data.cam, reference.cam(CHELSEA, "C4", 281), atol=1e-5, rtol=0)

    # Back to the top-1 class, with the button.
    data = shown_after(window, window.cam.top1.click)
    assert data.options.target is None
    assert data.target == top1
    np.testing.assert_allclose(data.cam, reference.cam(CHELSEA, "C4"), atol=1e-5, rtol=0)


def test_order_top_n_colormap_and_scale(open_window, reference, shown_after) -> None:
    from visualizer.core.render import channel_order, fitting_columns, grid_palette

    window = open_window([CHELSEA])
    stage = reference.result(CHELSEA).stages["C1"]
    controls = window.controls

    # Through the toolbar, as the user does it.
    data = shown_after(
        window, lambda: controls.order.setCurrentIndex(controls.order.findData("mean"))
    )
    assert data.options.order == "mean"
    assert data.grid.layout.order == tuple(channel_order(stage, "mean"))
    data = shown_after(window, lambda: controls.top_n.setValue(16))
    assert data.options.top_n == 16
    expected = channel_order(stage, "mean")[:16]
    assert list(data.grid.layout.order) == expected
    assert expected != list(range(16)), "the mean order should differ from the index order"
    means = stage.mean(dim=(1, 2))
    assert all(means[a] >= means[b] for a, b in itertools.pairwise(expected))
    grid = reference.grid(CHELSEA, "C1", order="mean", top=16, aspect=data.options.aspect)
    assert grid.layout.columns == fitting_columns(16, 56, 56, data.options.aspect)
    assert data.grid.layout == grid.layout
    np.testing.assert_array_equal(shown_grid(window), grid.indices)
    assert window.grid_title.text().startswith("C1: 16 of 64 channels")

    data = shown_after(window, lambda: window.set_options(colormap="magma", scale="stage"))
    grid = reference.grid(
        CHELSEA,
        "C1",
        order="mean",
        top=16,
        colormap="magma",
        scale="stage",
        aspect=data.options.aspect,
    )
    np.testing.assert_array_equal(shown_grid(window), grid.indices)
    np.testing.assert_array_equal(window.grid.image.lut, grid_palette("magma"))
    assert data.grid.colormap == "magma"
    assert controls.colormap.currentData() == "magma"
    assert controls.scale.currentData() == "stage"
    assert "one scale for the stage" in window.grid_title.text()

    # Ordered by Grad-CAM weight: the weights of the class explained.
    data = shown_after(window, lambda: window.set_options(order="gradcam", top_n=0))
    analyzer = reference.analyzer_of("resnet101")
    weights = analyzer.gradcams(reference.result(CHELSEA), ["C1"])["C1"].channel_weights
    assert list(data.grid.layout.order) == channel_order(stage, "gradcam", weights)


def test_hover_and_click_on_the_grid(open_window, reference, shown_after, qtbot) -> None:
    window = open_window([CHELSEA])
    activation = reference.result(CHELSEA).stages["C1"].numpy()
    grid = window.grid
    tile = 56 + 1  # C1 tiles are 56×56 with a 1-pixel gutter
    columns = window.data.grid.layout.columns  # as many as fill the pane

    assert grid.channel_at(0, 0) == (0, 0, 0)
    assert grid.channel_at(tile + 3, 2 * tile + 5) == (2 * columns + 1, 5, 3)  # row 2, column 1
    last_row, last_column = divmod(63, columns)
    assert grid.channel_at(last_column * tile + 55.9, last_row * tile + 55.9) == (63, 55, 55)
    assert grid.channel_at(56, 10) is None  # the gutter
    assert grid.channel_at(-1, 10) is None
    assert grid.channel_at(columns * tile, 0) is None  # right of the grid
    assert grid.channel_at((last_column + 1) * tile + 3, last_row * tile + 3) is None  # empty

    # Hovering over a tile tells its channel and value; a click opens the channel.
    def click_at(x: float, y: float) -> None:
        scene_point = grid.box.mapViewToScene(QPointF(x, y))
        point = grid.plot.mapFromScene(scene_point)
        qtbot.mouseMove(grid.plot.viewport(), point)
        qtbot.mousePress(grid.plot.viewport(), Qt.MouseButton.LeftButton, pos=point)
        qtbot.mouseRelease(grid.plot.viewport(), Qt.MouseButton.LeftButton, pos=point)

    qtbot.waitExposed(window)
    # Zoomed in on the first 4×4 tiles, so that a screen pixel is less than a grid pixel.
    grid.box.setRange(xRange=(0, 4 * tile), yRange=(0, 4 * tile), padding=0)
    with qtbot.waitSignal(grid.channel_clicked, timeout=5000) as clicked:
        click_at(tile * 2 + 20.5, tile * 3 + 20.5)  # row 3, column 2
    clicked_channel = 3 * columns + 2
    assert clicked.args == [clicked_channel]
    assert window.channel.channel == clicked_channel
    assert window.timing.currentWidget() is window.channel
    assert grid.readout.text().startswith(
        f"C1 channel {clicked_channel} · row 20, column 20 · activation "
    )
    assert f"{activation[clicked_channel, 20, 20]:.4g}" in grid.readout.text()
    assert grid.highlight.isVisible()
    assert grid.highlight.rect().topLeft() == QPointF(2 * tile, 3 * tile)

    # The channel view shows the whole channel, stretched by its own min–max.
    window.show_channel(5)
    shown = np.asarray(window.channel.channel_image.image)
    np.testing.assert_array_equal(shown, activation[5])
    assert window.channel.channel_image.levels is not None
    np.testing.assert_allclose(
        np.ravel(window.channel.channel_image.levels), [activation[5].min(), activation[5].max()]
    )
    np.testing.assert_array_equal(window.channel.channel_image.lut, window.data.channel_lut)
    assert window.channel.caption.text().startswith("C1 channel 5 of 64 · 56×56")

    # With another order, the tiles map to the channels of that order.
    data = shown_after(window, lambda: window.set_options(order="mean", top_n=16))
    order, columns = data.grid.layout.order, data.grid.layout.columns
    rows = data.grid.layout.rows
    assert grid.channel_at(0, 0)[0] == order[0]
    assert grid.channel_at(tile * 3 + 1, tile + 1)[0] == order[columns + 3]
    assert grid.channel_at(0, rows * tile) is None  # below the tiles

    # The channel open is kept over the same stage, and forgotten on another.
    assert window.channel.channel == 5
    shown_after(window, lambda: window.set_options(stage="C2"))
    assert window.channel.channel is None
    assert window.channel.channel_image.image is None
    assert window.timing.currentWidget() is window.timing.timings


def test_the_timing_table_refills_without_stalling_the_window(
    open_window, reference, shown_after, qtbot
) -> None:
    # Refilling a visible table item by item once took seconds for ResNet101's 311 layers.
    window = open_window([CHELSEA])
    panel, table = window.timing.timings, window.timing.timings.table
    qtbot.waitExposed(window)
    assert table.isVisible()
    durations = []
    fill = panel.show_data

    def timed(data) -> None:
        start = time.perf_counter()
        fill(data)
        durations.append(time.perf_counter() - start)

    panel.show_data = timed
    for stage in ("C2", "C3"):  # the second refills a table laid out and painted
        data = shown_after(window, lambda stage=stage: window.set_options(stage=stage))
        qtbot.wait(50)
    assert table_column(table, 0) == [layer.name for layer in data.layers]
    assert len(durations) == 2
    table.hide()
    timed(data)
    table.show()
    visible, hidden = max(durations[:2]), durations[2]
    # Generous: filled hidden, it takes milliseconds; the stall was seconds.
    assert visible < max(0.25, 20 * hidden), f"visible: {visible:.2f} s, hidden: {hidden:.3f} s"

    # Sorted by time, the table stays sorted so on the next view.
    table.sortByColumn(3, Qt.SortOrder.DescendingOrder)
    data = shown_after(window, lambda: window.set_options(stage="C4"))
    times = [float(text) for text in table_column(table, 3)]
    assert times == sorted(times, reverse=True)
    assert sorted(table_column(table, 0)) == sorted(layer.name for layer in data.layers)

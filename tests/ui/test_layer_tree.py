"""The layer tree: every feature layer of the network, grouped by stage and block; picking
one (in the tree or in the timing table) shows its channels and its Grad-CAM as the engine
computes them, its output captured only then; keys 1–5 still show the stages.

The windows run the session's random ResNet101 on 64×64 inputs (``small_window``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from visualizer.ui.layer_tree import AFTER_STAGES, STAGE_PREFIX

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
TIMEOUT_MS = 60_000


def texts(item) -> list[str]:
    return [item.text(column) for column in range(3)]


def shown_grid(window) -> np.ndarray:
    return np.asarray(window.grid.image.image)


def counting_analyses(analyzer, monkeypatch) -> list[tuple[str, ...]]:
    """The ``layers`` asked of ``analyzer.analyze`` from now on, one entry a call."""
    asked: list[tuple[str, ...]] = []
    analyze = analyzer.analyze

    def counted(image, **options):
        asked.append(tuple(options.get("layers", ())))
        return analyze(image, **options)

    monkeypatch.setattr(analyzer, "analyze", counted)
    return asked


def test_the_tree_lists_every_feature_layer_by_stage_and_block(
    small_window, small_analyzer, qtbot
) -> None:
    window = small_window([CHELSEA])
    tree = window.layer_tree
    qtbot.waitUntil(lambda: bool(tree.layers), timeout=TIMEOUT_MS)
    layers = small_analyzer.feature_layers()
    assert tree.layers == layers
    top = [tree.tree.topLevelItem(i) for i in range(tree.tree.topLevelItemCount())]
    assert [item.text(0) for item in top] == ["C1", "C2", "C3", "C4", "C5", AFTER_STAGES]
    for layer in layers:
        item = tree.item(layer.name)
        assert texts(item) == [layer.name, layer.module_type, "×".join(map(str, layer.shape))]
        group = item
        while group.parent() is not None:
            group = group.parent()
        assert group.text(0) == (layer.stage or AFTER_STAGES)
    # A block under its stage module, a convolution under its block.
    conv = tree.item("layer3.4.conv2")
    assert conv.parent().text(0) == "layer3.4"
    assert conv.parent().parent().text(0) == "layer3"
    assert conv.parent().parent().parent() is tree.item(STAGE_PREFIX + "C4")
    assert tree.item("maxpool").parent() is tree.item(STAGE_PREFIX + "C1")
    c4 = [layer for layer in layers if layer.stage == "C4"]
    assert texts(tree.item(STAGE_PREFIX + "C4"))[2] == "×".join(map(str, c4[-1].shape))
    # The rows of a block are in the order the network runs them.
    block = tree.item("layer1.0")
    names = [block.child(i).text(0) for i in range(block.childCount())]
    order = [layer.name for layer in layers]
    assert names == sorted(names, key=order.index)
    # The filter keeps the rows that match, and those above them.
    tree.filter.setText("Bottleneck")
    assert not tree.item("layer3.4").isHidden()
    assert not tree.item("layer3").isHidden()
    assert tree.item("layer3.4.conv2").isHidden()
    tree.filter.clear()
    assert not tree.item("layer3.4.conv2").isHidden()


def test_picking_a_layer_shows_its_channels_and_grad_cam(
    small_window, small_analyzer, qtbot, shown_after, monkeypatch
) -> None:
    from visualizer.core.render import fitting_columns, render_grid

    asked = counting_analyses(small_analyzer, monkeypatch)
    window = small_window([CHELSEA])
    tree = window.layer_tree
    qtbot.waitUntil(lambda: bool(tree.layers), timeout=TIMEOUT_MS)
    assert all(layers == () for layers in asked)  # no layer captured unasked
    window.timing.setCurrentWidget(tree)
    item = tree.item("layer2.1")
    tree.tree.scrollToItem(item)
    rect = tree.tree.visualItemRect(item)
    data = shown_after(
        window,
        lambda: qtbot.mouseClick(
            tree.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center()
        ),
    )
    assert asked[-1] == ("layer2.1",)  # captured now, for this image only

    expected = small_analyzer.analyze(CHELSEA, layers=["layer2.1"])
    activation = expected.layers["layer2.1"]
    assert data.options.layer == data.options.cam_layer == "layer2.1"
    np.testing.assert_array_equal(data.activation, activation.numpy())
    channels, height, width = activation.shape
    columns = fitting_columns(channels, height, width, data.options.aspect)
    grid = render_grid(activation, colormap="viridis", scale="channel", columns=columns)
    np.testing.assert_array_equal(shown_grid(window), grid.indices)
    assert window.grid_title.text().startswith(
        f"layer2.1 (Bottleneck): all of {channels} channels, {height}×{width} each"
    )
    cam = small_analyzer.attribute(expected, "gradcam", layer="layer2.1").map
    np.testing.assert_allclose(data.cam, cam, atol=1e-6)
    np.testing.assert_allclose(np.asarray(window.cam.heat.image), cam, atol=1e-6)
    assert "at layer2.1" in window.cam.title.text()
    assert window.cam.stage.currentText() == "layer2.1"
    assert tree.tree.currentItem() is item
    assert not any(action.isChecked() for action in window.controls.stage_actions.values())

    # Key 3: the stage C3 again, and Grad-CAM at its stage (C5).
    data = shown_after(window, window.controls.stage_actions["C3"].trigger)
    assert (data.options.layer, data.options.cam_layer, data.grid_name) == (None, None, "C3")
    np.testing.assert_array_equal(data.activation, expected.stages["C3"].numpy())
    assert tree.tree.currentItem() is tree.item(STAGE_PREFIX + "C3")
    assert window.controls.stage_actions["C3"].isChecked()
    # The layer again: its output is kept, not captured again.
    calls = len(asked)
    data = shown_after(window, lambda: tree.layer_chosen.emit("layer2.1"))
    np.testing.assert_array_equal(data.activation, activation.numpy())
    assert len(asked) == calls
    # A stage's row in the tree is that stage, as its key.
    data = shown_after(
        window, lambda: tree.tree.itemClicked.emit(tree.item(STAGE_PREFIX + "C2"), 0)
    )
    assert (data.options.stage, data.options.layer) == ("C2", None)


def test_a_click_on_a_timing_row_shows_that_layer(
    small_window, small_analyzer, shown_after, qtbot
) -> None:
    window = small_window([CHELSEA])
    qtbot.waitUntil(lambda: bool(window.layer_tree.layers), timeout=TIMEOUT_MS)
    table = window.timing.timings.table
    model = table.model()
    rows = {model.index(row, 0).data(): row for row in range(model.rowCount())}
    index = model.index(rows["layer1.0.conv2"], 0)
    table.scrollTo(index)
    rect = table.visualRect(index)
    data = shown_after(
        window,
        lambda: qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center()),
    )
    assert data.grid_name == "layer1.0.conv2"
    expected = small_analyzer.analyze(CHELSEA, layers=["layer1.0.conv2"])
    np.testing.assert_array_equal(data.activation, expected.layers["layer1.0.conv2"].numpy())
    # The classifier's output is no feature map: it is said, and nothing changes.
    assert "fc" in rows
    assert "fc" not in window.layer_tree.names()
    window.timing.timings.layer_clicked.emit("fc")
    assert window.options.layer == "layer1.0.conv2"
    assert "no single feature map" in window.statusBar().currentMessage()

"""The grid reads at any size: every gutter visible when scaled down, tiles laid out for the
pane's shape, no block of gutter colour after the last tile, the top-5 without scrolling."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from visualizer.core.render import fitting_columns
from visualizer.ui.grid_view import GridView


def grabbed(widget) -> np.ndarray:
    """What ``widget`` shows, as an ``(H, W, 3)`` uint8 array of its own.

    A copy: ``constBits()`` does not keep the QImage alive, so an array over it would read
    freed memory once ``image`` goes (black or garbage pixels, or a crash, depending on what
    earlier tests left on the heap)."""
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    buffer = np.frombuffer(image.constBits(), np.uint8)
    rows = buffer.reshape(image.height(), image.bytesPerLine())[:, : 3 * image.width()]
    return rows.reshape(image.height(), image.width(), 3).copy()


def on_screen(grid, x: float, y: float) -> tuple[int, int]:
    """Grid pixel ``(x, y)`` in the grid plot's own pixels, ``(column, row)``."""
    point = grid.plot.mapFromScene(grid.box.mapViewToScene(QPointF(x, y)))
    return point.x(), point.y()


def lay_out(window, qtbot, aspect: float) -> None:
    """The grid's pane reshaped to ``aspect`` (width ÷ height), and the window idle again."""
    window._grid_resized(aspect)
    qtbot.waitUntil(window.idle, timeout=60_000)


def white_lines(pixels: np.ndarray, axis: int) -> np.ndarray:
    """The positions along ``axis`` (1: columns, 0: rows) where a line of gutter white runs
    through most of the picture."""
    white = np.all(pixels >= 250, axis=-1)
    return np.flatnonzero(white.mean(axis=1 - axis) > 0.5)


def test_every_gutter_shows_when_the_grid_is_scaled_down(open_window, picture_file, qtbot) -> None:
    """VGG16's C1 grid (8×8 tiles of 224², 1799 px) in a pane of ~400 px: each of its 14
    gutters must still be a line on screen, not dropped with the rows of pixels scaled away."""
    window = open_window([picture_file("a.png")], model="vgg16")
    lay_out(window, qtbot, 0.4)
    lay_out(window, qtbot, 1.0)
    # A grid view of its own, 400×400, outside the window's layout (which could resize it).
    grid = GridView()
    qtbot.addWidget(grid)
    grid.resize(400, 430)
    grid.show()
    qtbot.waitExposed(grid)
    grid.show_data(window.data)
    grid.box.autoRange(padding=0)
    QApplication.processEvents()
    layout = window.data.grid.layout
    assert (layout.rows, layout.columns, layout.tile_width) == (8, 8, 224)
    left, top = on_screen(grid, 0, 0)
    right, bottom = on_screen(grid, *reversed(layout.shape))
    assert right - left < 420  # scaled down more than 4×
    pixels = grabbed(grid.plot)[int(top) + 1 : int(bottom) - 1, int(left) + 1 : int(right) - 1]
    left, top = int(left) + 1, int(top) + 1
    columns, rows = white_lines(pixels, axis=1), white_lines(pixels, axis=0)
    for index in range(1, layout.columns):
        x, _ = on_screen(grid, index * 225 - 0.5, 0)
        assert np.any(np.abs(columns + left - x) <= 1), f"the gutter after column {index} is gone"
    for index in range(1, layout.rows):
        _, y = on_screen(grid, 0, index * 225 - 0.5)
        assert np.any(np.abs(rows + top - y) <= 1), f"the gutter after row {index} is gone"
    # The lines are between tiles only: a tile's middle is not white.
    middle_x, _ = on_screen(grid, 112, 0)
    assert not np.any(np.abs(columns + left - middle_x) <= 2)


def test_tile_columns_follow_the_panes_shape(open_window, picture_file, qtbot) -> None:
    window = open_window([picture_file("a.png")], model="vgg16")
    # The first view already fills the pane it is shown in.
    layout = window.data.grid.layout
    assert window.data.options.aspect == window.state.grid_aspect
    assert window.state.grid_aspect == pytest.approx(window.grid.aspect(), abs=0.01)
    assert layout.columns == fitting_columns(64, 224, 224, window.grid.aspect())
    # A tall pane: few columns.
    lay_out(window, qtbot, 0.4)
    assert window.data.grid.layout.columns == fitting_columns(64, 224, 224, 0.4) == 5
    # A wide pane: more columns than rows, chosen to show the tiles largest.
    lay_out(window, qtbot, 16 / 9)
    layout = window.data.grid.layout
    assert layout.columns == fitting_columns(64, 224, 224, 16 / 9) == 11
    assert layout.rows == 6
    assert window.data.options == window.options
    # A small change (a line of text above the grid) lays nothing out again.
    shown = window.data
    lay_out(window, qtbot, 1.7)
    assert window.data is shown
    # …but the next view asked for fills the pane as it is now.
    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        window.set_options(stage="C2")
    data = window.data
    assert data.options.aspect == 1.7
    assert data.grid.layout.columns == fitting_columns(128, 112, 112, 1.7)


def test_the_empty_slots_after_the_last_tile_show_the_background(
    open_window, picture_file, qtbot
) -> None:
    """11 columns × 6 rows hold 66 tiles; VGG16's 64 leave two empty slots that must not be a
    white block."""
    window = open_window([picture_file("a.png")], model="vgg16")
    lay_out(window, qtbot, 0.4)
    lay_out(window, qtbot, 16 / 9)
    layout = window.data.grid.layout
    assert layout.rows * layout.columns - len(layout.order) == 2
    cover = window.grid.empty.rect()
    height, width = layout.shape
    assert cover.right() == pytest.approx(width)
    assert cover.bottom() == pytest.approx(height)
    assert cover.left() == pytest.approx(9 * 225 - 1)
    assert cover.top() == pytest.approx(5 * 225 - 1)
    window.grid.plot.resize(660, 360)
    window.grid.box.autoRange(padding=0)
    QApplication.processEvents()
    pixels = grabbed(window.grid.plot)
    x0, y0 = on_screen(window.grid, 9 * 225 + 20, 5 * 225 + 20)
    x1, y1 = on_screen(window.grid, width - 20, height - 20)
    block = pixels[int(y0) : int(y1), int(x0) : int(x1)]
    assert block.size > 0
    assert np.all(block >= 250, axis=-1).mean() < 0.01


def test_the_top_5_shows_all_five_without_a_scrollbar(open_window, picture_file) -> None:
    window = open_window([picture_file("a.png")], model="vgg16")
    for predictions in (
        window.cam.predictions,
        *(p.predictions for p in window.compare_view.panes),
    ):
        assert not predictions.verticalScrollBar().isVisible()
        rows = [predictions.visualItemRect(predictions.item(i)) for i in range(5)]
        if predictions.isVisible():
            assert all(predictions.viewport().rect().contains(rect) for rect in rows)

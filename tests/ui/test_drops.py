"""Dropping files and folders on the window: images join the strip, every bad file is named
once in the error line, and the window goes on working, without a dialog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from tests.ui.dropping import drop

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")


@pytest.fixture
def files(picture_file) -> dict[str, Path]:
    """Three bad files, a folder with two images and a text file, and a folder without images."""
    album = Path(picture_file("album/first.png", 80, 60, seed=1)).parent
    picture_file("album/second.jpg", 50, 70, seed=2)
    (album / "notes.txt").write_text("not an image, and not named like one\n")
    folder = album.parent
    (folder / "letter.png").write_text("Dear network, this is not a picture.\n")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "nothing").mkdir()
    return {
        "letter.png": folder / "letter.png",
        "empty.jpg": folder / "empty.jpg",
        "missing.png": folder / "missing.png",
        "album": album,
        "nothing": folder / "nothing",
    }


def test_a_drop_of_good_and_bad_files(open_window, files, reference, shown_after, qtbot) -> None:
    from visualizer.core import load_image

    window = open_window([CHELSEA])
    first, second = str(files["album"] / "first.png"), str(files["album"] / "second.jpg")
    nothing = files["nothing"]
    bad = {name: files[name] for name in ("letter.png", "empty.jpg", "missing.png")}

    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        drop(window, [str(path) for path in files.values()])
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 3)

    # The two images of the folder joined the strip; the first of them is shown.
    keys = window.strip.keys()
    assert [window.pictures[key].name for key in keys] == ["chelsea.jpg", "first.png", "second.jpg"]
    assert window.pictures[window.current].source == first
    assert window.windowTitle() == "fmviz — first.png — ResNet101"
    assert window.data.picture == window.current
    analyzer = reference.analyzer_of("resnet101")
    expected = analyzer.analyze(load_image(first))
    np.testing.assert_array_equal(window.data.activation, expected.stages["C1"].numpy())
    assert [index for index, _, _ in window.data.topk] == [index for index, _, _ in expected.topk]
    # Files keep only their thumbnail: the pixels are read again for an analysis.
    assert window.pictures[keys[2]].image is None
    assert window.pictures[keys[2]].source == second
    assert max(window.pictures[keys[2]].thumbnail.shape[:2]) <= 96

    # One message per bad file, naming it; one for the folder without images; none else.
    messages = window.errors.messages
    assert len(messages) == 4, messages
    for name, path in bad.items():
        naming = [text for text in messages if name in text]
        assert len(naming) == 1, (name, messages)
        assert naming[0].startswith(str(path))
    assert [text for text in messages if str(nothing) in text] == [
        f"{nothing}: no images in this folder"
    ]
    assert not any("notes.txt" in text or "first.png" in text for text in messages)
    assert window.errors.isVisible()
    assert window.errors.label.text().startswith(messages[-1])
    assert "(+3 more" in window.errors.label.text()
    assert QApplication.activeModalWidget() is None  # and no dialog at all: see conftest

    # The window goes on working: another stage, another image.
    data = shown_after(window, lambda: window.set_options(stage="C3"))
    assert data.activation.shape == (512, 28, 28)
    np.testing.assert_array_equal(data.activation, expected.stages["C3"].numpy())
    data = shown_after(window, lambda: window.strip.setCurrentRow(0))
    assert window.pictures[data.picture].source == CHELSEA
    np.testing.assert_array_equal(
        np.asarray(window.grid.image.image),
        reference.grid(CHELSEA, "C3", aspect=data.options.aspect).indices,
    )
    assert len(window.errors.messages) == 4

    # Dismissed, the errors go; a new bad drop names its file alone.
    window.errors.clear()
    assert not window.errors.isVisible()
    drop(window, [str(bad["missing.png"])])
    qtbot.waitUntil(lambda: window.idle() and len(window.errors.messages) == 1)
    assert window.errors.messages == [f"{bad['missing.png']}: no such file"]
    assert window.strip.count() == 3


def test_dropping_an_image_already_in_the_strip_shows_it(open_window, shown_after, qtbot) -> None:
    coffee = str(SAMPLES / "coffee.jpg")
    window = open_window([CHELSEA, coffee])
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 2)
    chelsea_key, coffee_key = window.strip.keys()
    assert window.current == chelsea_key

    data = shown_after(window, lambda: drop(window, [coffee]))
    assert data.picture == coffee_key
    qtbot.waitUntil(window.idle)
    assert window.strip.count() == 2
    assert window.strip.currentItem().data(Qt.ItemDataRole.UserRole) == coffee_key
    assert window.errors.messages == []


def test_pasted_and_dropped_image_data_are_analysed(
    open_window, picture_file, reference, shown_after
) -> None:
    from PySide6.QtGui import QGuiApplication, QImage

    window = open_window([CHELSEA])
    analyzer = reference.analyzer_of("resnet101")
    pasted_path, dropped_path = picture_file("pasted.png", seed=3), picture_file("d.png", seed=4)

    QGuiApplication.clipboard().setImage(QImage(pasted_path))
    data = shown_after(window, window.paste)
    picture = window.pictures[data.picture]
    assert picture.name.startswith("pasted ")
    expected = analyzer.analyze(Image.open(pasted_path))
    np.testing.assert_array_equal(data.activation, expected.stages["C1"].numpy())
    assert window.windowTitle() == f"fmviz — {picture.name} — ResNet101"

    mime = QMimeData()
    mime.setImageData(QImage(dropped_path))
    event = QDropEvent(
        QPointF(5, 5),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    data = shown_after(window, lambda: window.dropEvent(event))
    assert window.pictures[data.picture].name.startswith("dropped ")
    expected = analyzer.analyze(Image.open(dropped_path))
    np.testing.assert_array_equal(data.activation, expected.stages["C1"].numpy())
    assert window.strip.count() == 3
    assert window.errors.messages == []

    QGuiApplication.clipboard().clear()
    window.paste()
    assert window.errors.messages == [
        "Nothing to add: the clipboard holds no image file or image data."
    ]


def test_an_image_with_oversized_metadata_is_added_with_a_note(
    open_window, picture_file, qtbot, tmp_path: Path
) -> None:
    """A PNG whose ICC profile inflates past Pillow's 1 MiB limit (as in a field report) is
    added and analysed; the skipped profile is a note in the status bar, not a red line."""
    from tests.oversized_metadata import with_huge_icc_profile

    profiled = with_huge_icc_profile(Path(picture_file("plain.png")), tmp_path / "profiled.png")

    window = open_window([CHELSEA])
    notes: list[str] = []
    window.statusBar().messageChanged.connect(notes.append)
    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        drop(window, [str(profiled)])
    qtbot.waitUntil(window.idle)
    assert window.pictures[window.current].source == str(profiled)
    assert window.errors.messages == []
    assert any("profiled.png: ICC profile ignored" in note for note in notes), notes

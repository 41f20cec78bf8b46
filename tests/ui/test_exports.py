"""Exports from the window: the files ``fmviz export`` writes, with its names and metadata,
and the pixels on screen."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
STAGES = ("C1", "C2", "C3", "C4", "C5")


@pytest.fixture
def exported(qtbot, monkeypatch: pytest.MonkeyPatch):
    """``exported(window, what, to)``: export ``what`` to ``to`` (a folder: the file name the
    window proposes, in it) as if chosen in the dialog; returns the paths written (PNG and
    CSV files: the folder may hold the test's settings file too)."""

    def files(folder: Path) -> set[Path]:
        return {path for path in folder.iterdir() if path.suffix in (".png", ".csv")}

    def run(window, what: str, to: Path) -> list[Path]:
        asked: list[tuple[str, str]] = []

        def ask(what: str, name: str) -> str:
            asked.append((what, name))
            return str(to if what == "grids" else to / name)

        monkeypatch.setattr(window, "ask_export_path", ask)
        before = files(to)
        window.export(what)
        assert len(asked) == 1
        expected = 5 if what == "grids" else 1
        qtbot.waitUntil(lambda: window.idle() and len(files(to) - before) >= expected)
        written = sorted(files(to) - before)
        assert len(written) == expected, written
        assert f"Saved {expected} file(s) in {to}" in window.statusBar().currentMessage()
        if what != "grids":
            assert written == [to / asked[0][1]]
        return written

    return run


def png(path: Path) -> tuple[np.ndarray, dict[str, str], Image.Image]:
    with Image.open(path) as image:
        image.load()
        return np.asarray(image), dict(image.text), image.copy()


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as file:
        return list(csv.reader(file))


def same_png(path: Path, other: Path) -> tuple[np.ndarray, dict[str, str], Image.Image]:
    """``png(path)``, checked to hold the pixels and the metadata of ``other``."""
    pixels, text, image = png(path)
    other_pixels, other_text, other_image = png(other)
    assert image.mode == other_image.mode
    np.testing.assert_array_equal(pixels, other_pixels)
    assert text == other_text
    return pixels, text, image


def test_every_export_is_what_fmviz_export_writes(
    open_window, reference, exported, shown_after, tmp_path: Path
) -> None:
    from visualizer.core.export import ExportOptions, export_result, output_names

    window = open_window([CHELSEA])
    data = shown_after(
        window, lambda: window.set_options(stage="C3", cam_stage="C3", colormap="magma")
    )
    analyzer = reference.analyzer_of("resnet101")
    result = reference.result(CHELSEA)
    ui, cli = tmp_path / "window", tmp_path / "export"
    ui.mkdir()
    cli.mkdir()
    # What `fmviz export chelsea.jpg --colormap magma --cam-stage C3` writes.
    options = ExportOptions(cam_stage="C3", colormap="magma")
    export_result(analyzer, result, cli, "chelsea", options)
    names = output_names("chelsea", "resnet101", options)
    assert sorted(path.name for path in cli.iterdir()) == sorted(names)

    # The grid on screen.
    [grid_file] = exported(window, "grid", ui)
    assert grid_file.name == "chelsea_resnet101_C3.png"
    pixels, text, image = same_png(grid_file, cli / grid_file.name)
    assert image.mode == "P"
    # The channels on screen, in their order and colours, laid out as fmviz export lays them
    # out (near-square); on screen the columns fill the pane instead.
    exported_grid = reference.grid(CHELSEA, "C3", colormap="magma")
    np.testing.assert_array_equal(pixels, exported_grid.indices)
    assert exported_grid.layout.order == data.grid.layout.order
    on_screen = reference.grid(CHELSEA, "C3", colormap="magma", aspect=data.options.aspect)
    np.testing.assert_array_equal(np.asarray(window.grid.image.image), on_screen.indices)
    palette = np.asarray(image.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette, data.grid.palette[:, :3])
    assert {key: text[key] for key in ("model", "stage", "weights", "source", "colormap")} == {
        "model": "resnet101",
        "stage": "C3",
        "weights": "random (untrained, seed 0)",
        "source": CHELSEA,
        "colormap": "magma",
    }
    assert text["channels"] == "512"

    # All five grids, into a folder, named as fmviz export names them.
    (ui / "all").mkdir()
    written = exported(window, "grids", ui / "all")
    assert [path.name for path in written] == sorted(f"chelsea_resnet101_{s}.png" for s in STAGES)
    for stage in STAGES:
        name = f"chelsea_resnet101_{stage}.png"
        pixels, text, _ = same_png(ui / "all" / name, cli / name)
        np.testing.assert_array_equal(
            pixels, reference.grid(CHELSEA, stage, colormap="magma").indices
        )
        assert text["stage"] == stage

    # The Grad-CAM overlay of the class explained, at the stage shown.
    [overlay_file] = exported(window, "overlay", ui)
    assert overlay_file.name == "chelsea_resnet101_gradcam_C3.png"
    _, text, image = same_png(overlay_file, cli / overlay_file.name)
    assert image.mode == "RGB"
    top1, label, _ = result.topk[0]
    assert {key: text[key] for key in ("target", "stage", "colormap", "opacity")} == {
        "target": f"{top1} {label}",
        "stage": "C3",
        "colormap": "turbo",
        "opacity": "0.5",
    }

    # The timings of the analysis on screen.
    [timings_file] = exported(window, "timings", ui)
    assert timings_file.name == "chelsea_resnet101_timings.csv"
    rows, cli_rows = read_csv(timings_file), read_csv(cli / timings_file.name)
    assert rows[0] == ["layer", "type", "milliseconds"]
    assert len(rows) == len(data.layers) + 1
    assert [row[:2] for row in rows] == [row[:2] for row in cli_rows]
    assert [row[0] for row in rows[1:]] == [layer.name for layer in data.layers]
    assert [float(row[2]) for row in rows[1:]] == pytest.approx(
        [layer.ms for layer in data.layers], abs=1e-4
    )
    assert window.errors.messages == []


def test_exports_follow_the_class_order_and_opacity(
    open_window, reference, exported, shown_after, tmp_path: Path
) -> None:
    from visualizer.core.export import ExportOptions, export_result

    window = open_window([CHELSEA])
    shown_after(
        window,
        lambda: window.set_options(order="mean", target=281, cam_colormap="gray", cam_stage="C1"),
    )
    window.cam.opacity.setValue(30)
    assert window.options.opacity == pytest.approx(0.3)

    [grid_file] = exported(window, "grid", tmp_path)
    pixels, text, _ = png(grid_file)
    # The channels on screen, laid out as fmviz export lays them out (near-square).
    assert (
        tuple(window.data.grid.layout.order)
        == reference.grid(CHELSEA, "C1", order="mean").layout.order
    )
    np.testing.assert_array_equal(pixels, reference.grid(CHELSEA, "C1", order="mean").indices)
    assert text["channel order"].startswith("by mean activation, highest first: ")
    order = [int(word) for word in text["channel order"].split(": ", 1)[1].split()]
    assert tuple(order) == window.data.grid.layout.order

    [overlay_file] = exported(window, "overlay", tmp_path)
    cli = tmp_path / "export"
    cli.mkdir()
    options = ExportOptions(stages=(), cam_stage="C1", target=281, cam_colormap="gray", opacity=0.3)
    analyzer = reference.analyzer_of("resnet101")
    export_result(analyzer, reference.result(CHELSEA), cli, "chelsea", options)
    _, text, _ = same_png(overlay_file, cli / overlay_file.name)
    assert text["target"] == "281 tabby"
    assert text["opacity"] == "0.3"


def test_nothing_to_export_before_an_image(settings_path: str, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from visualizer.ui.jobs import ModelSpec
    from visualizer.ui.main_window import MainWindow

    window = MainWindow(
        ModelSpec("resnet101", "random", "cpu"),
        QSettings(settings_path, QSettings.Format.IniFormat),
    )
    try:
        asked: list[str] = []
        window.ask_export_path = lambda what, _name: asked.append(what) or str(tmp_path / "x.png")
        for what in ("grid", "grids", "overlay", "timings"):
            window.export(what)
        assert asked == []
        assert window.errors.messages == ["Nothing to export yet: add an image first."] * 4
        assert [path for path in tmp_path.iterdir() if path.suffix != ".ini"] == []
    finally:
        window.close()


def test_an_export_that_cannot_be_written_says_so_once(
    open_window, qtbot, shown_after, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window([CHELSEA])
    target = tmp_path / "gone" / "grid.png"  # its folder was removed after it was chosen
    monkeypatch.setattr(window, "ask_export_path", lambda _what, _name: str(target))
    window.export("grid")
    qtbot.waitUntil(lambda: window.idle() and bool(window.errors.messages))
    [message] = window.errors.messages
    assert str(target.parent) in message
    assert "No such file or directory" in message
    assert not list(tmp_path.rglob("*.png"))
    assert not list(tmp_path.rglob("*.part"))
    data = shown_after(window, lambda: window.set_options(stage="C2"))  # still working
    assert data.options.stage == "C2"


def test_a_failed_export_names_the_file_chosen(
    open_window, qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window([CHELSEA])
    target = tmp_path / "gone" / "grid.png"
    monkeypatch.setattr(window, "ask_export_path", lambda _what, _name: str(target))
    window.export("grid")
    qtbot.waitUntil(lambda: window.idle() and bool(window.errors.messages))
    [message] = window.errors.messages
    assert ".part" not in message, message
    assert message.startswith(f"{target}: "), message


def test_an_export_right_after_a_network_change_is_named_as_its_content(
    open_window, exported, reference, tmp_path: Path
) -> None:
    reference.analyzer_of("vgg16")  # built beforehand, shared
    window = open_window([CHELSEA])
    window.set_spec(model="vgg16")  # its view is not on screen yet
    [grid_file] = exported(window, "grid", tmp_path)
    _, text, _ = png(grid_file)
    assert grid_file.name == f"chelsea_{text['model']}_C1.png"


def test_annotated_figures_are_what_fmviz_export_annotate_writes(
    open_window, reference, exported, shown_after, tmp_path: Path
) -> None:
    from visualizer.core.export import ExportOptions, export_result

    window = open_window([CHELSEA])
    shown_after(window, lambda: window.set_options(stage="C3", cam_stage="C3"))
    analyzer, result = reference.analyzer_of("resnet101"), reference.result(CHELSEA)
    top1, label, _ = result.topk[0]
    ui, cli = tmp_path / "ui", tmp_path / "cli"
    ui.mkdir()
    cli.mkdir()
    # What `fmviz export chelsea.jpg --cam-stage C3 --stages C3 --annotate` writes.
    export_result(
        analyzer,
        result,
        cli,
        "chelsea",
        ExportOptions(stages=("C3",), cam_stage="C3", annotate=True),
    )
    # The annotated figures of the grid and the overlay: fmviz export --annotate's files.
    [figure_file] = exported(window, "grid_figure", ui)
    assert figure_file.name == "chelsea_resnet101_C3_annotated.png"
    _, text, _ = same_png(figure_file, cli / figure_file.name)
    assert text["title"].startswith("chelsea.jpg · ResNet101 · stage C3")
    assert "warning" in text  # random weights: said on the figure
    [figure_file] = exported(window, "overlay_figure", ui)
    assert figure_file.name == "chelsea_resnet101_gradcam_C3_annotated.png"
    _, text, _ = same_png(figure_file, cli / figure_file.name)
    assert f"{top1} {label}" in text["caption"] or f"{top1} {label}" in text["title"]

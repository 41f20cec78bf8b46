"""Compare mode: VGG16 and ResNet101 side by side on one picture, as ``visualizer.core``
computes each, with the stage, the view options and the Grad-CAM class shared, the zoom
linked, the comparison strip, the exports, and the mode remembered."""

from __future__ import annotations

import csv
import dataclasses
import html
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QSettings, Qt

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
COMPARED = ("vgg16", "resnet101")  # left, right
LABELS = {"vgg16": "VGG16", "resnet101": "ResNet101"}
GROUPS = ("C1", "C2", "C3", "C4", "C5", "head")
TITLE = "fmviz — {} — VGG16 vs ResNet101"
ATOL = 1e-5


# Helpers


def panes(window) -> dict:
    """The compare view's panes by network."""
    return dict(zip(COMPARED, window.compare_view.panes, strict=True))


def shown_grid(pane) -> np.ndarray:
    return np.asarray(pane.grid.image.image)


def softmax(result) -> np.ndarray:
    logits = result.logits.double().numpy()
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def rank_of(probabilities: np.ndarray, target: int) -> int:
    return int((probabilities > probabilities[target]).sum()) + 1


def cell(table, row: int, column: int) -> str:
    item = table.item(row, column)
    return "" if item is None else item.text()


def parameters_of(text: str) -> tuple[float, float]:
    """A count as the strip shows it ("138.36 M", "38.7 k", "0"): its value and half a unit
    of its last digit."""
    number, _, unit = text.partition(" ")
    scale = {"M": 1e6, "k": 1e3, "": 1.0}[unit]
    decimals = len(number.partition(".")[2])
    return float(number) * scale, 0.5 * 10.0**-decimals * scale


def expect_side(
    window,
    reference,
    model: str,
    path: str,
    target: int,
    *,
    stage: str = "C1",
    cam_stage: str = "C5",
    **grid_options,
) -> None:
    """``model``'s pane shows ``path`` as the core computes it: the grid of ``stage`` with
    ``grid_options``, the Grad-CAM of ``target`` at ``cam_stage``, its top-5."""
    pane = panes(window)[model]
    data = pane.data
    result = reference.result(path, model)
    assert data is not None, f"{model}: nothing shown ({pane.title.text()})"
    assert window.pictures[data.picture].source == path
    assert data.picture == window.current
    assert data.model.spec.model == model
    assert data.options == window.options
    assert data.options.stage == stage
    np.testing.assert_array_equal(data.activation, result.stages[stage].numpy())
    grid = reference.grid(path, stage, model, aspect=data.options.aspect, **grid_options)
    np.testing.assert_array_equal(shown_grid(pane), grid.indices)
    assert data.grid.layout == grid.layout
    assert data.target == target
    cam = reference.cam(path, cam_stage, target, model)
    np.testing.assert_allclose(data.cam, cam, atol=ATOL, rtol=0)
    np.testing.assert_allclose(pane.cam.heat.image, cam, atol=ATOL, rtol=0)
    probabilities = softmax(result)
    assert data.target_probability == pytest.approx(probabilities[target], rel=1e-4, abs=1e-9)
    assert data.target_rank == rank_of(probabilities, target)
    # Its own top-5, the class explained in bold where it is among them.
    items = [pane.predictions.item(row) for row in range(pane.predictions.count())]
    assert [item.data(Qt.ItemDataRole.UserRole) for item in items] == [
        index for index, _, _ in result.topk
    ]
    assert [item.font().bold() for item in items] == [
        index == target for index, _, _ in result.topk
    ]
    top_label = result.topk[0][1]
    assert pane.title.text().startswith(f"<b>{LABELS[model]}</b> · {stage}: ")
    assert f"top-1 {html.escape(top_label, quote=False)}" in pane.title.text()


def expect_note(window, reference, path: str, target: int) -> None:
    """The note names both top-1 classes when they differ, else says both rank it first;
    either way it names the class both Grad-CAMs explain."""
    tops = {model: reference.result(path, model).topk[0] for model in COMPARED}
    note = window.compare_view.note
    assert note.isVisibleTo(window)
    text = note.text()
    label = reference.analyzer_of("resnet101").categories[target]
    assert f"Both Grad-CAMs explain <b>{target} {html.escape(label, quote=False)}</b>" in text
    if tops["vgg16"][0] != tops["resnet101"][0]:
        assert "top-1 classes differ" in text
        for model, (index, name, probability) in tops.items():
            said = f"{LABELS[model]}: {index} {html.escape(name, quote=False)}"
            assert f"{said} ({probability * 100:.1f} %)" in text
        assert note.property("differ") is True
    else:
        name = html.escape(tops["vgg16"][1], quote=False)
        assert text.startswith(f"Both networks rank <b>{name}</b> first.")
        assert "differ" not in text
        assert note.property("differ") is False


def activate(window, qtbot) -> None:
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)


# Opening


def test_compare_mode_shows_both_networks_on_the_same_picture(open_window, reference) -> None:
    from visualizer.core.stage_summary import stage_rows

    window = open_window([CHELSEA], compare=True)
    results = {model: reference.result(CHELSEA, model) for model in COMPARED}
    lead_top1 = results["resnet101"].topk[0][0]  # the network chosen alone leads

    assert window.compare
    assert window.compare_action.isChecked()
    assert window.pages.currentWidget() is window.compare_view
    assert window.compare_view.isVisible()
    assert not window.body.isVisible()
    assert window.windowTitle() == TITLE.format("chelsea.jpg")
    assert window.data is None  # the single view was never asked for
    for model in COMPARED:
        expect_side(window, reference, model, CHELSEA, lead_top1)
    sides = [pane.data for pane in window.compare_view.panes]
    assert sides[0].target == sides[1].target
    assert sides[1].target_rank == 1
    expect_note(window, reference, CHELSEA, lead_top1)

    # The comparison strip: shapes of the core's stages, the times of the window's own
    # analyses, the parameters of the networks' layers.
    strip = window.compare_view.strip
    table = strip.table
    assert table.rowCount() == len(GROUPS) + 1
    assert [cell(table, row, 0) for row in range(table.rowCount())] == [*GROUPS, "total"]
    for side, model in enumerate(COMPARED):
        result, data = results[model], sides[side]
        network = reference.analyzer_of(model).model
        expected_rows = stage_rows(network, result)
        assert [(row.stage, row.shape, row.parameters) for row in data.stage_rows] == [
            (row.stage, row.shape, row.parameters) for row in expected_rows
        ]
        assert sum(row.ms for row in data.stage_rows) == pytest.approx(data.total_ms, rel=1e-6)
        for row, group in enumerate(GROUPS):
            shape = result.logits.shape if group == "head" else result.stages[group].shape
            assert cell(table, row, 1 + side) == "×".join(str(n) for n in shape)
            assert cell(table, row, 3 + side) == f"{data.stage_rows[row].ms:.1f}"
            count, tolerance = parameters_of(cell(table, row, 5 + side))
            assert count == pytest.approx(expected_rows[row].parameters, abs=tolerance)
        total = len(GROUPS)
        milliseconds = sum(row.ms for row in data.stage_rows)
        assert cell(table, total, 3 + side) == f"{milliseconds:.1f}"
        everything = sum(p.numel() for p in network.parameters())
        count, tolerance = parameters_of(cell(table, total, 5 + side))
        assert count == pytest.approx(everything, abs=tolerance)
        assert f"<b>{LABELS[model]}</b> {milliseconds:.1f} ms" in strip.totals.text()
        assert f"{everything / 1e6:.1f} M parameters" in strip.totals.text()
        # Both sides timed the same way, and the strip says which once.
        assert data.timing == "steady state: after one untimed warm-up pass"
        assert strip.totals.text().count("untimed warm-up pass") == 1
        assert sorted(strip.bars) == [0, 1]
        heights = strip.bars[side].opts["height"]
        np.testing.assert_allclose(heights, [row.ms for row in data.stage_rows])

    # Both untrained: one banner naming both; the status bar names the weights of each.
    assert len(window.banner.messages) == 1
    assert window.banner.messages[0].startswith("Untrained VGG16 and ResNet101 (random weights): ")
    for model in COMPARED:
        assert f"{LABELS[model]} random (untrained, seed 0)" in window.weights_label.text()
    assert window.errors.messages == []


# What both panes share


def test_stage_colormap_scale_order_and_keys_apply_to_both(
    open_window, reference, shown_after, qtbot
) -> None:
    from visualizer.core.render import grid_palette

    window = open_window([CHELSEA], compare=True)
    target = reference.result(CHELSEA).topk[0][0]
    look = {"colormap": "magma", "scale": "stage", "order": "mean"}

    shown_after(window, lambda: window.set_options(stage="C3", **look))
    for model, pane in panes(window).items():
        expect_side(window, reference, model, CHELSEA, target, stage="C3", **look)
        np.testing.assert_array_equal(pane.grid.image.lut, grid_palette("magma"))
        assert pane.data.grid.colormap == "magma"
    assert window.controls.stage_actions["C3"].isChecked()

    # Keys 1–5 and the View menu's stage actions, as in the single view.
    activate(window, qtbot)
    for key, stage in [(Qt.Key.Key_5, "C5"), (Qt.Key.Key_2, "C2")]:
        shown_after(window, lambda key=key: qtbot.keyClick(window, key))
        assert window.options.stage == stage
        for model in COMPARED:
            expect_side(window, reference, model, CHELSEA, target, stage=stage, **look)
        assert window.controls.stage_actions[stage].isChecked()
    shown_after(window, window.controls.stage_actions["C4"].trigger)
    for model in COMPARED:
        expect_side(window, reference, model, CHELSEA, target, stage="C4", **look)
    assert window.errors.messages == []


def test_the_class_is_shared_and_follows_the_lead_network(
    open_window, reference, shown_after, qtbot
) -> None:
    window = open_window([CHELSEA], compare=True)
    vgg, resnet = (reference.result(CHELSEA, model) for model in COMPARED)
    vgg_top1, resnet_top1 = vgg.topk[0][0], resnet.topk[0][0]
    vgg_pane, resnet_pane = window.compare_view.panes

    # A click on a class of VGG16's top-5 (not ResNet101's top-1): both explain it.
    predictions = vgg_pane.predictions
    row = next(row for row, (index, _, _) in enumerate(vgg.topk) if index != resnet_top1)
    item = predictions.item(row)
    chosen = item.data(Qt.ItemDataRole.UserRole)
    assert chosen == vgg.topk[row][0]
    qtbot.waitExposed(window)
    position = predictions.visualItemRect(item).center()
    shown_after(
        window,
        lambda: qtbot.mouseClick(predictions.viewport(), Qt.MouseButton.LeftButton, pos=position),
    )
    assert window.options.target == chosen
    for model in COMPARED:
        expect_side(window, reference, model, CHELSEA, chosen)
    expect_note(window, reference, CHELSEA, chosen)

    # A class in neither top-5, from the other pane's list: 281 (tabby cat).
    shown_after(window, lambda: resnet_pane.predictions.target_chosen.emit(281))
    for model in COMPARED:
        expect_side(window, reference, model, CHELSEA, 281)
        assert panes(window)[model].data.target_label == "tabby"
    # The Grad-CAM stage, through the controls above both panes.
    controls = window.compare_view.controls
    shown_after(window, lambda: controls.stage.setCurrentText("C4"))
    for model in COMPARED:
        expect_side(window, reference, model, CHELSEA, 281, cam_stage="C4")

    # Top-1: the top-1 class of the lead, the network chosen alone (ResNet101).
    shown_after(window, controls.top1.click)
    assert window.options.target is None
    for model in COMPARED:
        expect_side(window, reference, model, CHELSEA, resnet_top1, cam_stage="C4")

    # Alone, the network chosen shows its own view; choose VGG16 there.
    shown_after(window, window.compare_action.trigger)
    assert not window.compare
    assert window.pages.currentWidget() is window.body
    assert window.windowTitle() == "fmviz — chelsea.jpg — ResNet101"
    assert window.data.model.spec.model == "resnet101"
    assert window.data.target == resnet_top1
    index = window.controls.model.findData("vgg16")
    data = shown_after(window, lambda: window.controls.model.setCurrentIndex(index))
    assert data.model.spec.model == "vgg16"
    assert data.target == vgg_top1
    np.testing.assert_array_equal(
        np.asarray(window.grid.image.image),
        reference.grid(CHELSEA, "C1", "vgg16", aspect=data.options.aspect).indices,
    )

    # Compared again, VGG16 leads: its top-1 is the class both explain.
    shown_after(window, window.compare_action.trigger)
    assert window.compare
    assert window.windowTitle() == TITLE.format("chelsea.jpg")
    for model in COMPARED:
        expect_side(window, reference, model, CHELSEA, vgg_top1, cam_stage="C4")
    assert vgg_pane.data.target_rank == 1
    expect_note(window, reference, CHELSEA, vgg_top1)
    assert window.errors.messages == []


def test_the_note_says_when_both_networks_rank_one_class_first(
    open_window, reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visualizer.ui import jobs

    # Random networks seldom agree: VGG16's analyses are given ResNet101's top-1 class.
    resnet = reference.result(CHELSEA, "resnet101")
    top1, label, _ = resnet.topk[0]
    vgg_probabilities = softmax(reference.result(CHELSEA, "vgg16"))
    original = jobs.Session._result

    def agreeing(self, spec, picture):
        result = original(self, spec, picture)
        if spec.model != "vgg16":
            return result
        rest = [top for top in result.topk if top[0] != top1][:4]
        topk = [(top1, label, float(vgg_probabilities[top1])), *rest]
        return dataclasses.replace(result, topk=topk)

    monkeypatch.setattr(jobs.Session, "_result", agreeing)
    window = open_window([CHELSEA], compare=True)
    vgg_pane, resnet_pane = window.compare_view.panes
    assert vgg_pane.data.topk[0][0] == resnet_pane.data.topk[0][0] == top1
    note = window.compare_view.note
    assert note.isVisibleTo(window)
    name = html.escape(label, quote=False)
    assert note.text().startswith(f"Both networks rank <b>{name}</b> first. ")
    assert f"Both Grad-CAMs explain <b>{top1} {name}</b>" in note.text()
    assert "differ" not in note.text()
    assert note.property("differ") is False
    for pane in (vgg_pane, resnet_pane):
        assert pane.data.target == top1
        assert pane.predictions.item(0).font().bold()


# Zoom


def test_linked_zoom_shows_the_same_part_of_each_grid(open_window, qtbot) -> None:
    window = open_window([CHELSEA], compare=True)
    qtbot.waitExposed(window)
    qtbot.wait(50)
    vgg_pane, resnet_pane = window.compare_view.panes

    def fractions(pane) -> np.ndarray:
        """The part of its grid a pane shows: x0, x1, y0, y1 as fractions of the grid."""
        (x0, x1), (y0, y1) = pane.grid.box.viewRange()
        height, width = pane.data.grid.indices.shape
        return np.array([x0 / width, x1 / width, y0 / height, y1 / height])

    def centre_and_span(part: np.ndarray) -> np.ndarray:
        x0, x1, y0, y1 = part
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])

    assert vgg_pane.data.grid.indices.shape != resnet_pane.data.grid.indices.shape
    assert window.compare_view.link.isChecked()  # linked by default

    # A quarter of ResNet101's grid, by range: VGG16's shows the same quarter of its own.
    height, width = resnet_pane.data.grid.indices.shape
    resnet_pane.grid.box.setRange(
        xRange=(0.25 * width, 0.5 * width), yRange=(0.5 * height, 0.75 * height), padding=0
    )
    source = fractions(resnet_pane)
    assert centre_and_span(source)[:2] == pytest.approx([0.375, 0.625], abs=0.02)
    np.testing.assert_allclose(
        centre_and_span(fractions(vgg_pane)), centre_and_span(source), atol=0.02
    )

    # Zooming VGG16's grid by a factor moves ResNet101's with it.
    vgg_pane.grid.box.scaleBy((0.5, 0.5))
    source = fractions(vgg_pane)
    assert centre_and_span(source)[2] < 0.2
    np.testing.assert_allclose(
        centre_and_span(fractions(resnet_pane)), centre_and_span(source), atol=0.02
    )

    # Unlinked, neither grid follows the other.
    window.compare_view.link.setChecked(False)
    kept = np.array(resnet_pane.grid.box.viewRange())
    vgg_pane.grid.box.scaleBy((3.0, 3.0))
    zoomed = np.array(vgg_pane.grid.box.viewRange())
    assert not np.allclose(centre_and_span(fractions(vgg_pane)), centre_and_span(source))
    qtbot.wait(20)
    np.testing.assert_array_equal(np.array(resnet_pane.grid.box.viewRange()), kept)
    resnet_pane.grid.box.setRange(xRange=(0, width / 8), yRange=(0, height / 8), padding=0)
    qtbot.wait(20)
    np.testing.assert_array_equal(np.array(vgg_pane.grid.box.viewRange()), zoomed)


# Latest wins


def test_the_last_picture_chosen_is_the_one_both_panes_show(
    open_window, reference, picture_file, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window([CHELSEA], compare=True)
    paths = [picture_file(f"p{index}.png", seed=index) for index in range(3)]
    window.add_files(paths)  # the first of them is shown once read
    qtbot.waitUntil(
        lambda: window.idle() and window.strip.count() == 4 and window.current != 1,
        timeout=60_000,
    )
    keys = {picture.source: key for key, picture in window.pictures.items()}
    assert window.current == keys[paths[0]]
    qtbot.waitUntil(lambda: window.compare_view.complete(window.current), timeout=60_000)

    shown_sides: list[tuple[int, int]] = []
    show_side = window.compare_view.show_side

    def spy(side, data) -> None:
        shown_sides.append((side, data.picture))
        show_side(side, data)

    monkeypatch.setattr(window.compare_view, "show_side", spy)
    replies = []
    window.worker.replied.connect(replies.append)
    views = []
    window.view_shown.connect(lambda: views.append(window.current))

    last = keys[paths[2]]
    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        # p1.png's analysis under way, then two more pictures, quicker than any analysis.
        with qtbot.waitSignal(
            window.worker.progress,
            timeout=60_000,
            check_params_cb=lambda text, _fraction: "p1.png" in text,
        ):
            window.select_picture(keys[paths[1]])
        window.select_picture(keys[CHELSEA])
        window.select_picture(last)
    qtbot.waitUntil(window.idle, timeout=60_000)
    qtbot.wait(100)

    assert window.current == last
    assert views == [last]
    assert sorted(shown_sides) == [(0, last), (1, last)]
    assert window.windowTitle() == TITLE.format("p2.png")
    target = reference.result(paths[2]).topk[0][0]
    for model in COMPARED:
        expect_side(window, reference, model, paths[2], target)
    expect_note(window, reference, paths[2], target)
    views_replied = [reply for reply in replies if reply.kind.startswith("view:")]
    # The analysis under way finished, and was not shown; the requests overtaken before
    # they started were not even run.
    stale = [reply for reply in views_replied if not reply.skipped and reply.value.picture != last]
    assert [reply.value.picture for reply in stale] == [keys[paths[1]]]
    skipped = [reply for reply in views_replied if reply.skipped]
    assert len(skipped) == 3, [(reply.kind, reply.skipped) for reply in views_replied]
    assert len(views_replied) == 6
    assert window.errors.messages == []


# Exports


@pytest.fixture
def answering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``answering(window, to)``: from now on the window's export dialog answers ``to`` (a
    folder: the name proposed, in it; a file: that file; None: cancelled); returns the list of
    (what, name proposed) it is asked. ``answering.folder``: a folder of the test's own."""

    def answer(window, to: Path | None) -> list[tuple[str, str]]:
        asked: list[tuple[str, str]] = []

        def ask(what: str, name: str) -> str:
            asked.append((what, name))
            if to is None:
                return ""
            return str(to / name if to.is_dir() else to)

        monkeypatch.setattr(window, "ask_export_path", ask)
        return asked

    answer.folder = tmp_path
    return answer


def expect_comparison_picture(path: Path, reference, stage: str, folder: Path) -> None:
    """``path`` is the comparison PNG of CHELSEA at ``stage`` that ``visualizer.core`` makes
    of the reference analyses (ResNet101's top-1 explained), but for the times in it."""
    from visualizer.core import comparison
    from visualizer.core.export import ExportOptions
    from visualizer.core.stage_summary import stage_rows

    analyzers = [reference.analyzer_of(model) for model in COMPARED]
    results = [reference.result(CHELSEA, model) for model in COMPARED]
    target = results[1].topk[0][0]
    label = analyzers[1].categories[target]
    sides = [
        comparison.ComparedSide(
            result,
            reference.grid(CHELSEA, stage, model),
            stage,
            analyzer.gradcams(result, ["C5"], target)["C5"],
            stage_rows(analyzer.model, result),
        )
        for model, analyzer, result in zip(COMPARED, analyzers, results, strict=True)
    ]
    options = ExportOptions(cam_stage="C5", target=target)
    expected = comparison.save_comparison(folder / "core.png", sides, label, options)
    with Image.open(path) as image, Image.open(expected) as core:
        assert image.format == "PNG"
        assert image.size == core.size
        text, pixels = dict(image.text), np.asarray(image.convert("RGB"))
        expected_text, expected_pixels = dict(core.text), np.asarray(core.convert("RGB"))
    assert text == expected_text
    assert {key: text[key] for key in ("model", "stage", "gradcam stage", "target")} == {
        "model": "VGG16 | ResNet101",
        "stage": stage,
        "gradcam stage": "C5",
        "target": f"{target} {label}",
    }
    # Grids, overlays and top-5 lists are the same pixels; the times in the texts are not.
    top = comparison.MARGIN + 96 + 70
    bottom = top + comparison.COLUMN + 24 + comparison.OVERLAY
    np.testing.assert_array_equal(pixels[top:bottom], expected_pixels[top:bottom])


def expect_comparison_table(path: Path, reference, window, folder: Path) -> None:
    """``path`` is the CSV ``save_comparison_timings`` writes for the reference analyses,
    with the times of the analyses on screen."""
    from visualizer.core.comparison import save_comparison_timings
    from visualizer.core.stage_summary import stage_rows

    results = [reference.result(CHELSEA, model) for model in COMPARED]
    rows = [
        stage_rows(reference.analyzer_of(model).model, result)
        for model, result in zip(COMPARED, results, strict=True)
    ]
    expected = save_comparison_timings(folder / "core.csv", results, rows)
    with path.open(newline="") as file:
        table = list(csv.reader(file))
    with expected.open(newline="") as file:
        expected_table = list(csv.reader(file))
    assert table[0] == expected_table[0]
    assert [row[0] for row in table] == ["stage", *GROUPS, "total"]
    ms_columns = (2, 5)
    for row, expected_row in zip(table[1:], expected_table[1:], strict=True):
        assert len(row) == len(expected_row)
        assert [cell for column, cell in enumerate(row) if column not in ms_columns] == [
            cell for column, cell in enumerate(expected_row) if column not in ms_columns
        ]
    for pane, column in zip(window.compare_view.panes, ms_columns, strict=True):
        times = [row.ms for row in pane.data.stage_rows]
        assert [float(row[column]) for row in table[1:]] == pytest.approx(
            [*times, sum(times)], abs=1e-4
        )


def test_comparison_exports_are_what_the_core_writes(
    open_window, reference, shown_after, qtbot, answering
) -> None:
    window = open_window([CHELSEA], compare=True)
    shown_after(window, lambda: window.set_options(stage="C3"))
    for what, action in window.export_actions.items():
        assert action.isVisible() == what.startswith("comparison"), what
    folder = answering.folder / "window"
    folder.mkdir()
    asked = answering(window, folder)

    # Ctrl+E: the comparison PNG (the single view's grid has the key when it is shown).
    activate(window, qtbot)
    qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert asked == [("comparison", "chelsea_compare_C3.png")]
    picture = folder / asked[0][1]
    qtbot.waitUntil(lambda: window.idle() and picture.exists(), timeout=60_000)
    window.export("comparison_timings")
    assert asked[1] == ("comparison_timings", "chelsea_compare_timings.csv")
    table = folder / asked[1][1]
    qtbot.waitUntil(lambda: window.idle() and table.exists(), timeout=60_000)
    assert f"Saved 1 file(s) in {folder}" in window.statusBar().currentMessage()
    assert sorted(path.name for path in folder.iterdir()) == sorted(name for _, name in asked)
    expect_comparison_picture(picture, reference, "C3", answering.folder)
    expect_comparison_table(table, reference, window, answering.folder)

    # A folder removed after it was chosen: one error naming the file, nothing left behind.
    for what, name in (("comparison", "c.png"), ("comparison_timings", "c.csv")):
        gone = answering.folder / "gone" / name
        answering(window, gone)
        before = list(window.errors.messages)
        with qtbot.waitSignal(window.error_shown, timeout=60_000) as error:
            window.export(what)
        qtbot.waitUntil(window.idle)
        [message] = error.args
        assert message.startswith(f"{gone}: "), message
        assert "No such file or directory" in message
        assert window.errors.messages == [*before, message]
    assert not (answering.folder / "gone").exists()
    assert not list(answering.folder.rglob("*.part"))

    # Alone again, the single view's exports are offered (the methods' figure with the
    # methods' tab, a channel's atlas with a dataset index open), and Ctrl+E is the grid's.
    shown_after(window, window.compare_action.trigger)
    for what, action in window.export_actions.items():
        offered = not what.startswith(("comparison", "methods", "atlas"))
        assert action.isVisible() == offered, what
    asked = answering(window, None)
    activate(window, qtbot)
    qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert asked == [("grid", "chelsea_resnet101_C3.png")]


# Mode, settings


def test_the_mode_switches_back_and_forth_and_is_remembered(
    open_window, reference, shown_after, qtbot, settings_path: str
) -> None:
    first = open_window([CHELSEA], compare=True)
    shown_after(first, lambda: first.set_options(colormap="magma"))
    first.close()

    # Named on the command line, a network opens alone, whatever the last session did.
    alone = open_window([CHELSEA], compare=None, model="vgg16")
    assert not alone.compare  # (left open: closing it would save its mode)

    # Reopened as it was closed: compare mode, with the colormap chosen.
    second = open_window([CHELSEA], compare=None, model=None)
    assert second.compare
    assert second.compare_action.isChecked()
    target = reference.result(CHELSEA).topk[0][0]
    for model in COMPARED:
        expect_side(second, reference, model, CHELSEA, target, colormap="magma")

    # Back and forth, quicker than the analyses: each switch is immediate, the last counts.
    durations = []
    with qtbot.waitSignal(second.view_shown, timeout=60_000):
        for _ in range(5):
            start = time.perf_counter()
            second.compare_action.trigger()
            durations.append(time.perf_counter() - start)
            qtbot.wait(10)
    assert max(durations) < 0.5, durations
    assert not second.compare
    assert second.pages.currentWidget() is second.body
    assert second.windowTitle() == "fmviz — chelsea.jpg — ResNet101"
    assert second.data.picture == second.current
    np.testing.assert_array_equal(
        np.asarray(second.grid.image.image),
        reference.grid(CHELSEA, "C1", colormap="magma", aspect=second.data.options.aspect).indices,
    )
    np.testing.assert_allclose(second.data.cam, reference.cam(CHELSEA, "C5"), atol=ATOL, rtol=0)
    qtbot.waitUntil(second.idle, timeout=60_000)
    shown_after(second, lambda: second.set_options(stage="C2"))  # still working
    shown_after(second, lambda: second.set_compare(True))
    for model in COMPARED:
        expect_side(second, reference, model, CHELSEA, target, stage="C2", colormap="magma")
    second.close()

    # Asked for the single view, a window opens in it; closed so, it reopens so.
    third = open_window([CHELSEA], compare=False)
    assert not third.compare
    assert third.pages.currentWidget() is third.body
    assert third.data.picture == third.current
    third.close()
    fourth = open_window([CHELSEA], compare=None)
    assert not fourth.compare, "closed in the single view, reopened in compare mode"
    assert QSettings(settings_path, QSettings.Format.IniFormat).value("colormap") == "magma"


# Failures


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_unavailable_device_goes_back_to_the_one_that_worked(open_window, shown_after) -> None:
    window = open_window([CHELSEA], compare=True)
    errors: list[str] = []
    window.error_shown.connect(errors.append)
    shown_after(window, lambda: window.set_spec(device="cuda"))
    assert window.spec.device == "cpu"
    assert window.controls.device.currentData() == "cpu"
    # Both networks fail alike: one line, naming the network and why.
    assert len(errors) == 1, errors
    assert errors[0].split(": ", 1)[0] in ("VGG16", "ResNet101")
    assert "CUDA" in errors[0]
    assert all(pane.data is not None and not pane.failed for pane in window.compare_view.panes)


def test_a_failure_on_one_side_leaves_the_other_shown(
    open_window, reference, shown_after, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visualizer.ui import jobs

    original = jobs.Session.view

    def failing(self, spec, picture, options, lead=None, **sides):
        if spec.model == "vgg16":
            raise ValueError("boom")
        return original(self, spec, picture, options, lead, **sides)

    monkeypatch.setattr(jobs.Session, "view", failing)
    window = open_window([CHELSEA], compare=True, wait=False)
    views = []
    window.view_shown.connect(lambda: views.append(window.current))
    with qtbot.waitSignal(window.error_shown, timeout=60_000) as error:
        pass
    assert "boom" in error.args[0]
    vgg_pane, resnet_pane = window.compare_view.panes
    qtbot.waitUntil(lambda: window.idle() and resnet_pane.data is not None, timeout=60_000)
    qtbot.wait(50)

    assert window.errors.messages == [error.args[0]]
    assert vgg_pane.data is None
    assert "failed: boom" in vgg_pane.title.text()
    expect_side(window, reference, "resnet101", CHELSEA, reference.result(CHELSEA).topk[0][0])
    assert views == []  # never complete
    assert not window.compare_view.note.isVisibleTo(window)
    table = window.compare_view.strip.table
    assert [cell(table, row, 1) for row in range(table.rowCount())] == [""] * (len(GROUPS) + 1)
    assert cell(table, 0, 2) != ""

    # Nothing to compare: the exports say so, without asking where.
    asked = []
    monkeypatch.setattr(window, "ask_export_path", lambda what, name: asked.append(what) or "")
    window.export("comparison")
    assert asked == []
    assert window.errors.messages[-1] == "Nothing to compare: the analysis of VGG16 failed."

    # Chosen again, the picture is tried again, and now both show.
    monkeypatch.setattr(jobs.Session, "view", original)
    shown_after(window, lambda: window.select_picture(window.current))
    target = reference.result(CHELSEA).topk[0][0]
    for model in COMPARED:
        expect_side(window, reference, model, CHELSEA, target)


# The command

COMMAND_TEST = "test_fmviz_compare_screenshot"


@dataclass
class Command:
    """``fmviz CHELSEA --compare --weights random --device cpu --screenshot OUT``, running."""

    process: subprocess.Popen
    screenshot: Path
    stderr: Path


@pytest.fixture(scope="module", autouse=True)
def compare_command(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Command | None]:
    """Started with the first test of this file when COMMAND_TEST is to run, so that its
    seconds pass while the other tests run (on one thread: the tests have the other core)."""
    if not any(item.name == COMMAND_TEST for item in request.session.items):
        yield None
        return
    folder = tmp_path_factory.mktemp("compare-command")
    script = Path(sys.executable).with_name("fmviz")
    program = [str(script)] if script.is_file() else [sys.executable, "-m", "visualizer"]
    screenshot = folder / "compare.png"
    environment = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "FMVIZ_SETTINGS": str(folder / "settings.ini"),
        "OMP_NUM_THREADS": "1",
    }
    options = ["--compare", "--weights", "random", "--device", "cpu"]
    stderr = folder / "stderr.txt"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            [*program, CHELSEA, *options, "--screenshot", str(screenshot)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=environment,
            cwd=folder,
        )
    yield Command(process, screenshot, stderr)
    if process.poll() is None:
        process.kill()
        process.wait()


def test_fmviz_compare_screenshot(compare_command: Command) -> None:
    try:
        status = compare_command.process.wait(180)
    except subprocess.TimeoutExpired:
        status = None
    stderr = compare_command.stderr.read_text(errors="replace")
    screenshot = compare_command.screenshot
    assert status == 0, stderr
    assert f"saved {screenshot}" in stderr
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == []
    with Image.open(screenshot) as image:
        assert image.format == "PNG"
        assert image.size == (1400, 900)  # the window's size when nothing was saved
        pixels = np.asarray(image.convert("RGB"))
    # Not a blank window: many colours (two grids, two heat maps), and contrast.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    assert pixels.std() > 30
    assert not list(screenshot.parent.glob(".*.part"))
    # Opened in compare mode, and so remembered.
    settings = QSettings(str(screenshot.parent / "settings.ini"), QSettings.Format.IniFormat)
    assert settings.value("compare") in (True, "true")

"""Annotated figures: the raw picture kept exact inside, the words on them, the channel numbers
where the tiles are, the colour bar's colours and values, "untrained weights" iff untrained.

References are computed here: the raw grid from ``render_grid`` (enlarged with ``np.repeat``),
the overlay from ``render.overlay``, probabilities and ranks from the logits with torch, value
ranges from the stage tensors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from visualizer.core import figure
from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.export import ExportOptions, export_result, output_names
from visualizer.core.figure import (
    ALERT,
    LARGEST_GRID,
    MIN_NUMBERED_TILE,
    OVERLAY_SIDE,
    FigureInfo,
    figure_info,
    grid_figure,
    overlay_figure,
)
from visualizer.core.render import Grid, colormap_table, overlay, render_grid

SOURCE = "photos/tabby on the sofa.jpg"
LABELS = {"vgg16": "VGG16", "resnet101": "ResNet101"}


@pytest.fixture(scope="module")
def results(analyzer_of, make_image: Callable[..., Image.Image]) -> dict[str, AnalysisResult]:
    """Each network's analysis of one small picture (random weights: untrained)."""
    picture = make_image(96, 72, seed=5)
    return {arch: analyzer_of(arch).analyze(picture, source=SOURCE) for arch in LABELS}


def trained(result: AnalysisResult) -> AnalysisResult:
    """``result`` as if its network were trained (only the flag differs)."""
    return dataclasses.replace(result, trained=True)


def enlarged(pixels: np.ndarray, zoom: int) -> np.ndarray:
    return np.repeat(np.repeat(pixels, zoom, axis=0), zoom, axis=1)


def grid_rows_in(canvas: np.ndarray, info: FigureInfo, grid: Grid) -> list[tuple[int, int]]:
    """``(top, height)`` in ``canvas`` of each row of tiles (with the gutter below it), from the
    documented placement: rows ``band`` pixels apart."""
    layout = grid.layout
    step = (layout.tile_height + layout.gutter) * info.zoom
    top = info.picture[1]
    total = layout.shape[0] * info.zoom
    return [
        (top + row * (step + info.band) + info.band, min(step, total - row * step))
        for row in range(layout.rows)
    ]


# --- grids -------------------------------------------------------------------------------------

CASES = {
    # (network, stage, scale, order): the largest tiles, small ones, many small ones, the most
    "vgg16-C1": ("vgg16", "C1", "channel", "index"),
    "vgg16-C5-stage": ("vgg16", "C5", "stage", "index"),
    "resnet101-C4": ("resnet101", "C4", "channel", "index"),
    "resnet101-C5-mean": ("resnet101", "C5", "channel", "mean"),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest, results) -> tuple[AnalysisResult, str, Grid, Image.Image]:
    arch, stage, scale, order = CASES[request.param]
    result = results[arch]
    grid = render_grid(result.stages[stage], scale=scale, order=order)
    return result, stage, grid, grid_figure(result, stage, grid)


def test_the_raw_grid_is_inside_the_figure_pixel_for_pixel(case) -> None:
    _, _, grid, picture = case
    info = figure_info(picture)
    layout = grid.layout
    raw = np.asarray(grid.to_image().convert("RGB"))
    # Enlarged by a whole number: enough for a tile to hold its number, unless the grid
    # would grow past its limit.
    assert info.zoom >= 1
    tile = layout.tile_width * info.zoom
    assert tile >= MIN_NUMBERED_TILE or layout.shape[1] * (info.zoom + 1) > LARGEST_GRID
    assert layout.tile_width * (info.zoom - 1) < MIN_NUMBERED_TILE
    big = enlarged(raw, info.zoom)
    canvas = np.asarray(picture)
    left = info.picture[0]
    step = (layout.tile_height + layout.gutter) * info.zoom
    for row, (top, height) in enumerate(grid_rows_in(canvas, info, grid)):
        shown = canvas[top : top + height, left : left + big.shape[1]]
        np.testing.assert_array_equal(shown, big[row * step : row * step + height])
    assert (info.picture[2], info.picture[3]) == (
        big.shape[1],
        big.shape[0] + layout.rows * info.band,
    )


def test_the_figure_is_the_grid_plus_its_title_and_colour_bar(case) -> None:
    _, _, grid, picture = case
    info = figure_info(picture)
    width = grid.layout.shape[1]
    assert picture.width >= width * info.zoom + 2 * figure.MARGIN
    # The title block and colour bar above the grid: at least 150 pixels.
    assert info.picture[1] >= 150
    assert picture.height >= info.picture[1] + info.picture[3]
    assert info.bar[1] + info.bar[3] < info.picture[1]


def ink_in(region: np.ndarray) -> np.ndarray:
    """Where ``region`` (an RGB block on white) has dark text."""
    return region.max(axis=2) < 128


def test_each_tile_has_its_channel_number_just_above_it(case) -> None:
    _, _, grid, picture = case
    info = figure_info(picture)
    layout = grid.layout
    assert info.numbering == "tiles"
    assert info.band >= 10
    canvas = np.asarray(picture)
    widths = {}
    for channel in layout.order:
        y, x = layout.tile_origin(channel)  # where the tile is in the raw grid
        row = y // (layout.tile_height + layout.gutter)
        band_top = info.picture[1] + row * (layout.tile_height * info.zoom + info.band)
        band_top += row * layout.gutter * info.zoom
        left = info.picture[0] + x * info.zoom
        band = canvas[band_top : band_top + info.band, left : left + layout.tile_width * info.zoom]
        ink = ink_in(band)
        assert ink.any(), f"no number above channel {channel}'s tile"
        columns = np.flatnonzero(ink.any(axis=0))
        assert columns[0] <= 3, "the number starts at the tile's left edge"
        widths.setdefault(len(str(channel)), []).append(columns[-1] - columns[0])
    # More digits, wider numbers: each tile's number is its own channel's, not a neighbour's.
    means = [np.mean(widths[digits]) for digits in sorted(widths)]
    assert means == sorted(means)
    assert len(means) >= 2


def test_numbers_grow_with_the_tiles(results) -> None:
    sizes = {}
    for stage in ("C1", "C5"):
        grid = render_grid(results["vgg16"].stages[stage])
        info = figure_info(grid_figure(results["vgg16"], stage, grid))
        sizes[stage] = info.band
    assert sizes["C1"] > sizes["C5"] >= 10  # 224-pixel tiles against 42-pixel ones


def test_grid_words_name_the_image_network_stage_class_and_scale(results) -> None:
    result = results["vgg16"]
    grid = render_grid(result.stages["C5"], scale="stage", colormap="magma")
    info = figure_info(grid_figure(result, "C5", grid))
    assert info.title == "tabby on the sofa.jpg · VGG16 · stage C5 (512×14×14)"
    words = " ".join(info.caption)
    index, label, probability = result.topk[0]
    assert f"Top-1: {index} {label} ({probability * 100:.1f} %)" in words
    assert "512 channels, by channel index" in words
    assert "magma" in words
    low, high = torch.aminmax(result.stages["C5"])
    assert f"one scale for the whole stage: activation {low:.4g} to {high:.4g}" in words
    assert "shown 3× (nearest-neighbour)" in words


def test_per_channel_scaling_says_so_and_gives_the_overall_range(results) -> None:
    result = results["resnet101"]
    grid = render_grid(result.stages["C4"], order="mean")
    words = " ".join(figure_info(grid_figure(result, "C4", grid)).caption)
    low, high = torch.aminmax(result.stages["C4"])
    assert "each tile stretched over its own min–max" in words
    assert f"range from {low:.4g} to {high:.4g}" in words
    assert "by mean activation, highest first" in words


def test_a_grad_cam_order_names_its_class(results) -> None:
    result = results["resnet101"]
    stage = result.stages["C5"]
    weights = torch.linspace(-1, 1, stage.shape[0])
    grid = render_grid(stage, order="gradcam", weights=weights)
    info = figure_info(grid_figure(result, "C5", grid, order_class=(281, "tabby")))
    assert "by Grad-CAM channel weight for class 281 tabby, highest first" in info.caption[1]


def test_the_colour_bar_is_the_grids_colormap_lowest_first(case) -> None:
    _, _, grid, picture = case
    left, top, width, height = figure_info(picture).bar
    bar = np.asarray(picture)[top : top + height, left : left + width]
    assert (bar == bar[:1]).all()  # every row the same
    colours = grid.palette[:255, :3]
    indices = [int(np.flatnonzero((colours == pixel).all(axis=1))[0]) for pixel in bar[0]]
    assert indices[0] == 0
    assert indices[-1] == 254
    assert indices == sorted(indices)


def test_only_an_untrained_network_gets_the_warning(results) -> None:
    result = results["vgg16"]
    assert not result.trained  # random weights
    grid = render_grid(result.stages["C5"])
    untrained, fine = grid_figure(result, "C5", grid), grid_figure(trained(result), "C5", grid)
    warned, plain = figure_info(untrained), figure_info(fine)
    assert "untrained weights" in warned.warning
    assert plain.warning is None
    assert "warning" in warned.metadata()
    assert "warning" not in plain.metadata()
    # The band is the only difference: above it, red; below it, the same figure.
    shift = untrained.height - fine.height
    assert shift > 20
    assert warned.picture[1] - plain.picture[1] == shift
    a, b = np.asarray(untrained), np.asarray(fine)
    first_text = int(np.flatnonzero((b != 255).any(axis=(1, 2)))[0])
    np.testing.assert_array_equal(a[shift + first_text :], b[first_text:])
    red = (a[: shift + first_text] == ALERT).all(axis=2)
    assert red.mean() > 0.3
    assert not (b == ALERT).all(axis=2).any()


# --- tiles too small to number -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(results) -> AnalysisResult:
    """A stage of 5000 one-pixel channels: too small to number even when enlarged."""
    values = torch.rand(5000, 1, 1, generator=torch.Generator().manual_seed(0))
    return dataclasses.replace(results["vgg16"], stages={"C1": values})


@pytest.mark.parametrize(("order", "numbering"), [("index", "rows and columns"), ("mean", "none")])
def test_tiles_too_small_are_numbered_by_row_and_column_or_not_at_all(
    tiny: AnalysisResult, order: str, numbering: str
) -> None:
    grid = render_grid(tiny.stages["C1"], order=order)
    picture = grid_figure(tiny, "C1", grid)
    info = figure_info(picture)
    assert info.numbering == numbering
    assert info.band == 0
    words = " ".join(info.caption)
    if numbering == "rows and columns":
        assert "channel = row + column" in words
    else:
        assert "'channel order' text" in words
    canvas = np.asarray(picture)
    raw = enlarged(np.asarray(grid.to_image().convert("RGB")), info.zoom)
    left, top, width, height = info.picture
    np.testing.assert_array_equal(canvas[top : top + height, left : left + width], raw)
    labels = canvas[top - 14 : top, left : left + width]  # the column labels, above the grid
    assert ink_in(labels).any() == (numbering == "rows and columns")


# --- overlays ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cam(analyzer_of, results):
    return analyzer_of("resnet101").gradcams(results["resnet101"], ["C5"])["C5"]


def standing(result: AnalysisResult, index: int) -> tuple[float, int]:
    probabilities = torch.softmax(result.logits.double(), dim=0)
    order = torch.argsort(result.logits, descending=True).tolist()
    return float(probabilities[index]), order.index(index) + 1


def test_the_overlay_is_inside_its_figure_pixel_for_pixel(results, cam) -> None:
    result = results["resnet101"]
    picture = overlay_figure(result, cam, "some class", colormap="inferno", opacity=0.3)
    info = figure_info(picture)
    assert info.zoom == OVERLAY_SIDE // 224 == 2
    left, top, width, height = info.picture
    assert (width, height) == (448, 448)
    expected = enlarged(overlay(result.view, cam.map, opacity=0.3, colormap="inferno"), 2)
    canvas = np.asarray(picture)
    np.testing.assert_array_equal(canvas[top : top + height, left : left + width], expected)
    # Left of it, the input as the network saw it, the same size.
    view = enlarged(np.asarray(result.view), 2)
    start = int(np.flatnonzero((canvas[top] == view[0, 0]).all(axis=1))[0])
    np.testing.assert_array_equal(canvas[top : top + height, start : start + width], view)
    assert start + width < left
    left, top, width, height = info.bar
    bar = canvas[top, left : left + width]
    table = colormap_table("inferno")[:, :3]
    assert (bar[0] == table[0]).all()
    assert (bar[-1] == table[-1]).all()


def test_the_overlay_names_the_method_class_probability_and_rank(results, cam) -> None:
    result = results["resnet101"]
    info = figure_info(overlay_figure(result, cam, "the label"))
    assert info.title == "tabby on the sofa.jpg · ResNet101 · Grad-CAM at C5"
    probability, rank = standing(result, cam.target)
    assert rank == 1  # cam explains the top-1
    assert info.caption[0] == (
        f"Class {cam.target} the label: probability {probability * 100:.1f} %, rank 1 of 1000"
    )
    assert "turbo" in info.caption[-1]
    assert "0–1" in info.caption[-1]
    assert "untrained weights" in info.warning


def test_another_class_says_its_rank_and_names_the_top1(analyzer_of, results) -> None:
    result = results["resnet101"]
    target = int(torch.argsort(result.logits, descending=True)[37])
    other = analyzer_of("resnet101").gradcams(result, ["C5"], target)["C5"]
    info = figure_info(overlay_figure(trained(result), other, "x"))
    probability, rank = standing(result, target)
    assert rank == 38
    assert f"probability {figure.percent(probability)}, rank 38 of 1000" in info.caption[0]
    top1, label1, _ = result.topk[0]
    assert f"not the top-1 class, which is {top1} {label1}" in info.caption[1]
    assert info.warning is None


@pytest.mark.parametrize(
    ("probability", "text"),
    [
        (0.8312, "83.1 %"),
        (1.0, "100.0 %"),
        (0.001, "0.1 %"),
        (4.2e-5, "0.0042 %"),
        (3.14e-14, "3.1e-12 %"),
        (0, "0 %"),
    ],
)
def test_percent(probability: float, text: str) -> None:
    assert figure.percent(probability) == text


# --- export --------------------------------------------------------------------------------------


def test_export_writes_the_figures_beside_the_unchanged_raw_files(
    tmp_path: Path, analyzer_of, results
) -> None:
    analyzer, result = analyzer_of("vgg16"), results["vgg16"]
    plain = ExportOptions(stages=("C4", "C5"))
    annotated = dataclasses.replace(plain, annotate=True)
    cams = analyzer.gradcams(result, ["C5"])
    (tmp_path / "raw").mkdir()
    (tmp_path / "both").mkdir()
    raw = export_result(analyzer, result, tmp_path / "raw", "p", plain, cams=cams)
    written = export_result(analyzer, result, tmp_path / "both", "p", annotated, cams=cams)
    names = output_names("p", "vgg16", annotated)
    assert (
        [path.name for path in written]
        == names
        == [
            "p_vgg16_C4.png",
            "p_vgg16_C4_annotated.png",
            "p_vgg16_C5.png",
            "p_vgg16_C5_annotated.png",
            "p_vgg16_gradcam_C5.png",
            "p_vgg16_gradcam_C5_annotated.png",
            "p_vgg16_timings.csv",
        ]
    )
    assert sorted(path.name for path in (tmp_path / "both").iterdir()) == sorted(names)
    for path in raw[:-1]:  # the raw PNGs are byte for byte those of a plain export
        assert (tmp_path / "both" / path.name).read_bytes() == path.read_bytes()
    for stage in ("C4", "C5"):
        with Image.open(tmp_path / "both" / f"p_vgg16_{stage}_annotated.png") as picture:
            text = dict(picture.text)
            size = picture.size
        with Image.open(tmp_path / "raw" / f"p_vgg16_{stage}.png") as grid_png:
            raw_text, raw_size = dict(grid_png.text), grid_png.size
        assert {key: text[key] for key in raw_text} == raw_text  # the raw file's provenance
        assert text["title"].startswith(f"tabby on the sofa.jpg · VGG16 · stage {stage} (")
        assert "untrained weights" in text["warning"]
        assert "nearest-neighbour" in text["placement"]
        assert size[0] > raw_size[0]
        assert size[1] > raw_size[1]
    with Image.open(tmp_path / "both" / "p_vgg16_gradcam_C5_annotated.png") as picture:
        text = dict(picture.text)
    target = cams["C5"].target
    assert text["target"] == f"{target} {analyzer.categories[target]}"
    assert text["title"] == "tabby on the sofa.jpg · VGG16 · Grad-CAM at C5"
    assert f"Class {target} {analyzer.categories[target]}:" in text["caption"]


# --- fonts and the engine's boundary -----------------------------------------------------------


def test_a_machine_without_the_fonts_falls_back_to_pillows_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(figure, "FONT_FILES", {False: ("no-such.ttf",), True: ("no-such.ttf",)})
    figure._font_file.cache_clear()
    figure.font.cache_clear()
    try:
        face = figure.font(18)
        assert face.size == 18
        assert math.isclose(face.getlength("x" * 10), 10 * face.getlength("x"), rel_tol=0.2)
        ImageDraw.Draw(Image.new("RGB", (200, 40))).text((0, 0), "Grad-CAM at C5", font=face)
    finally:
        monkeypatch.undo()
        figure._font_file.cache_clear()
        figure.font.cache_clear()


def test_a_system_font_is_used_where_there_is_one() -> None:
    path = figure._font_file(False)
    if path is None:
        pytest.skip("none of FONT_FILES is on this machine")
    assert Path(figure.font(18).path) == Path(path)


def test_figures_need_no_qt(modules_after: Callable[[str], set[str]]) -> None:
    loaded = modules_after("import visualizer.core.figure")
    assert not {name for name in loaded if name.split(".")[0] in {"PySide6", "pyqtgraph"}}


def test_analyzers_are_untrained_here(analyzer_of: Callable[[str], Analyzer]) -> None:
    """The tests above rely on random weights meaning ``trained`` is False."""
    picture = Image.new("RGB", (32, 32))
    assert analyzer_of("vgg16").analyze(picture).trained is False


# --- a network of one's own: its labels, a one-output head -----------------------------------


def test_the_figures_name_the_classes_and_where_their_labels_come_from(results, cam) -> None:
    result = dataclasses.replace(results["resnet101"], labels_source="labels.txt")
    grid = render_grid(result.stages["C5"])
    words = " ".join(figure_info(grid_figure(result, "C5", grid)).caption)
    assert "1000 classes, labels: labels.txt" in words
    overlay_words = " ".join(figure_info(overlay_figure(result, cam, "my class")).caption)
    assert overlay_words.startswith(f"Class {cam.target} my class: probability ")
    assert "1000 classes, labels: labels.txt" in overlay_words


def test_a_one_output_head_shows_its_sigmoid_probability(results, cam) -> None:
    logit = torch.tensor([-0.7])
    binary = dataclasses.replace(
        results["resnet101"],
        logits=logit,
        topk=[(0, "defect", float(torch.sigmoid(logit)[0]))],
        classes=1,
        scores="sigmoid",
    )
    one = dataclasses.replace(cam, target=0)
    assert figure.class_standing(binary, 0) == (pytest.approx(0.33181, abs=1e-5), 1, 1)
    info = figure_info(overlay_figure(binary, one, "defect"))
    assert info.caption[0] == "Class 0 defect: probability 33.2 % (sigmoid of the one output)"
    grid = render_grid(binary.stages["C5"])
    words = " ".join(figure_info(grid_figure(binary, "C5", grid)).caption)
    assert "Top-1: 0 defect (33.2 %)" in words
    assert "1 class (sigmoid)" in words

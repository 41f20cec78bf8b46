"""Two networks compared on one image: one shared Grad-CAM class, the PNG per stage, the CSV.

References are computed here: Grad-CAMs by ``Analyzer.gradcam`` called directly (and, for one
side, by Captum's ``LayerGradCam`` on torchvision's network), parameters from torch, shapes from
the analyses, per-stage times from the layer timings grouped by the stage modules' names.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from PIL import Image
from torch import nn

from models import STAGE_NAMES, stage_module_names
from visualizer import __version__
from visualizer.core import export
from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.attribution import GradCam
from visualizer.core.comparison import (
    CAPTION,
    COLUMN,
    GAP,
    LABEL,
    MARGIN,
    OVERLAY,
    ComparedSide,
    cam_stages,
    compare,
    comparison_names,
    disagreement,
    export_comparison,
    render_comparison,
    save_comparison,
    shared_target,
)
from visualizer.core.export import GRADCAM_METHOD, ExportOptions
from visualizer.core.figure import ALERT
from visualizer.core.render import SCALES, channel_order, overlay
from visualizer.core.stage_summary import stage_parameters, stage_rows

ARCHS = ("vgg16", "resnet101")  # the order of MODEL_NAMES, as ``fmviz export --compare`` uses
LABELS = {"vgg16": "VGG16", "resnet101": "ResNet101"}
SOURCE = "pics/café.png"
TOLERANCE = 1e-5  # Grad-CAM maps, as in test_gradcam.py


def listing(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden ones (temporaries) included."""
    return sorted(os.listdir(folder))


def with_top1(result: AnalysisResult, index: int, label: str | None = None) -> AnalysisResult:
    """``result`` as if ``index`` were its top-1 class."""
    rest = [entry for entry in result.topk if entry[0] != index][:4]
    return dataclasses.replace(result, topk=[(index, label or f"class {index}", 0.42), *rest])


@pytest.fixture(scope="module")
def analyzers(analyzer_of) -> list[Analyzer]:
    return [analyzer_of(arch) for arch in ARCHS]


@pytest.fixture(scope="module")
def results(analyzers: list[Analyzer], make_image: Callable[..., Image.Image]):
    picture = make_image(96, 72, seed=3)
    return [analyzer.analyze(picture, source=SOURCE) for analyzer in analyzers]


@pytest.fixture(scope="module")
def tops(results: list[AnalysisResult]) -> list[int]:
    """Each network's top-1 class, read off its logits."""
    top = [int(torch.argmax(result.logits)) for result in results]
    # The tests tell the lead's class from the other's only if the two differ.
    assert top[0] != top[1], "pick another picture: both random networks agree"
    return top


@pytest.fixture(scope="module")
def direct(analyzers, results) -> Callable[[int, str, int], np.ndarray]:
    """``(network, stage, target)`` → ``Analyzer.gradcam`` called directly (computed once)."""

    @functools.cache
    def cam(index: int, stage: str, target: int) -> np.ndarray:
        return analyzers[index].gradcam(results[index], stage, target)

    return cam


# --- shared_target, disagreement ---------------------------------------------------------------


@pytest.fixture(scope="module")
def forced(results: list[AnalysisResult]) -> list[AnalysisResult]:
    """The two results with made-up top-1 classes 11 and 22."""
    return [with_top1(results[0], 11), with_top1(results[1], 22)]


def test_an_explicit_target_wins(forced: list[AnalysisResult]) -> None:
    assert shared_target(forced, 7) == 7
    assert shared_target(forced, 7, lead=1) == 7
    assert shared_target(forced, 0) == 0  # class 0 is a class, not "none given"


def test_without_a_target_the_leads_top1(forced: list[AnalysisResult]) -> None:
    assert shared_target(forced, None) == 11
    assert shared_target(forced, None, lead=0) == 11
    assert shared_target(forced, None, lead=1) == 22


def test_the_same_top1_is_no_disagreement(results: list[AnalysisResult]) -> None:
    same = [with_top1(results[0], 5, "goldfish"), with_top1(results[1], 5, "goldfish")]
    assert disagreement(same) is None


def test_different_top1s_name_both_classes(forced: list[AnalysisResult]) -> None:
    note = disagreement(forced)
    assert note is not None
    assert "VGG16" in note
    assert "ResNet101" in note
    assert "11 class 11" in note
    assert "22 class 22" in note
    assert "42.0 %" in note  # the probability given by with_top1
    assert note.index("VGG16") < note.index("ResNet101")  # in the order of the results
    assert "\n" not in note


def test_disagreement_of_the_real_analyses(results: list[AnalysisResult], tops) -> None:
    note = disagreement(results)
    assert note is not None
    for result, top in zip(results, tops, strict=True):
        label = result.topk[0][1]
        assert f"{top} {label}" in note


def test_only_the_top1_counts_for_disagreement(results: list[AnalysisResult]) -> None:
    # Same top-1, different runners-up: they agree.
    first = with_top1(results[0], 9)
    second = dataclasses.replace(
        with_top1(results[1], 9), topk=[(9, "class 9", 0.9), (1, "a", 0.05), (2, "b", 0.01)]
    )
    assert disagreement([first, second]) is None


# --- names and stages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "stages", "expected"),
    [
        (
            "img",
            STAGE_NAMES,
            [
                "img_compare_C1.png",
                "img_compare_C2.png",
                "img_compare_C3.png",
                "img_compare_C4.png",
                "img_compare_C5.png",
                "img_compare_timings.csv",
            ],
        ),
        (
            "a-2",
            ("C4", "C2"),
            ["a-2_compare_C4.png", "a-2_compare_C2.png", "a-2_compare_timings.csv"],
        ),
        ("café-猫", ("C3",), ["café-猫_compare_C3.png", "café-猫_compare_timings.csv"]),
        ("img", (), ["img_compare_timings.csv"]),
    ],
)
def test_comparison_names(stem: str, stages: tuple[str, ...], expected: list[str]) -> None:
    assert comparison_names(stem, stages) == expected


@pytest.mark.parametrize(
    ("options", "stages", "expected"),
    [
        (ExportOptions(), STAGE_NAMES, ["C5"]),
        (ExportOptions(cam_stage="C3"), ("C1", "C5"), ["C3"]),
        (ExportOptions(cam_stage=None), ("C1",), ["C5"]),  # a comparison always has a Grad-CAM
        (ExportOptions(cam_stage="C4", order="mean"), ("C1", "C2"), ["C4"]),
        (ExportOptions(cam_stage="C5", order="gradcam"), ("C4", "C1"), ["C1", "C4", "C5"]),
        (ExportOptions(cam_stage="C2", order="gradcam"), ("C2", "C3"), ["C2", "C3"]),
    ],
)
def test_cam_stages(options: ExportOptions, stages: tuple[str, ...], expected: list[str]) -> None:
    assert cam_stages(options, stages) == expected


# --- compare: each side's grid and Grad-CAM ------------------------------------------------------


def test_both_sides_explain_the_shared_class(analyzers, results, tops, direct) -> None:
    options = ExportOptions(stages=("C2",), cam_stage="C4")
    target = tops[1]  # the other network's class, for the lead too
    cams = [a.gradcams(r, ["C4"], target) for a, r in zip(analyzers, results, strict=True)]
    sides = compare(analyzers, results, cams, "C2", options)
    assert len(sides) == 2
    for index, (side, analyzer, result) in enumerate(zip(sides, analyzers, results, strict=True)):
        assert isinstance(side, ComparedSide)
        assert side.result is result
        assert side.stage == "C2"
        assert side.label == LABELS[ARCHS[index]]
        assert side.cam.target == target
        assert side.cam.stage == "C4"
        assert np.allclose(side.cam.map, direct(index, "C4", target), atol=TOLERANCE)
        if tops[index] != target:  # VGG16's side: not the map of its own top-1
            assert not np.allclose(side.cam.map, direct(index, "C4", tops[index]), atol=1e-2)
        channels = result.stages["C2"].shape[0]
        assert side.grid.layout.order == tuple(range(channels))
        assert side.rows == stage_rows(analyzer.model, result)
        assert side.parameters == sum(p.numel() for p in analyzer.model.parameters())
        assert side.total_ms == pytest.approx(sum(ms for _, _, ms in result.timings))


def test_gradcam_order_uses_each_networks_weights_of_the_shared_class(
    analyzers, results, tops, direct
) -> None:
    options = ExportOptions(stages=("C4",), cam_stage="C5", order="gradcam")
    target = tops[0]
    wanted = cam_stages(options, options.stages)
    cams = [a.gradcams(r, wanted, target) for a, r in zip(analyzers, results, strict=True)]
    sides = compare(analyzers, results, cams, "C4", options)
    for index, (side, analyzer, result) in enumerate(zip(sides, analyzers, results, strict=True)):
        # The overlay is the Grad-CAM stage's, not the grid stage's.
        assert side.cam.stage == "C5"
        assert side.cam.target == target
        assert np.allclose(side.cam.map, direct(index, "C5", target), atol=TOLERANCE)
        weights = analyzer.gradcams(result, ["C4"], target)["C4"].channel_weights
        order = list(side.grid.layout.order)
        assert sorted(order) == list(range(result.stages["C4"].shape[0]))
        ranked = weights[order]
        assert bool(torch.all(ranked[:-1] >= ranked[1:] - 1e-7))  # highest weight first
        assert order == channel_order(result.stages["C4"], "gradcam", weights)


def _captum_map(twin: nn.Module, layer: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Captum's Grad-CAM, upsampled bilinearly and min–max scaled (as in test_gradcam.py)."""
    x = x.to(next(twin.parameters()).device)
    attribution = LayerGradCam(twin, layer).attribute(x, target=target, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(attribution, tuple(x.shape[-2:]), "bilinear")[0, 0]
    low, high = upsampled.min(), upsampled.max()
    scaled = (upsampled - low) / (high - low) if high > low else torch.zeros_like(upsampled)
    return scaled.detach().cpu().numpy()


def test_the_leads_side_equals_captum_for_the_other_networks_class(
    analyzers, results, tops, twin_of, twin_stage_module
) -> None:
    # The VGG16 side explains ResNet101's top-1 (lead 1): Captum on torchvision's VGG16.
    options = ExportOptions(stages=("C5",), cam_stage="C5")
    target = shared_target(results, None, lead=1)
    assert target == tops[1]
    cams = [a.gradcams(r, ["C5"], target) for a, r in zip(analyzers, results, strict=True)]
    side = compare(analyzers, results, cams, "C5", options)[0]
    expected = _captum_map(
        twin_of("vgg16"), twin_stage_module("vgg16", "C5"), results[0].input, target
    )
    assert expected.max() == pytest.approx(1.0)
    assert (expected > 0).mean() > 0.02
    assert np.abs(side.cam.map - expected).max() <= TOLERANCE


# --- export_comparison: what it writes -----------------------------------------------------------

OPTIONS = ExportOptions(stages=("C1", "C5"), cam_stage="C4")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, analyzers, results) -> tuple[Path, list]:
    """One comparison, Grad-CAMs computed by export_comparison itself."""
    folder = tmp_path_factory.mktemp("compare")
    return folder, export_comparison(analyzers, results, folder, "pic", OPTIONS)


def test_export_writes_exactly_the_comparison_names(exported) -> None:
    folder, written = exported
    names = comparison_names("pic", OPTIONS.stages)
    assert written == [folder / name for name in names]
    assert listing(folder) == sorted(names)  # no temporary left beside them
    for path in written:
        assert path.stat().st_size > 0


@pytest.mark.parametrize("stage", OPTIONS.stages)
def test_png_metadata(exported, analyzers, results, tops, stage: str) -> None:
    folder, _ = exported
    with Image.open(folder / f"pic_compare_{stage}.png") as picture:
        assert picture.format == "PNG"
        text = dict(picture.text)
    target = tops[0]  # lead 0: VGG16's top-1
    assert text["model"] == "VGG16 | ResNet101"
    assert text["stage"] == stage
    assert text["target"] == f"{target} {analyzers[0].categories[target]}"
    assert text["target"] == f"{target} {analyzers[1].categories[target]}"
    assert text["gradcam stage"] == "C4"
    assert text["method"] == GRADCAM_METHOD
    assert text["source"] == SOURCE
    assert text["software"] == f"fmviz {__version__}"
    assert text["weights"] == f"{results[0].weights} | {results[1].weights}"
    assert text["weights"].count("random") == 2
    assert text["preprocessing"] == f"{results[0].preprocessing} | {results[1].preprocessing}"
    assert text["colormap"] == "viridis"
    assert text["normalisation"] == SCALES["channel"]


def find_block(canvas: np.ndarray, block: np.ndarray, left: int) -> int | None:
    """The top row at which ``block`` lies in ``canvas`` with its left edge at ``left``."""
    height, width = block.shape[:2]
    column = canvas[:, left : left + width].astype(np.int16)
    first = block[0].astype(np.int16)
    candidates = np.argsort(np.abs(column - first).mean(axis=(1, 2)), kind="stable")[:8]
    for top in candidates:
        window = column[top : top + height]
        if window.shape == block.shape and np.abs(window - block).max() <= 2:
            return int(top)
    return None


def shown_overlay(result: AnalysisResult, cam: np.ndarray) -> np.ndarray:
    """The Grad-CAM over the input as a comparison shows it (default colours and opacity)."""
    picture = Image.fromarray(overlay(result.view, cam, opacity=0.5, colormap="turbo"), "RGB")
    return np.asarray(picture.resize((OVERLAY, OVERLAY), Image.Resampling.BILINEAR))


@pytest.mark.parametrize("stage", OPTIONS.stages)
def test_png_shows_both_grad_cams_of_the_shared_class(
    exported, results, tops, direct, stage: str
) -> None:
    folder, _ = exported
    with Image.open(folder / f"pic_compare_{stage}.png") as picture:
        assert picture.mode == "RGB"
        width, height = picture.size
        canvas = np.asarray(picture)
    assert 2 * COLUMN < width < 4 * COLUMN
    assert COLUMN + OVERLAY < height < 4 * COLUMN
    for index, result in enumerate(results):
        left = MARGIN + index * (COLUMN + GAP)
        shared = shown_overlay(result, direct(index, "C4", tops[0]))
        top = find_block(canvas, shared, left)
        assert top is not None, f"no Grad-CAM of class {tops[0]} in {ARCHS[index]}'s column"
        assert top > COLUMN  # below the grid
        # Not any class's map: the other network's top-1 is not what is shown there.
        other = shown_overlay(result, direct(index, "C4", tops[1]))
        window = canvas[top : top + OVERLAY, left : left + OVERLAY].astype(np.int16)
        assert np.abs(window - other).mean() > 5


def test_png_is_not_blank_where_the_grids_are(exported) -> None:
    folder, _ = exported
    with Image.open(folder / "pic_compare_C1.png") as picture:
        canvas = np.asarray(picture)
    for index in range(2):
        left = MARGIN + index * (COLUMN + GAP)
        region = canvas[: COLUMN + MARGIN + 100, left : left + COLUMN]
        # The grid's colours (viridis) fill much of the column, not just paper and text.
        coloured = np.ptp(region.astype(np.int16), axis=2) > 40
        assert coloured.mean() > 0.3


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def reference_ms(analyzer: Analyzer, result: AnalysisResult) -> dict[str, float]:
    """Milliseconds per stage: each layer goes to the first stage whose module holds a later
    (or the same) layer; after C5's last layer, the head."""
    modules = stage_module_names(analyzer.model)
    names = [name for name, _, _ in result.timings]

    def inside(name: str, module: str) -> bool:
        return name == module or name.startswith(f"{module}.")

    last = {
        stage: max(i for i, name in enumerate(names) if inside(name, module))
        for stage, module in modules.items()
    }
    totals = dict.fromkeys([*STAGE_NAMES, "head"], 0.0)
    for index, (_, _, ms) in enumerate(result.timings):
        stage = next((s for s in STAGE_NAMES if index <= last[s]), "head")
        totals[stage] += ms
    return totals


def test_csv(exported, analyzers, results) -> None:
    folder, _ = exported
    rows = read_csv(folder / "pic_compare_timings.csv")
    assert rows[0] == [
        "stage",
        "vgg16_shape",
        "vgg16_ms",
        "vgg16_parameters",
        "resnet101_shape",
        "resnet101_ms",
        "resnet101_parameters",
    ]
    assert [row[0] for row in rows[1:]] == ["C1", "C2", "C3", "C4", "C5", "head", "total"]
    assert all(len(row) == 7 for row in rows)
    body, total = rows[1:-1], rows[-1]
    for side, (analyzer, result) in enumerate(zip(analyzers, results, strict=True)):
        shape, ms, params = (3 * side + 1, 3 * side + 2, 3 * side + 3)
        expected_ms = reference_ms(analyzer, result)
        counts = stage_parameters(analyzer.model)
        for row in body:
            stage = row[0]
            if stage == "head":
                assert row[shape] == "1000"
            else:
                c, h, w = result.stages[stage].shape
                assert row[shape] == f"{c}x{h}x{w}"
            assert float(row[ms]) == pytest.approx(expected_ms[stage], abs=1e-4)
            assert int(row[params]) == counts[stage]
        assert total[shape] in ("", "1000")  # the network's output, if anything
        assert float(total[ms]) == pytest.approx(sum(float(row[ms]) for row in body), abs=1e-3)
        assert float(total[ms]) == pytest.approx(sum(ms for _, _, ms in result.timings), abs=1e-3)
        assert int(total[params]) == sum(int(row[params]) for row in body)
        assert int(total[params]) == sum(p.numel() for p in analyzer.model.parameters())


def test_the_lead_decides_the_class(tmp_path: Path, analyzers, results, tops, direct) -> None:
    # lead=1, no target, no cams given: ResNet101's top-1 for both, computed here.
    options = ExportOptions(stages=("C5",), cam_stage="C5")
    written = export_comparison(analyzers, results, tmp_path, "x", options, lead=1)
    assert [path.name for path in written] == ["x_compare_C5.png", "x_compare_timings.csv"]
    with Image.open(written[0]) as picture:
        assert picture.text["target"] == f"{tops[1]} {analyzers[0].categories[tops[1]]}"
        assert picture.text["gradcam stage"] == "C5"
        canvas = np.asarray(picture)
    for index, result in enumerate(results):
        shared = shown_overlay(result, direct(index, "C5", tops[1]))
        assert find_block(canvas, shared, MARGIN + index * (COLUMN + GAP)) is not None


def test_an_explicit_target_is_shown(tmp_path: Path, analyzers, results, direct) -> None:
    options = ExportOptions(stages=("C3",), cam_stage="C5", target=7)
    written = export_comparison(analyzers, results, tmp_path, "x", options)
    with Image.open(written[0]) as picture:
        assert picture.text["target"] == f"7 {analyzers[0].categories[7]}"
        canvas = np.asarray(picture)
    for index, result in enumerate(results):
        shared = shown_overlay(result, direct(index, "C5", 7))
        assert find_block(canvas, shared, MARGIN + index * (COLUMN + GAP)) is not None


def test_only_the_csv_without_stages(tmp_path: Path, analyzers, results) -> None:
    cams = [a.gradcams(r, ["C5"]) for a, r in zip(analyzers, results, strict=True)]
    options = ExportOptions(stages=())
    written = export_comparison(analyzers, results, tmp_path, "x", options, cams=cams)
    assert written == [tmp_path / "x_compare_timings.csv"]
    assert listing(tmp_path) == ["x_compare_timings.csv"]


# --- what each side says: untrained weights, the class its Grad-CAM explains --------------------


def standing(result: AnalysisResult, index: int, label: str) -> str:
    """``"<index> <label>: <p> %, rank <r> of 1000"``, from the logits: probability by softmax,
    rank by sorting (1 for the top-1); 0.1 % and above with one decimal, else two significant
    digits."""
    probability = float(torch.softmax(result.logits.double(), dim=0)[index]) * 100
    rank = torch.argsort(result.logits, descending=True).tolist().index(index) + 1
    shown = f"{probability:.1f}" if probability >= 0.1 else f"{probability:.2g}"
    return f"{index} {label}: {shown} %, rank {rank} of {result.logits.numel()}"


@pytest.mark.parametrize("stage", OPTIONS.stages)
def test_png_names_the_class_and_its_probability_in_each_network(
    exported, analyzers, results, tops, stage: str
) -> None:
    folder, _ = exported
    with Image.open(folder / f"pic_compare_{stage}.png") as picture:
        text = dict(picture.text)
    target, label = tops[0], analyzers[0].categories[tops[0]]
    assert text["title"] == f"café.png · stage {stage} · Grad-CAM of {target} {label} at C4"
    assert text["VGG16 class"] == standing(results[0], target, label)
    assert text["ResNet101 class"] == standing(results[1], target, label)
    assert text["VGG16 class"].endswith(", rank 1 of 1000")  # VGG16's own top-1
    assert not text["ResNet101 class"].endswith(", rank 1 of 1000")
    assert text["warning"].count("untrained weights") == 2
    assert text["warning"].startswith("VGG16: ")
    assert "; ResNet101: " in text["warning"]


def sides_of(analyzers, results, cams, trained: tuple[bool, bool]) -> list[ComparedSide]:
    """The C5 comparison of ``results``, each marked trained or not as ``trained`` says."""
    marked = [dataclasses.replace(r, trained=t) for r, t in zip(results, trained, strict=True)]
    return compare(analyzers, marked, cams, "C5", ExportOptions(stages=("C5",)))


@pytest.mark.parametrize("trained", [(False, False), (True, False), (False, True), (True, True)])
def test_each_untrained_side_has_a_red_band_and_a_warning(
    tmp_path: Path, analyzers, results, tops, cams_c5, *, trained: tuple[bool, bool]
) -> None:
    sides = sides_of(analyzers, results, cams_c5, trained)
    label = analyzers[0].categories[tops[0]]
    canvas = np.asarray(render_comparison(sides, label))
    for index, side in enumerate(sides):
        left = MARGIN + index * (COLUMN + GAP)
        band = canvas[MARGIN + 96 : MARGIN + 96 + LABEL - 4, left : left + COLUMN]
        red = (band == ALERT).all(axis=2).mean()
        assert (red > 0.5) == (not trained[index]), f"{side.label}: {red:.0%} red"
    with Image.open(save_comparison(tmp_path / "c.png", sides, label)) as picture:
        warning = picture.text.get("warning")
    untrained = [side.label for side, fine in zip(sides, trained, strict=True) if not fine]
    if not untrained:
        assert warning is None
        assert not (canvas[MARGIN + 96 : MARGIN + 96 + LABEL] == ALERT).all(axis=2).any()
    else:
        assert [part.split(":")[0] for part in warning.split("; ")] == untrained


def test_maps_of_two_classes_are_captioned_with_their_class(
    analyzers, results, tops, direct
) -> None:
    """Two renders that differ only in the class explained: each map has its class named
    above it, so the two cannot be taken for each other."""
    captions = []
    for target in tops:
        cams = [a.gradcams(r, ["C5"], target) for a, r in zip(analyzers, results, strict=True)]
        sides = sides_of(analyzers, results, cams, (True, True))
        canvas = np.asarray(render_comparison(sides, analyzers[0].categories[target]))
        found = []
        for index, result in enumerate(results):
            left = MARGIN + index * (COLUMN + GAP)
            top = find_block(canvas, shown_overlay(result, direct(index, "C5", target)), left)
            assert top is not None
            caption = canvas[top - CAPTION : top, left : left + COLUMN]
            assert (caption.max(axis=2) < 128).mean() > 0.01  # words there
            found.append(caption)
        captions.append(found)
    for side in range(2):
        assert np.abs(captions[0][side].astype(int) - captions[1][side]).max() > 100


# --- atomic writes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cams_c5(analyzers, results, tops) -> list[dict[str, GradCam]]:
    return [a.gradcams(r, ["C5"], tops[0]) for a, r in zip(analyzers, results, strict=True)]


class InjectedError(OSError):
    """The failure the tests inject."""


def test_a_missing_folder_raises_and_creates_nothing(
    tmp_path: Path, analyzers, results, cams_c5
) -> None:
    folder = tmp_path / "missing"
    with pytest.raises(OSError, match="No such file"):
        export_comparison(
            analyzers, results, folder, "x", ExportOptions(stages=("C5",)), cams=cams_c5
        )
    assert not folder.exists()
    assert listing(tmp_path) == []


def test_a_file_in_place_of_the_folder_raises(tmp_path: Path, analyzers, results, cams_c5) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    with pytest.raises(NotADirectoryError):
        export_comparison(
            analyzers, results, blocker, "x", ExportOptions(stages=("C5",)), cams=cams_c5
        )
    assert blocker.read_text() == "keep me"
    assert listing(tmp_path) == ["taken"]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_a_read_only_folder_raises_and_leaves_nothing(
    tmp_path: Path, analyzers, results, cams_c5
) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OSError, match="Permission denied"):
            export_comparison(
                analyzers, results, folder, "x", ExportOptions(stages=("C5",)), cams=cams_c5
            )
        assert listing(folder) == []
    finally:
        folder.chmod(0o755)


def test_a_failure_on_the_csv_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, analyzers, results, cams_c5
) -> None:
    replace = os.replace
    calls: list[Any] = []

    def last_fails(source: Any, destination: Any) -> None:
        calls.append(destination)
        if str(destination).endswith(".csv"):
            raise InjectedError(errno.ENOSPC, "No space left on device")
        replace(source, destination)

    monkeypatch.setattr(export.os, "replace", last_fails)
    with pytest.raises(InjectedError):
        export_comparison(
            analyzers, results, tmp_path, "x", ExportOptions(stages=("C5",)), cams=cams_c5
        )
    monkeypatch.undo()
    assert len(calls) == 2
    assert listing(tmp_path) == []  # the PNG renamed into place first is taken back


@pytest.mark.parametrize("step", ["temporary", "rename"])
@pytest.mark.parametrize("position", [1, 2, 3])
@pytest.mark.parametrize("earlier", [False, True], ids=["new", "over-earlier-files"])
def test_a_failure_at_any_write_leaves_the_folder_as_it_was(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    analyzers,
    results,
    cams_c5,
    step: str,
    position: int,
    earlier: bool,
) -> None:
    options = ExportOptions(stages=("C1", "C5"))
    names = comparison_names("x", options.stages)
    if earlier:
        for name in names:
            (tmp_path / name).write_bytes(f"an earlier {name}".encode())
    before = {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)}
    seen: list[str] = []
    new_temporary, replace = export._new_temporary, os.replace

    def counted(name: str) -> None:
        seen.append(name)
        if len(seen) == position:
            raise InjectedError(errno.ENOSPC, "No space left on device")

    if step == "temporary":
        monkeypatch.setattr(
            export, "_new_temporary", lambda path: counted(path.name) or new_temporary(path)
        )
    else:
        monkeypatch.setattr(
            export.os,
            "replace",
            lambda source, target: counted(Path(target).name) or replace(source, target),
        )
    with pytest.raises(InjectedError) as raised:
        export_comparison(analyzers, results, tmp_path, "x", options, cams=cams_c5)
    monkeypatch.undo()
    assert raised.value.filename == str(tmp_path / seen[position - 1])
    assert {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)} == before


def test_a_rewrite_replaces_the_old_files(tmp_path: Path, analyzers, results, cams_c5) -> None:
    (tmp_path / "x_compare_timings.csv").write_text("old\n")
    options = ExportOptions(stages=("C5",))
    export_comparison(analyzers, results, tmp_path, "x", options, cams=cams_c5)
    assert listing(tmp_path) == ["x_compare_C5.png", "x_compare_timings.csv"]
    assert read_csv(tmp_path / "x_compare_timings.csv")[0][0] == "stage"

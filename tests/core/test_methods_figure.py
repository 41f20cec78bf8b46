"""The figure of several attribution methods side by side, and one method's annotated figure:
each map over the input exactly where the figure says, the curves in their charts in their
colours on one scale, the class and network in the header, "untrained weights" iff untrained.

The attributions are made up (maps and curves chosen here), so that what is drawn can be
predicted; only the analysis (the input, its class) is the network's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MappingProxyType

import numpy as np
import pytest
import torch
from PIL import Image

from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.attribution_methods import Attribution
from visualizer.core.export import ExportOptions, export_result
from visualizer.core.faithfulness import Faithfulness, area
from visualizer.core.figure import attribution_figure, figure_info, grid_figure
from visualizer.core.methods_figure import DELETION, INSERTION, MethodsFigureInfo, methods_figure
from visualizer.core.render import overlay, render_grid

SOURCE = "photos/tabby on the sofa.jpg"


@pytest.fixture(scope="module")
def result(analyzer_of, make_image: Callable[..., Image.Image]) -> AnalysisResult:
    """ResNet101's analysis of a small picture (224×224 input), layer3.4's output kept."""
    return analyzer_of("resnet101").analyze(
        make_image(96, 72, seed=3), source=SOURCE, layers=["layer3.4"]
    )


def made_up(
    result: AnalysisResult, method: str, seed: int, layer: str | None = None, peak: float = 0.3
) -> tuple[Attribution, Faithfulness]:
    """An attribution of ``result``'s top-1 with a random map, and curves up to ``peak``."""
    height, width = result.size
    heat = np.random.default_rng(seed).random((height, width), dtype=np.float32)
    fractions = np.linspace(0, 1, 9)
    deletion = peak * (1 - fractions) ** 2
    insertion = peak * np.sqrt(fractions)
    attribution = Attribution(
        method=method,
        target=result.topk[0][0],
        layer=layer,
        parameters=MappingProxyType({"n_steps": 4} if method == "integrated-gradients" else {}),
        raw=torch.zeros(1),
        map=heat,
    )
    faithfulness = Faithfulness(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=area(fractions, deletion),
        insertion_auc=area(fractions, insertion),
    )
    return attribution, faithfulness


@pytest.fixture(scope="module")
def three(result: AnalysisResult) -> list[tuple[Attribution, Faithfulness]]:
    return [
        made_up(result, "gradcam", 1, layer="C5"),
        made_up(result, "saliency", 2),
        made_up(result, "integrated-gradients", 3, peak=0.07),
    ]


@pytest.fixture(scope="module")
def figure(result: AnalysisResult, three) -> Image.Image:
    return methods_figure(result, three, "tabby", colormap="inferno", opacity=0.4)


def test_each_map_is_over_the_input_where_the_figure_says(result, three, figure) -> None:
    info = figure_info(figure)
    assert isinstance(info, MethodsFigureInfo)
    canvas = np.asarray(figure)
    headings = [heading for heading, _ in info.panels]
    assert headings == ["Input", "Grad-CAM at C5", "Saliency", "Integrated Gradients"]
    expected = [np.asarray(result.view)] + [
        overlay(result.view, a.map, opacity=0.4, colormap="inferno") for a, _ in three
    ]
    for (_, (left, top, width, height)), pixels in zip(info.panels, expected, strict=True):
        assert (width, height) == (224, 224)  # zoom 1 for a 224×224 input
        np.testing.assert_array_equal(canvas[top : top + height, left : left + width], pixels)
    lefts = [box[0] for _, box in info.panels]
    assert lefts == sorted(lefts)  # one row, in the order given
    assert len({box[1] for _, box in info.panels}) == 1


def test_the_curves_are_drawn_in_their_charts_on_one_scale(three, figure) -> None:
    info = figure_info(figure)
    assert info.curve_top == 0.5  # the highest point, 0.3, rounded up to 1, 2 or 5 × 10^k
    canvas = np.asarray(figure)
    for (left, top, width, height), (_, faithfulness) in zip(info.charts, three, strict=True):
        chart = canvas[top : top + height, left : left + width]
        curves = ((DELETION, faithfulness.deletion), (INSERTION, faithfulness.insertion))
        for colour, values in curves:
            drawn = (chart == colour).all(axis=-1)
            assert drawn.any()
            rows = np.flatnonzero(drawn.any(axis=1))
            # The curve's highest point is drawn at its height on the shared scale.
            expected_top = round((1 - values.max() / info.curve_top) * (height - 1))
            assert abs(rows.min() - expected_top) <= 2


def test_the_header_names_the_class_network_and_warns_of_untrained_weights(
    result, three, figure
) -> None:
    info = figure_info(figure)
    top1 = result.topk[0][0]
    assert info.title == (f"tabby on the sofa.jpg · ResNet101 · attributions of class {top1} tabby")
    assert info.caption[0].startswith(f"Class {top1} tabby: probability ")
    assert "rank 1 of 1000" in info.caption[0]
    assert "untrained weights" in info.warning
    assert any("n_steps=4" in line for line in info.caption)  # the parameters given
    assert any("deletion" in line and "insertion" in line for line in info.caption)
    text = info.metadata()
    assert "Saliency: 224×224 pixels at" in text["placement"]
    trained = dataclasses.replace(result, trained=True)
    assert figure_info(methods_figure(trained, three[:1], "tabby")).warning is None


def test_rows_are_made_when_there_are_many_panels(result) -> None:
    many = [made_up(result, "saliency", seed) for seed in range(6)]
    info = figure_info(methods_figure(result, many, "x"))
    tops = sorted({box[1] for _, box in info.panels})
    assert len(tops) == 2  # seven panels: two rows of four and three
    assert [box[1] for _, box in info.panels].count(tops[0]) == 4


def test_attributions_of_different_classes_are_refused(result, three) -> None:
    other = dataclasses.replace(three[1][0], target=three[1][0].target + 1)
    with pytest.raises(ValueError, match="different classes"):
        methods_figure(result, [three[0], (other, three[1][1])], "x")
    with pytest.raises(ValueError, match="at least one"):
        methods_figure(result, [], "x")


def test_one_methods_annotated_figure_names_it_and_holds_its_map(result, three) -> None:
    attribution, faithfulness = three[2]
    picture = attribution_figure(result, attribution, "tabby", faithfulness=faithfulness)
    info = figure_info(picture)
    assert info.title == "tabby on the sofa.jpg · ResNet101 · Integrated Gradients"
    words = " | ".join(info.caption)
    assert "Captum parameters: n_steps=4" in words
    assert f"deletion AUC {faithfulness.deletion_auc:.3f}" in words
    assert "sum over channels of the absolute value" in info.caption[-1]
    left, top, width, height = info.picture
    expected = overlay(result.view, attribution.map)
    zoom = info.zoom
    enlarged = np.repeat(np.repeat(expected, zoom, axis=0), zoom, axis=1)
    canvas = np.asarray(picture)
    np.testing.assert_array_equal(canvas[top : top + height, left : left + width], enlarged)


def test_a_layers_grid_figure_is_titled_by_the_layer(result) -> None:
    grid = render_grid(result.layers["layer3.4"])
    info = figure_info(grid_figure(result, "layer3.4", grid))
    assert info.title == "tabby on the sofa.jpg · ResNet101 · layer layer3.4 (1024×14×14)"
    assert "activations in this layer range from" in info.caption[-1]


def test_export_writes_each_methods_figure_beside_its_overlay(
    networks, device: str, make_image: Callable[..., Image.Image], tmp_path
) -> None:
    """``--annotate`` with ``--methods``: the annotated figure carries the overlay's text and
    its own; one method alone makes no side-by-side figure."""
    shared = networks.analyzer("resnet101", device)
    analyzer = Analyzer(shared.model, device=device, resize=40, crop=40)
    result = analyzer.analyze(make_image(48, 40), source="x.png")
    options = ExportOptions(
        stages=(), cam_stage=None, methods=("saliency",), annotate=True, faithfulness_steps=1
    )
    paths = export_result(analyzer, result, tmp_path, "x", options)
    assert [path.name for path in paths] == [
        "x_resnet101_saliency.png",
        "x_resnet101_saliency_annotated.png",
        "x_resnet101_timings.csv",
    ]
    with Image.open(paths[0]) as raw, Image.open(paths[1]) as annotated:
        assert raw.size == (40, 40)
        assert annotated.text["title"] == "x.png · ResNet101 · Saliency"
        for key in ("method", "parameters", "layer", "target", "deletion_auc", "insertion_auc"):
            assert annotated.text[key] == raw.text[key]

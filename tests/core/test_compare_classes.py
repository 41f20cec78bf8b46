"""Comparing any two networks (issue 14): one architecture twice told apart, one class for both
when they share their class list, each its own class when they do not.

Two analyzers of one random ResNet101 (the session's shared network) stand for two networks
with different class lists: one with ImageNet's labels, one with labels of its own. The
classes each side must explain are worked out here from the logits; the maps it must show
by ``Analyzer.gradcam`` called directly.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.core.test_comparison import find_block, shown_overlay
from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.comparison import (
    COLUMN,
    GAP,
    MARGIN,
    export_comparison,
    result_labels,
    shares_classes,
    side_targets,
)
from visualizer.core.export import ExportOptions
from visualizer.networks import NetworkSpec, network_labels

OWN = tuple(f"kind {index}" for index in range(1000))  # a class list of its own, 1000 long


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ((NetworkSpec("vgg16"), NetworkSpec("resnet101")), ("VGG16", "ResNet101")),
        (
            (NetworkSpec("vgg16", "/runs/defects.pth"), NetworkSpec("resnet101")),
            ("VGG16 · defects.pth", "ResNet101"),
        ),
        (
            (NetworkSpec("resnet101"), NetworkSpec("resnet101", "/runs/ft5.pth")),
            ("ResNet101 · ImageNet", "ResNet101 · ft5.pth"),
        ),
        (
            (NetworkSpec("resnet101", "a/ep5.pt"), NetworkSpec("resnet101", "a/ep50.pt")),
            ("ResNet101 · ep5.pt", "ResNet101 · ep50.pt"),
        ),
        (
            (NetworkSpec("resnet101", "a/ft.pth"), NetworkSpec("resnet101", "b/ft.pth")),
            ("ResNet101 · ft.pth (1)", "ResNet101 · ft.pth (2)"),
        ),
    ],
)
def test_network_labels_tell_the_networks_apart(
    specs: tuple[NetworkSpec, ...], expected: tuple[str, ...]
) -> None:
    assert network_labels(specs) == expected


def fake(categories: tuple[str, ...] | list[str], top1: int) -> tuple[object, object]:
    return SimpleNamespace(categories=list(categories)), SimpleNamespace(topk=[(top1, "", 0.5)])


def test_one_class_list_one_class() -> None:
    (a, ra), (b, rb) = fake(OWN, 11), fake(OWN, 22)
    assert shares_classes([a, b])
    assert side_targets([a, b], [ra, rb], None) == [11, 11]
    assert side_targets([a, b], [ra, rb], None, lead=1) == [22, 22]
    assert side_targets([a, b], [ra, rb], 7, lead=1) == [7, 7]


def test_two_class_lists_each_its_own_class() -> None:
    (a, ra), (b, rb) = fake(OWN, 11), fake(OWN[:5], 3)
    assert not shares_classes([a, b])
    assert side_targets([a, b], [ra, rb], None) == [11, 3]
    assert side_targets([a, b], [ra, rb], 7) == [7, 3]  # --target: the lead's class only
    assert side_targets([a, b], [ra, rb], 0, lead=1) == [11, 0]


# --- two real analyses ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzers(analyzer_of) -> list[Analyzer]:
    """ImageNet's labels, and the same network with labels of its own."""
    imagenet = analyzer_of("resnet101")
    relabelled = Analyzer(imagenet.model, device=imagenet.device, labels=list(OWN))
    return [imagenet, relabelled]


@pytest.fixture(scope="module")
def results(analyzers: list[Analyzer], make_image: Callable[..., Image.Image]):
    picture = make_image(96, 72, seed=3)
    return [analyzer.analyze(picture, source="pics/x.png") for analyzer in analyzers]


@pytest.fixture(scope="module")
def top1(results: list[AnalysisResult]) -> int:
    return int(torch.argmax(results[0].logits))


@pytest.fixture(scope="module")
def direct(analyzers, results) -> Callable[[int, str, int], np.ndarray]:
    @functools.cache
    def cam(index: int, stage: str, target: int) -> np.ndarray:
        return analyzers[index].gradcam(results[index], stage, target)

    return cam


@pytest.fixture(scope="module")
def own_classes(tmp_path_factory: pytest.TempPathFactory, analyzers, results, top1: int):
    """The two networks, --target 7 for the lead: written with names and labels given."""
    assert top1 != 7, "pick another picture"
    folder = tmp_path_factory.mktemp("own-classes")
    options = ExportOptions(stages=("C5",), cam_stage="C5", target=7)
    written = export_comparison(
        analyzers,
        results,
        folder,
        "x",
        options,
        names=("resnet101-imagenet", "resnet101-ft"),
        labels=("ResNet101 · ImageNet", "ResNet101 · ft.pth"),
    )
    return folder, written


def test_each_side_explains_its_own_class(own_classes, analyzers, top1: int) -> None:
    _, written = own_classes
    with Image.open(written[0]) as picture:
        text = dict(picture.text)
    imagenet = analyzers[0].categories
    assert text["target"] == f"7 {imagenet[7]} | {top1} kind {top1}"
    assert text["explained"] == "each network its own class (different class lists)"
    assert text["title"] == "x.png · stage C5 · Grad-CAM of each network's class at C5"
    assert text["note"] == (
        "The networks have different classes: each Grad-CAM explains its own network's class "
        f"(ResNet101 · ImageNet: 7 {imagenet[7]}; ResNet101 · ft.pth: {top1} kind {top1})."
    )
    assert text["model"] == "ResNet101 · ImageNet | ResNet101 · ft.pth"
    assert text["ResNet101 · ft.pth class"].startswith(f"{top1} kind {top1}: ")
    assert text["ResNet101 · ft.pth class"].endswith(", rank 1 of 1000")
    assert text["ResNet101 · ImageNet class"].startswith(f"7 {imagenet[7]}: ")


def test_the_png_shows_each_sides_own_grad_cam(own_classes, results, top1: int, direct) -> None:
    _, written = own_classes
    with Image.open(written[0]) as picture:
        canvas = np.asarray(picture)
    for index, (result, target) in enumerate(zip(results, (7, top1), strict=True)):
        left = MARGIN + index * (COLUMN + GAP)
        assert find_block(canvas, shown_overlay(result, direct(index, "C5", target)), left)


def test_the_csv_names_the_columns_by_the_names_given(own_classes) -> None:
    _, written = own_classes
    with written[1].open(newline="") as file:
        header = next(csv.reader(file))
    assert header == [
        "stage",
        *(f"resnet101-imagenet_{what}" for what in ("shape", "ms", "parameters")),
        *(f"resnet101-ft_{what}" for what in ("shape", "ms", "parameters")),
    ]


def test_one_architecture_twice_with_one_class_list_explains_one_class(
    tmp_path: Path, analyzer_of, results, top1: int, direct
) -> None:
    """Both with ImageNet's classes: one class for both, the lead's top-1; by default the
    sides are told apart by their weights, and the CSV's columns by a number."""
    twice = [analyzer_of("resnet101")] * 2
    pair = [results[0], results[0]]
    options = ExportOptions(stages=("C5",), cam_stage="C5")
    written = export_comparison(twice, pair, tmp_path, "y", options, lead=1)
    with Image.open(written[0]) as picture:
        text = dict(picture.text)
        canvas = np.asarray(picture)
    assert text["target"] == f"{top1} {twice[0].categories[top1]}"
    assert text["explained"] == "one class for both networks"
    assert "note" not in text
    labels = result_labels(pair)
    assert labels == (
        f"ResNet101 · {results[0].weights} (1)",
        f"ResNet101 · {results[0].weights} (2)",
    )
    assert text["model"] == " | ".join(labels)
    for index in range(2):
        left = MARGIN + index * (COLUMN + GAP)
        assert find_block(canvas, shown_overlay(results[0], direct(0, "C5", top1)), left)
    with written[1].open(newline="") as file:
        header = next(csv.reader(file))
    assert header[1] == "resnet101-1_shape"
    assert header[4] == "resnet101-2_shape"

"""Your own network in the engine (issue 14): ``Analyzer`` on fine-tuned checkpoints with any
head, one input channel and their own preprocessing, against torchvision's network and
Captum's ``LayerGradCam`` called directly on it, for a named class index.

The checkpoints are made here (tests/finetuned.py) under a fixed seed. Each case's network,
checkpoint file and analyzer are made on first use and let go after the case's last test.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tests.finetuned import (
    LAYOUTS,
    STAGE_MODULES,
    captum_gradcam,
    grey_input,
    logits_of,
    module_named,
    nested,
    picture,
    reference_network,
    rgb_input,
    save,
    state_of,
)
from visualizer.core import AnalysisResult, Analyzer, PreprocessingError

LOGITS_TOLERANCE = 1e-4
CAM_TOLERANCE = 1e-5
INPUT_TOLERANCE = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The architecture's ImageNet evaluation transform (torchvision's weights metadata).
DEFAULT_SIZES = {"resnet101": (232, 224), "vgg16": (256, 224)}
GREY = {"mean": (0.5,), "std": (0.25,), "resize": 160, "crop": 128}


@dataclass
class Case:
    """A fine-tuned network: torchvision's twin, its checkpoint file, our analyzer of it.

    ``lean`` (for a VGG16, 0.53 GB): the twin's answers (its logits and the Grad-CAMs named in
    ``lean``, on torchvision's own preprocessing of ``picture()``) are computed first, and the
    twin let go before our analyzer is built, so that the two are never in memory together.
    """

    name: str
    arch: str
    num_classes: int
    channels: int
    layout: str
    folder: Path
    options: dict[str, object] = field(default_factory=dict)
    lean: tuple[tuple[str, int], ...] = ()

    @functools.cached_property
    def twin(self) -> nn.Module:
        return reference_network(self.arch, self.num_classes, self.channels)

    @functools.cached_property
    def path(self) -> Path:
        suffix, make, _ = LAYOUTS[self.layout]
        return save(self.folder / f"{self.name}{suffix}", make(state_of(self.twin), self.arch))

    @functools.cached_property
    def answers(self) -> dict[object, object]:
        """The twin's answers on torchvision's input, for a ``lean`` case; the twin goes."""
        assert self.lean
        self.path  # noqa: B018 - written while the twin is here
        x = default_input(self.arch)
        answers: dict[object, object] = {"input": x, "logits": logits_of(self.twin, x)[0]}
        for stage, target in self.lean:
            answers[stage, target] = captum_gradcam(self.twin, self.layer(stage), x, target)
        del self.__dict__["twin"]
        return answers

    @functools.cached_property
    def analyzer(self) -> Analyzer:
        if self.lean:
            self.answers  # noqa: B018 - the twin goes first
        return make_analyzer(self.arch, self.path, **self.options)

    @functools.cached_property
    def result(self) -> AnalysisResult:
        return self.analyzer.analyze(picture(), source="picture")

    def layer(self, stage: str) -> nn.Module:
        return module_named(self.twin, STAGE_MODULES[self.arch][stage])

    def reference_logits(self, x: torch.Tensor) -> torch.Tensor:
        """torchvision's logits ``(N,)`` on ``x``."""
        if not self.lean:
            return logits_of(self.twin, x)[0]
        assert float((x - self.answers["input"]).abs().max()) < INPUT_TOLERANCE
        return self.answers["logits"]

    def reference_cam(self, stage: str, x: torch.Tensor, target: int) -> np.ndarray:
        """Captum's Grad-CAM on torchvision's network for ``x``."""
        if not self.lean:
            return captum_gradcam(self.twin, self.layer(stage), x, target)
        assert float((x - self.answers["input"]).abs().max()) < INPUT_TOLERANCE
        return self.answers[stage, target]

    def release(self) -> None:
        for name in ("twin", "path", "answers", "analyzer", "result"):
            value = self.__dict__.pop(name, None)
            if isinstance(value, Path):
                value.unlink(missing_ok=True)


def default_input(arch: str) -> torch.Tensor:
    """torchvision's own evaluation transform of ``picture()`` for ``arch``'s ImageNet
    weights (the default preprocessing of a checkpoint that stores none)."""
    import torchvision

    weights = {
        "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V2,
        "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    }[arch]
    return weights.transforms()(picture()).unsqueeze(0)


def make_analyzer(arch: str, weights: Path, **options: object) -> Analyzer:
    return Analyzer(arch, weights, device="cpu", progress=False, warm_up=False, **options)


def case_fixture(
    name: str,
    arch: str,
    num_classes: int,
    channels: int,
    layout: str,
    *,
    lean: tuple[tuple[str, int], ...] = (),
    **options: object,
):
    @pytest.fixture(scope="module", name=name)
    def fixture(
        tmp_path_factory: pytest.TempPathFactory,
        release_after_last_use: Callable[..., None],
        request: pytest.FixtureRequest,
    ) -> Iterator[Case]:
        folder = tmp_path_factory.mktemp(name)
        case = Case(name, arch, num_classes, channels, layout, folder, dict(options), lean=lean)
        release_after_last_use(request.fixturename, case.release, each_module=True)
        yield case
        case.release()

    return fixture


ft5 = case_fixture("ft5", "resnet101", 5, 3, "plain")
ft37 = case_fixture("ft37", "resnet101", 37, 3, "lightning")
binary = case_fixture("binary", "resnet101", 1, 3, "nested-net-with-optimizer")
vgg2 = case_fixture("vgg2", "vgg16", 2, 3, "plain", lean=(("C5", 1),))
grey = case_fixture("grey", "resnet101", 2, 1, "safetensors", **GREY)


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.double(), dim=-1)


def assert_same_logits_and_topk(case: Case) -> None:
    """The result's logits are torchvision's on the same input; top-k are its best
    min(5, N) classes with their softmax (sigmoid for one output) probabilities."""
    result = case.result
    expected = case.reference_logits(result.input)
    assert expected.shape == (case.num_classes,)
    assert float((result.logits - expected).abs().max()) < LOGITS_TOLERANCE
    assert result.classes == case.num_classes
    rows = min(5, case.num_classes)
    assert len(result.topk) == rows
    if case.num_classes == 1:
        assert result.scores == "sigmoid"
        probabilities = torch.sigmoid(expected.double())
    else:
        assert result.scores == "softmax"
        probabilities = softmax(expected)
    order = torch.argsort(probabilities, descending=True)[:rows].tolist()
    assert [index for index, _, _ in result.topk] == order
    for index, label, probability in result.topk:
        assert label == case.analyzer.categories[index]
        assert probability == pytest.approx(float(probabilities[index]), abs=1e-5)


def assert_gradcam_is_captums(case: Case, stage: str, target: int) -> None:
    result = case.result
    cam = case.analyzer.gradcam(result, stage=stage, target=target)
    expected = case.reference_cam(stage, result.input, target)
    assert cam.dtype == np.float32
    assert cam.shape == tuple(result.input.shape[-2:])
    # Not two empty maps agreeing: Captum's has a peak and covers a fair part of the image.
    assert expected.max() == pytest.approx(1.0)
    assert (expected > 0).mean() > 0.02
    assert float(np.abs(cam - expected).max()) < CAM_TOLERANCE


def assert_source(source: str, *, given: bool, checkpoint: bool) -> None:
    """Where the preprocessing comes from, in words: what was given, what the checkpoint
    holds, and otherwise the architecture's ImageNet transform (api.md named the plain cases
    "given", "checkpoint" and "ImageNet defaults"; the words may differ)."""
    assert "\n" not in source
    assert ("given" in source) == given, source
    assert ("checkpoint" in source) == checkpoint, source
    if not given and not checkpoint:
        assert "ImageNet" in source, source


# --- a five-class ResNet101 -------------------------------------------------------------------


def test_five_classes_without_labels(ft5: Case) -> None:
    analyzer = ft5.analyzer
    assert analyzer.num_classes == 5
    assert analyzer.in_channels == 3
    assert analyzer.binary is False
    assert analyzer.categories == [f"class {i}" for i in range(5)]
    assert analyzer.labels_source.startswith("none")  # api.md: "none"; engine: "none: numbered"
    assert ft5.result.labels_source == analyzer.labels_source


def test_five_classes_give_torchvisions_logits_and_top5(ft5: Case) -> None:
    assert_same_logits_and_topk(ft5)


def test_the_default_preprocessing_is_the_architectures_imagenet_transform(ft5: Case) -> None:
    result = ft5.result
    expected = default_input("resnet101")
    assert result.input.shape == (1, 3, 224, 224)
    assert float((result.input - expected).abs().max()) < INPUT_TOLERANCE
    preprocessing = ft5.analyzer.preprocessing
    assert (preprocessing.resize, preprocessing.crop) == DEFAULT_SIZES["resnet101"]
    assert preprocessing.mean == pytest.approx(IMAGENET_MEAN)
    assert preprocessing.std == pytest.approx(IMAGENET_STD)
    assert preprocessing.channels == 3
    assert_source(preprocessing.source, given=False, checkpoint=False)


@pytest.mark.parametrize(("stage", "target"), [("C5", 3), ("C3", 3), ("C5", 0)])
def test_gradcam_of_a_named_class_is_captums(ft5: Case, stage: str, target: int) -> None:
    assert_gradcam_is_captums(ft5, stage, target)


def test_gradcam_of_the_top1_class_by_default(ft5: Case) -> None:
    top1 = ft5.result.topk[0][0]
    cam = ft5.analyzer.gradcam(ft5.result, "C5")
    assert np.array_equal(cam, ft5.analyzer.gradcam(ft5.result, "C5", target=top1))


@pytest.mark.parametrize("target", [5, 1000, -1])
def test_a_target_beyond_the_head_is_refused(ft5: Case, target: int) -> None:
    with pytest.raises(ValueError, match=f"target {target} is not a class index"):
        ft5.analyzer.gradcam(ft5.result, "C5", target=target)


def test_given_preprocessing_is_what_is_used(ft5: Case) -> None:
    given = {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.3, 0.25), "resize": 160, "crop": 144}
    analyzer = make_analyzer("resnet101", ft5.path, **given)
    preprocessing = analyzer.preprocessing
    assert (preprocessing.resize, preprocessing.crop) == (160, 144)
    assert preprocessing.mean == pytest.approx(given["mean"])
    assert preprocessing.std == pytest.approx(given["std"])
    assert_source(preprocessing.source, given=True, checkpoint=False)
    result = analyzer.analyze(picture())
    expected = rgb_input(picture(), 160, 144, given["mean"], given["std"])
    assert result.input.shape == (1, 3, 144, 144)
    assert float((result.input - expected).abs().max()) < INPUT_TOLERANCE
    assert "0.4" in preprocessing.describe()
    assert "144" in preprocessing.describe()
    # And the network sees it: torchvision's logits on that input.
    reference = logits_of(ft5.twin, expected)[0]
    assert float((result.logits - reference).abs().max()) < LOGITS_TOLERANCE


STORED = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


@pytest.mark.parametrize("input_size", [160, [3, 160, 160]], ids=["int", "timm-chw"])
def test_preprocessing_stored_in_the_checkpoint_is_used(
    ft5: Case, input_size: object, tmp_path: Path
) -> None:
    extras = {**STORED, "input_size": input_size}
    path = save(tmp_path / "stored.pth", nested(state_of(ft5.twin), "resnet101", "model", extras))
    try:
        analyzer = make_analyzer("resnet101", path)
    finally:
        path.unlink()
    preprocessing = analyzer.preprocessing
    assert preprocessing.crop == 160
    assert preprocessing.resize >= 160
    assert preprocessing.mean == pytest.approx(STORED["mean"])
    assert preprocessing.std == pytest.approx(STORED["std"])
    assert_source(preprocessing.source, given=False, checkpoint=True)
    result = analyzer.analyze(picture())
    expected = rgb_input(picture(), preprocessing.resize, 160, STORED["mean"], STORED["std"])
    assert float((result.input - expected).abs().max()) < INPUT_TOLERANCE


def test_given_preprocessing_wins_over_the_checkpoints(ft5: Case, tmp_path: Path) -> None:
    extras = {**STORED, "input_size": 160}
    path = save(tmp_path / "stored.pth", nested(state_of(ft5.twin), "resnet101", "model", extras))
    try:
        analyzer = make_analyzer("resnet101", path, mean=(0.45, 0.45, 0.45), crop=96)
    finally:
        path.unlink()
    preprocessing = analyzer.preprocessing
    assert preprocessing.mean == pytest.approx((0.45, 0.45, 0.45))
    assert preprocessing.crop == 96
    assert preprocessing.std == pytest.approx(STORED["std"])  # not given: the checkpoint's
    assert_source(preprocessing.source, given=True, checkpoint=True)
    result = analyzer.analyze(picture())
    expected = rgb_input(picture(), preprocessing.resize, 96, (0.45,) * 3, STORED["std"])
    assert float((result.input - expected).abs().max()) < INPUT_TOLERANCE


# --- 37 classes, from a Lightning checkpoint ----------------------------------------------------


def test_thirty_seven_classes_show_the_top_five(ft37: Case) -> None:
    assert ft37.analyzer.num_classes == 37
    assert len(ft37.analyzer.categories) == 37
    assert_same_logits_and_topk(ft37)


def test_gradcam_of_the_last_of_37_classes_is_captums(ft37: Case) -> None:
    assert_gradcam_is_captums(ft37, "C5", 36)


# --- one output: a binary classifier ----------------------------------------------------------


def test_one_output_is_a_sigmoid_probability(binary: Case) -> None:
    analyzer, result = binary.analyzer, binary.result
    assert analyzer.num_classes == 1
    assert analyzer.binary is True
    logit = float(logits_of(binary.twin, result.input)[0, 0])
    assert result.topk[0][0] == 0
    assert result.topk[0][1] == "class 0"
    assert result.topk[0][2] == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-5)
    assert result.topk[0][2] != pytest.approx(1.0)  # not a softmax over one class
    assert_same_logits_and_topk(binary)


def test_gradcam_of_the_one_output_is_captums(binary: Case) -> None:
    assert_gradcam_is_captums(binary, "C5", 0)
    default = binary.analyzer.gradcam(binary.result, "C5")
    assert np.array_equal(default, binary.analyzer.gradcam(binary.result, "C5", target=0))


def test_a_second_output_of_a_binary_classifier_is_refused(binary: Case) -> None:
    with pytest.raises(ValueError, match="target 1 is not a class index"):
        binary.analyzer.gradcam(binary.result, "C5", target=1)


# --- a two-class VGG16 --------------------------------------------------------------------------


def test_two_class_vgg16_gives_torchvisions_logits_and_two_rows(vgg2: Case) -> None:
    assert vgg2.analyzer.num_classes == 2
    expected = default_input("vgg16")
    assert float((vgg2.result.input - expected).abs().max()) < INPUT_TOLERANCE
    assert_same_logits_and_topk(vgg2)


def test_gradcam_of_a_two_class_vgg16_is_captums(vgg2: Case) -> None:
    assert_gradcam_is_captums(vgg2, "C5", 1)


# --- a one-channel (grey-scale) ResNet101 -----------------------------------------------------


def test_a_grey_network_sees_pillows_grey_conversion(grey: Case) -> None:
    analyzer, result = grey.analyzer, grey.result
    assert analyzer.in_channels == 1
    expected, grey_crop = grey_input(picture(), 160, 128, 0.5, 0.25)
    assert result.input.shape == (1, 1, 128, 128)
    assert float((result.input - expected).abs().max()) < INPUT_TOLERANCE
    # The view is the grey image as RGB: three equal channels, Pillow's grey values.
    assert result.view.mode == "RGB"
    assert result.view.size == (128, 128)
    view = np.asarray(result.view)
    for channel in range(3):
        assert np.array_equal(view[..., channel], np.asarray(grey_crop))


def test_a_grey_networks_preprocessing_is_the_given_one(grey: Case) -> None:
    preprocessing = grey.analyzer.preprocessing
    assert preprocessing.channels == 1
    assert (preprocessing.resize, preprocessing.crop) == (160, 128)
    assert tuple(preprocessing.mean) == pytest.approx((0.5,))
    assert tuple(preprocessing.std) == pytest.approx((0.25,))
    assert_source(preprocessing.source, given=True, checkpoint=False)
    text = preprocessing.describe().lower()
    assert "grey" in text or "gray" in text
    assert "0.25" in text


def test_a_grey_network_gives_torchvisions_logits(grey: Case) -> None:
    assert_same_logits_and_topk(grey)


@pytest.mark.parametrize("stage", ["C5", "C1"])
def test_gradcam_of_a_grey_network_is_captums(grey: Case, stage: str) -> None:
    assert_gradcam_is_captums(grey, stage, 1)


def test_a_grey_image_file_is_read_as_grey(grey: Case, tmp_path: Path) -> None:
    path = tmp_path / "xray.png"
    picture().convert("L").save(path)
    result = grey.analyzer.analyze(path)
    expected, _ = grey_input(picture(), 160, 128, 0.5, 0.25)
    assert float((result.input - expected).abs().max()) < INPUT_TOLERANCE


def test_three_means_for_a_grey_network_are_refused(grey: Case) -> None:
    with pytest.raises(PreprocessingError) as error:
        make_analyzer("resnet101", grey.path, mean=(0.5, 0.5, 0.5), std=(0.25,))
    message = str(error.value)
    assert "\n" not in message
    assert re.search(r"\b3 values\b", message), message
    assert re.search(r"\b1 (input )?channel\b", message), message


def test_a_picture_in_memory_is_unchanged_by_the_analysis(grey: Case) -> None:
    image = picture()
    before = np.asarray(image).copy()
    grey.analyzer.analyze(image)
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), before)


def test_the_picture_is_not_greyscale_by_accident() -> None:
    """The grey tests mean something: Pillow's grey values are no single channel's."""
    image = np.asarray(picture()).astype(int)
    grey_values = np.asarray(picture().convert("L")).astype(int)
    for channel in range(3):
        assert np.abs(image[..., channel] - grey_values).max() > 50
    assert isinstance(picture(), Image.Image)

"""Grad-CAM against Captum's ``LayerGradCam`` called directly on torchvision's own networks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from PIL import Image
from torch import nn

from models import STAGE_NAMES, build_model
from visualizer.core import Analyzer
from visualizer.core.attribution import min_max, stage_gradients

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def analysed(analyzer_of, make_image: Callable[..., Image.Image]):
    picture = make_image(100, 80, seed=7)
    return lambda arch: analyzer_of(arch).analyze(picture)


def _captum_map(twin: nn.Module, layer: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Captum's Grad-CAM, upsampled bilinearly and min–max scaled, as DESIGN §3 defines it."""
    x = x.to(next(twin.parameters()).device)
    attribution = LayerGradCam(twin, layer).attribute(x, target=target, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(attribution, tuple(x.shape[-2:]), "bilinear")[0, 0]
    low, high = upsampled.min(), upsampled.max()
    scaled = (upsampled - low) / (high - low) if high > low else torch.zeros_like(upsampled)
    return scaled.detach().cpu().numpy()


@pytest.fixture(scope="module")
def reference(twin_of, twin_stage_module):
    """``(arch, stage, x, target)`` → Captum's map on torchvision's network."""
    return lambda arch, stage, x, target: _captum_map(
        twin_of(arch), twin_stage_module(arch, stage), x, target
    )


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_each_stage_equals_captum_on_torchvision(
    arch: str, stage: str, analysed, analyzer_of, reference
) -> None:
    result = analysed(arch)
    cam = analyzer_of(arch).gradcam(result, stage=stage)
    expected = reference(arch, stage, result.input, result.topk[0][0])
    assert cam.dtype == np.float32
    assert cam.shape == (224, 224)
    assert cam.min() >= 0.0
    assert cam.max() <= 1.0
    # Not two empty maps agreeing: Captum's has a peak and covers a fair part of the image.
    assert expected.max() == pytest.approx(1.0)
    assert (expected > 0).mean() > 0.02
    assert np.abs(cam - expected).max() <= TOLERANCE


def test_all_stages_at_once_equal_one_at_a_time_for_any_target(
    arch: str, analysed, analyzer_of, twin_of, twin_stage_module
) -> None:
    result = analysed(arch)
    analyzer = analyzer_of(arch)
    target = result.topk[3][0]  # not the top-1 class
    cams = analyzer.gradcams(result, STAGE_NAMES, target=target)
    assert list(cams) == list(STAGE_NAMES)
    for stage in STAGE_NAMES:
        assert cams[stage].target == target
        single = analyzer.gradcam(result, stage=stage, target=target)
        assert np.abs(cams[stage].map - single).max() <= TOLERANCE
    expected = _captum_map(twin_of(arch), twin_stage_module(arch, "C3"), result.input, target)
    assert np.abs(cams["C3"].map - expected).max() <= TOLERANCE


def test_channel_weights_are_the_mean_gradients(
    arch: str, analysed, analyzer_of, twin_of, twin_stage_module
) -> None:
    result = analysed(arch)
    target = result.topk[0][0]
    cam = analyzer_of(arch).gradcams(result, ["C4"])["C4"]
    twin = twin_of(arch)
    saved: list[torch.Tensor] = []

    def keep(_m: nn.Module, _i: object, output: torch.Tensor) -> None:
        output.register_hook(saved.append)

    handle = twin_stage_module(arch, "C4").register_forward_hook(keep)
    # The gradient with respect to the input only: the hook sees the same gradient at C4,
    # and no weight gradients are kept (a VGG16's would be another 0.53 GB).
    x = result.input.to(next(twin.parameters()).device).detach().clone().requires_grad_()
    try:
        torch.autograd.grad(twin(x)[0, target], x)
    finally:
        handle.remove()
        twin.zero_grad(set_to_none=True)
    expected = saved[0][0].mean(dim=(1, 2)).cpu()
    torch.testing.assert_close(cam.channel_weights, expected, rtol=1e-4, atol=1e-9)


def test_a_result_of_another_analyzer_is_recomputed_with_this_network(
    analysed, analyzer_of
) -> None:
    # Same architecture, other weights: the map must be this network's, not a blend.
    result = analysed("resnet101")
    other = Analyzer(build_model("resnet101", "random"), device=analyzer_of("resnet101").device)
    with torch.no_grad():
        for parameter in other.model.parameters():
            parameter.mul_(1.5)
    cam = other.gradcam(result, "C3")
    expected = _captum_map(other.model, other.model.stages["C3"], result.input, result.topk[0][0])
    assert np.abs(cam - expected).max() <= TOLERANCE


def test_grad_cam_needs_no_module_backward_hook(
    analysed, analyzer_of, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("module backward hooks break on in-place ReLUs")

    monkeypatch.setattr(nn.Module, "register_full_backward_hook", refuse)
    monkeypatch.setattr(nn.Module, "register_backward_hook", refuse)
    analyzer_of("vgg16").gradcams(analysed("vgg16"))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"stage": "C6"}, ValueError, "unknown stage 'C6': choose one of C1, C2, C3, C4, C5"),
        (
            {"target": 1000},
            ValueError,
            r"target 1000 is not a class index: the network has 1000 classes \(0 to 999\)",
        ),
        ({"target": -1}, ValueError, "target -1 is not a class index"),
        ({"target": "3"}, TypeError, "target must be a class index, not str"),
        ({"target": True}, TypeError, "target must be a class index, not bool"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(
    analysed, analyzer_of, kwargs: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        analyzer_of("resnet101").gradcam(analysed("resnet101"), **kwargs)


def test_a_result_of_another_network_is_refused(analysed, analyzer_of) -> None:
    with pytest.raises(ValueError, match="this result is from vgg16, not resnet101"):
        analyzer_of("resnet101").gradcam(analysed("vgg16"))


def test_numpy_integers_are_class_indices(analysed, analyzer_of) -> None:
    result = analysed("resnet101")
    analyzer: Analyzer = analyzer_of("resnet101")
    cam = analyzer.gradcam(result, "C5", target=np.int64(5))
    assert np.abs(cam - analyzer.gradcam(result, "C5", target=5)).max() == 0


def test_min_max_of_a_flat_map_is_all_zeros() -> None:
    assert torch.equal(min_max(torch.full((3, 4), 2.5)), torch.zeros(3, 4))
    torch.testing.assert_close(min_max(torch.tensor([1.0, 3.0, 2.0])), torch.tensor([0, 1, 0.5]))


def test_a_start_made_inside_inference_mode_still_gets_gradients(analysed, analyzer_of) -> None:
    # On a GPU, moving a stored activation to the device inside a caller's inference mode
    # gives an inference tensor, which autograd refuses unless it is copied first.
    result = analysed("resnet101")
    model = analyzer_of("resnet101").model
    stored = result.stages["C3"].unsqueeze(0).to(next(model.parameters()).device)
    with torch.inference_mode():
        start = stored.clone()
    assert start.is_inference()
    target = result.topk[0][0]
    _, from_inference = stage_gradients(model, ["C3", "C5"], start, target)
    _, expected = stage_gradients(model, ["C3", "C5"], stored, target)
    for stage in ("C3", "C5"):
        torch.testing.assert_close(from_inference[stage], expected[stage], rtol=0, atol=0)

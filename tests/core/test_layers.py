"""Any layer: ``analyze(layers=[...])`` equals torchvision's module outputs (forward hooks on
the twin network holding the same weights), ``feature_layers()`` lists torchvision's modules
with their output shapes, and Grad-CAM / Guided Grad-CAM at any of them are Captum's on
torchvision's module of the same name."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from captum.attr import GuidedGradCam, LayerGradCam
from PIL import Image
from torch import nn

# Modules inside stages, of different kinds: a convolution, a block, a pooling, a batch norm.
LAYERS = {
    "vgg16": ["features.0", "features.10", "features.23"],
    "resnet101": ["conv1", "layer1.0.downsample.1", "layer3.4", "layer4.2.conv2"],
}


@pytest.fixture(scope="module")
def analysed(analyzer_of, make_image: Callable[..., Image.Image]):
    picture = make_image(100, 80, seed=15)
    return lambda arch, layers=(): analyzer_of(arch).analyze(picture, layers=layers)


def torchvision_outputs(twin: nn.Module, x: torch.Tensor, names: list[str]) -> dict:
    """Each named module's output in one pass of torchvision's network, by forward hooks
    (copied when made: an in-place ReLU after it would change it)."""
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(twin.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, output, name=name: outputs.__setitem__(name, output[0].clone())
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            twin(x.to(next(twin.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: output.cpu() for name, output in outputs.items()}


def test_layers_asked_for_equal_torchvisions_module_outputs(
    arch: str, analysed, twin_of, hooks_left, analyzer_of
) -> None:
    names = LAYERS[arch]
    result = analysed(arch, names)
    expected = torchvision_outputs(twin_of(arch), result.input, names)
    assert list(result.layers) == names
    for name in names:
        layer = result.layers[name]
        assert layer.device.type == "cpu"
        assert layer.dtype == torch.float32
        assert layer.shape == expected[name].shape
        assert float(expected[name].abs().max()) > 0
        assert torch.allclose(layer, expected[name], rtol=1e-5, atol=1e-5)
    assert hooks_left(analyzer_of(arch).model) == 0


def test_a_stage_name_is_a_layer_and_nothing_is_captured_unasked(arch: str, analysed) -> None:
    plain = analysed(arch)
    assert dict(plain.layers) == {}
    result = analysed(arch, ["C3"])
    assert torch.equal(result.layers["C3"], result.stages["C3"])


def test_feature_layers_are_torchvisions_modules_with_their_output_shapes(
    arch: str, analyzer_of, twin_of, analysed
) -> None:
    layers = analyzer_of(arch).feature_layers()
    twin_modules = dict(twin_of(arch).named_modules())
    # Every feature layer that torchvision names alike (ours splits ResNet's shared ReLU
    # into one per use) gives the shape torchvision's module gives.
    shared = [layer.name for layer in layers if layer.name in twin_modules]
    assert {layer.name for layer in layers} - set(shared) == {
        layer.name for layer in layers if re.fullmatch(r"layer\d\.\d+\.relu[123]", layer.name)
    }
    x = analysed(arch).input
    outputs = torchvision_outputs(twin_of(arch), x, shared)
    for layer in layers:
        if layer.name in outputs:
            assert tuple(outputs[layer.name].shape) == layer.shape, layer.name
    # In the order they run, stages in order, nothing after C5 but the pooling.
    stages = [layer.stage for layer in layers]
    assert stages[0] == "C1"
    assert [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]] == [
        "C1",
        "C2",
        "C3",
        "C4",
        "C5",
        None,
    ]
    after = {"vgg16": ["features.30", "features", "avgpool"], "resnet101": ["avgpool"]}
    assert [layer.name for layer in layers if layer.stage is None] == after[arch]
    assert not any(layer.module_type == "Linear" for layer in layers)


def test_an_unknown_layer_is_refused_with_examples(arch: str, analyzer_of, analysed) -> None:
    analyzer = analyzer_of(arch)
    for name in ("classifier", "fc", "nothing.here", "C6"):
        with pytest.raises(ValueError, match=rf"unknown layer '{name}'.*e\.g\."):
            analyzer.analyze(Image.new("RGB", (40, 40)), layers=[name])
    with pytest.raises(ValueError, match="unknown layer"):
        analyzer.attribute(analysed(arch), "gradcam", layer="fc")


def test_gradcam_at_any_layer_is_captums_on_torchvisions_module(
    arch: str, analysed, analyzer_of, twin_of
) -> None:
    result = analysed(arch)
    target = result.topk[0][0]
    name = LAYERS[arch][-1]
    ours = analyzer_of(arch).attribute(result, "gradcam", layer=name)
    twin = twin_of(arch)
    x = result.input.clone().requires_grad_()
    expected = (
        LayerGradCam(twin, dict(twin.named_modules())[name])
        .attribute(x, target=target, relu_attributions=True)
        .detach()
    )
    assert ours.layer == name
    assert ours.raw.shape == expected.shape
    assert float(expected.abs().max()) > 0
    assert float((ours.raw - expected).abs().max()) < 1e-5
    assert ours.map.shape == result.size


def test_guided_gradcam_at_any_layer_is_captums_with_out_of_place_relus(
    arch: str, analysed, analyzer_of, twin_of, hooks_left
) -> None:
    """Guided Grad-CAM at a module inside a stage, on both architectures. The reference makes
    torchvision's in-place ReLUs (all of VGG16's) out-of-place, as captum#973 advises for
    guided backpropagation's hooks; fmviz does the same for its pass and leaves the network's
    ReLUs in place after, with no hook left."""
    result = analysed(arch)
    target = result.topk[0][0]
    name = LAYERS[arch][-1]
    analyzer = analyzer_of(arch)
    ours = analyzer.attribute(result, "guided-gradcam", layer=name)
    twin = twin_of(arch)
    relus = [module for module in twin.modules() if isinstance(module, nn.ReLU)]
    for relu in relus:
        relu.inplace = False
    try:
        with pytest.warns(UserWarning, match="backward hooks on ReLU"):
            expected = (
                GuidedGradCam(twin, dict(twin.named_modules())[name])
                .attribute(result.input.clone().requires_grad_(), target=target)
                .detach()
            )
    finally:
        for relu in relus:
            relu.inplace = True
    assert float(expected.abs().max()) > 0
    assert float((ours.raw - expected).abs().max()) < 1e-5
    model = analyzer.model
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert hooks_left(model) == 0

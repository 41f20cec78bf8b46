"""Our VGG16 and ResNet101 against torchvision's: names, parameters, logits, stages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from models import MODEL_NAMES, STAGE_NAMES, build_model, stage_module_names, stage_shapes
from models.resnet import Bottleneck

STAGE_TABLE = {
    "vgg16": {
        "C1": ("features.3", (64, 224, 224)),
        "C2": ("features.8", (128, 112, 112)),
        "C3": ("features.15", (256, 56, 56)),
        "C4": ("features.22", (512, 28, 28)),
        "C5": ("features.29", (512, 14, 14)),
    },
    "resnet101": {
        "C1": ("maxpool", (64, 56, 56)),
        "C2": ("layer1", (256, 56, 56)),
        "C3": ("layer2", (512, 28, 28)),
        "C4": ("layer3", (1024, 14, 14)),
        "C5": ("layer4", (2048, 7, 7)),
    },
}
STRIDES = {"vgg16": (1, 2, 4, 8, 16), "resnet101": (4, 4, 8, 16, 32)}
ModelOf = Callable[[str], nn.Module]


def test_model_names() -> None:
    assert MODEL_NAMES == ("vgg16", "resnet101")


def test_unknown_name_names_the_choices() -> None:
    with pytest.raises(ValueError, match="vgg16, resnet101"):
        build_model("resnet50", "random")


def test_parameter_names_and_shapes_equal_torchvisions(
    arch: str, torchvision_model: ModelOf, random_model: ModelOf
) -> None:
    ours = {key: tuple(value.shape) for key, value in random_model(arch).state_dict().items()}
    theirs = {
        key: tuple(value.shape) for key, value in torchvision_model(arch).state_dict().items()
    }
    assert list(ours) == list(theirs)
    assert ours == theirs


def test_parameter_count_equals_torchvisions(
    arch: str, torchvision_model: ModelOf, random_model: ModelOf
) -> None:
    ours = sum(p.numel() for p in random_model(arch).parameters())
    theirs = sum(p.numel() for p in torchvision_model(arch).parameters())
    assert ours == theirs
    assert ours == {"vgg16": 138_357_544, "resnet101": 44_549_160}[arch]


def test_random_init_is_torchvisions_with_the_same_seed(
    arch: str, random_model: ModelOf, torchvision_with_seed: Callable[[str, int], nn.Module]
) -> None:
    ours = random_model(arch).state_dict()
    theirs = torchvision_with_seed(arch, 0).state_dict()
    different = [key for key in theirs if not torch.equal(ours[key], theirs[key])]
    assert different == []


@pytest.mark.parametrize("size", [(224, 224), (192, 288)], ids=["224x224", "192x288"])
def test_logits_equal_torchvisions(
    arch: str,
    size: tuple[int, int],
    torchvision_model: ModelOf,
    loaded_model: ModelOf,
    device: str,
) -> None:
    reference, ours = torchvision_model(arch), loaded_model(arch)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = reference.to(device)(x.to(device)).cpu()
        actual = ours.to(device)(x.to(device)).cpu()
    reference.cpu(), ours.cpu()
    assert actual.shape == (2, 1000)
    assert expected.abs().max() > 0.1  # the comparison is not between near-zero numbers
    tolerance = 1e-4 if device == "cpu" else 1e-4 * max(1.0, expected.abs().max().item())
    assert (actual - expected).abs().max().item() < tolerance


def test_stage_activations_are_torchvisions_at_the_named_modules(
    arch: str, torchvision_model: ModelOf, loaded_model: ModelOf
) -> None:
    reference, ours = torchvision_model(arch), loaded_model(arch)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    theirs_modules = dict(reference.named_modules())
    expected = _capture(
        reference, {s: theirs_modules[m] for s, (m, _) in STAGE_TABLE[arch].items()}, x
    )
    actual = _capture(ours, dict(ours.stages), x)
    for stage in STAGE_NAMES:
        torch.testing.assert_close(actual[stage], expected[stage], rtol=0, atol=1e-5)


def test_forward_from_a_stage_gives_the_logits_of_a_full_forward(
    arch: str, random_model: ModelOf
) -> None:
    model = random_model(arch)
    x = torch.randn(1, 3, 80, 112, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        stages = _capture(model, dict(model.stages), x)
        expected = model(x)
        for stage in STAGE_NAMES:
            torch.testing.assert_close(
                model.forward_from(stage, stages[stage]), expected, rtol=0, atol=1e-5
            )


def test_forward_from_an_unknown_stage_names_the_choices(random_model: ModelOf) -> None:
    with pytest.raises(ValueError, match="unknown stage 'C6': choose one of C1, C2, C3, C4, C5"):
        random_model("vgg16").forward_from("C6", torch.zeros(1, 512, 14, 14))


def test_stage_modules_follow_the_design_table(arch: str, random_model: ModelOf) -> None:
    model = random_model(arch)
    assert list(model.stages) == list(STAGE_NAMES)
    assert stage_module_names(model) == {s: m for s, (m, _) in STAGE_TABLE[arch].items()}


def test_stage_shapes_at_224(arch: str, random_model: ModelOf) -> None:
    model = random_model(arch)
    expected = {stage: shape for stage, (_, shape) in STAGE_TABLE[arch].items()}
    assert stage_shapes(model) == expected
    assert _real_shapes(model, 224, 224) == expected


@pytest.mark.parametrize("size", [(64, 96), (320, 160), (97, 131), (33, 250)])
def test_stage_shapes_scale_with_the_input(
    arch: str, size: tuple[int, int], random_model: ModelOf
) -> None:
    model = random_model(arch)
    height, width = size
    expected = {
        stage: (channels, _downsampled(arch, height, stride), _downsampled(arch, width, stride))
        for (stage, (_, (channels, _, _))), stride in zip(
            STAGE_TABLE[arch].items(), STRIDES[arch], strict=True
        )
    }
    assert stage_shapes(model, height, width) == expected
    assert _real_shapes(model, height, width) == expected


def _downsampled(arch: str, side: int, stride: int) -> int:
    """VGG's 2×2 pooling rounds down at each halving; ResNet's padded strided layers round up."""
    for _ in range(stride.bit_length() - 1):
        side = side // 2 if arch == "vgg16" else (side + 1) // 2
    return side


def test_forward_returns_plain_logits(arch: str, random_model: ModelOf) -> None:
    model = random_model(arch)
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 64, 64))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 1000)
    assert not model.training


def test_resnet101_has_23_distinct_blocks_in_stage_4() -> None:
    model = build_model("resnet101", "random")
    assert [len(layer) for layer in (model.layer1, model.layer2, model.layer3, model.layer4)] == [
        3,
        4,
        23,
        3,
    ]
    blocks = list(model.layer3)
    assert len({id(block) for block in blocks}) == 23
    storages = {block.conv2.weight.untyped_storage().data_ptr() for block in blocks}
    assert len(storages) == 23
    all_params = list(model.parameters())
    assert len({p.untyped_storage().data_ptr() for p in all_params}) == len(all_params)


def test_a_loaded_resnet101_keeps_23_distinct_blocks(loaded_model: ModelOf) -> None:
    model = loaded_model("resnet101")
    params = list(model.parameters())
    assert len({p.untyped_storage().data_ptr() for p in params}) == len(params)
    conv2 = [block.conv2.weight for block in model.layer3]
    assert all(not torch.equal(conv2[0], other) for other in conv2[1:])


def test_resnet101_is_v1_5_with_unpadded_1x1_convolutions() -> None:
    model = build_model("resnet101", "random")
    bottlenecks = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(bottlenecks) == 33
    for block in bottlenecks:
        assert block.conv1.kernel_size == (1, 1)
        assert block.conv1.padding == (0, 0)
        assert block.conv3.kernel_size == (1, 1)
        assert block.conv3.padding == (0, 0)
        assert block.conv1.stride == (1, 1)
    first_blocks = [model.layer2[0], model.layer3[0], model.layer4[0]]
    for block in first_blocks:
        assert block.conv2.stride == (2, 2)
        assert block.downsample[0].stride == (2, 2)
        assert block.downsample[0].padding == (0, 0)


def _capture(
    model: nn.Module, modules: dict[str, nn.Module], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    captured: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, output, stage=stage: captured.__setitem__(stage, output.detach().clone())
        )
        for stage, module in modules.items()
    ]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _real_shapes(model: nn.Module, height: int, width: int) -> dict[str, tuple[int, ...]]:
    captured = _capture(model, dict(model.stages), torch.zeros(1, 3, height, width))
    return {stage: tuple(tensor.shape[1:]) for stage, tensor in captured.items()}

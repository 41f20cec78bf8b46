"""Fine-tuned checkpoints (issue 14): any head, one input channel, the layouts training scripts
save, against torchvision's own network built with ``num_classes=N`` on the same weights.

Every checkpoint here is made by the test (tests/finetuned.py) under a fixed seed; the
reference is torchvision's network itself, never ours. Each reference network is built once
per module and let go after its last test; checkpoint files are deleted after each test.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from models import WeightsError, build_model
from tests.finetuned import (
    FIRST_CONV_KEYS,
    HEAD_KEYS,
    LAYOUTS,
    Payload,
    lightning,
    logits_of,
    nested,
    pictures,
    reference_network,
    save,
    state_of,
    with_namespace_hyper_parameters,
)

TOLERANCE = 1e-4
# (arch, N, input channels) → the reference network; built on first use, kept for the module.
CASES = [
    ("resnet101", 1, 3),
    ("resnet101", 2, 3),
    ("resnet101", 5, 3),
    ("resnet101", 37, 3),
    ("resnet101", 2, 1),
]


@pytest.fixture(scope="module")
def reference(
    release_after_last_use: Callable[..., None], request: pytest.FixtureRequest
) -> Callable[[str, int, int], nn.Module]:
    """``(arch, N, channels)`` → torchvision's ResNet101, seeded. One at a time: the tests
    below come grouped by network, and a network asked for again after another is built
    again, identically."""
    cached = functools.lru_cache(maxsize=1)(reference_network)
    release_after_last_use(request.fixturename, cached.cache_clear, each_module=True)
    return cached


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """Where a test writes its checkpoints (0.17–0.53 GB each): emptied after the test."""
    yield tmp_path
    for path in tmp_path.iterdir():
        if path.is_file():
            path.unlink()


def probe(channels: int = 3, size: int = 64) -> torch.Tensor:
    """A normalised picture (smooth, with structure: logits of a few units, as on photos)."""
    return pictures(channels, seed=3, size=size)[:1]


def assert_same_logits(model: nn.Module, theirs: torch.Tensor, channels: int = 3) -> None:
    """``model``'s logits on ``probe(channels)`` are ``theirs`` (torchvision's)."""
    ours = logits_of(model, probe(channels))
    assert ours.shape == theirs.shape
    # Not two networks that say nothing: the logits differ from class to class.
    assert theirs.numel() == 1 or float(theirs.std()) > 1e-4
    assert float((ours - theirs).abs().max()) < TOLERANCE


def refusal(arch: str, path: Path) -> str:
    """Why ``path`` is refused for ``arch``: one line that names the file."""
    with pytest.raises(WeightsError) as error:
        build_model(arch, path, progress=False)
    message = str(error.value)
    assert "\n" not in message
    assert path.name in message
    return message


def without(message: str, path: Path) -> str:
    """The message with the file's path taken out (its folder's name holds digits)."""
    return message.replace(str(path), "<file>")


# --- any head, one or three channels --------------------------------------------------------


def assert_plain_load(
    model: nn.Module, arch: str, num_classes: int, channels: int, keys: list[str]
) -> None:
    """``model`` is ``arch`` with ``num_classes`` outputs and ``channels`` input channels,
    built from a bare state dict with ``keys``."""
    assert model.num_classes == num_classes
    assert model.in_channels == channels
    assert not model.training
    assert model.weights_info.kind == "file"
    assert not model.weights_info.unwrapped  # nothing to remove from a bare state dict
    head = dict(model.named_modules())[HEAD_KEYS[arch]]
    assert head.weight.shape[0] == num_classes
    first = dict(model.named_modules())[FIRST_CONV_KEYS[arch]]
    assert first.weight.shape[1] == channels
    assert sorted(model.state_dict()) == keys


@pytest.mark.parametrize(("arch", "num_classes", "channels"), CASES)
def test_a_plain_state_dict_gives_torchvisions_logits(
    arch: str, num_classes: int, channels: int, reference, folder: Path
) -> None:
    twin = reference(arch, num_classes, channels)
    path = save(folder / f"{arch}-{num_classes}.pth", state_of(twin))
    model = build_model(arch, path, progress=False)
    assert_plain_load(model, arch, num_classes, channels, sorted(twin.state_dict()))
    assert_same_logits(model, logits_of(twin, probe(channels)), channels)


@dataclass
class Written:
    """Checkpoint files of a network written before it was let go, and what it said."""

    files: dict[str, Path]
    logits: torch.Tensor  # on probe()
    keys: list[str]


@pytest.fixture(scope="module")
def vgg16_one_output(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Written]:
    """A one-output VGG16 (a defect detector), saved plain and as a Lightning checkpoint. The
    network (0.53 GB) goes before ours is built: the two are never in memory together."""
    folder = tmp_path_factory.mktemp("vgg16")
    twin = reference_network("vgg16", 1)
    state = state_of(twin)
    files = {
        "plain": save(folder / "vgg16-1.pth", state),
        "lightning": save(folder / "defects.ckpt", lightning(state, "vgg16")),
    }
    written = Written(files, logits_of(twin, probe()), sorted(state))
    del twin, state
    yield written
    for path in files.values():
        path.unlink(missing_ok=True)


def test_a_one_output_vgg16_gives_torchvisions_logits(vgg16_one_output: Written) -> None:
    model = build_model("vgg16", vgg16_one_output.files["plain"], progress=False)
    assert_plain_load(model, "vgg16", 1, 3, vgg16_one_output.keys)
    assert_same_logits(model, vgg16_one_output.logits)


def test_a_vgg16_lightning_checkpoint_loads(vgg16_one_output: Written) -> None:
    model = build_model("vgg16", vgg16_one_output.files["lightning"], progress=False)
    assert (model.num_classes, model.in_channels) == (1, 3)
    assert "model." in model.weights_info.unwrapped
    assert_same_logits(model, vgg16_one_output.logits)


def test_a_vgg16_state_dict_is_refused_for_resnet101(vgg16_one_output: Written) -> None:
    message = refusal("resnet101", vgg16_one_output.files["plain"])
    assert "does not fit" in message or "missing" in message


def test_a_lightning_checkpoint_of_a_grey_two_class_network_loads(reference, folder: Path) -> None:
    twin = reference("resnet101", 2, 1)
    path = save(folder / "xray.ckpt", lightning(state_of(twin), "resnet101"))
    model = build_model("resnet101", path, progress=False)
    assert (model.num_classes, model.in_channels) == (2, 1)
    assert "model." in model.weights_info.unwrapped
    assert_same_logits(model, logits_of(twin, probe(1)), channels=1)


def test_stages_of_a_one_channel_network_keep_their_shapes(reference, folder: Path) -> None:
    twin = reference("resnet101", 2, 1)
    model = build_model("resnet101", save(folder / "grey.pth", state_of(twin)), progress=False)
    seen: dict[str, tuple[int, ...]] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, stage=stage: seen.__setitem__(stage, tuple(out.shape))
        )
        for stage, module in model.stages.items()
    ]
    try:
        logits_of(model, probe(1, 224))
    finally:
        for handle in handles:
            handle.remove()
    assert seen == {
        "C1": (1, 64, 56, 56),
        "C2": (1, 256, 56, 56),
        "C3": (1, 512, 28, 28),
        "C4": (1, 1024, 14, 14),
        "C5": (1, 2048, 7, 7),
    }


# --- the layouts training scripts save ------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_loads_and_says_what_was_removed(layout: str, reference, folder: Path) -> None:
    suffix, make, removed = LAYOUTS[layout]
    twin = reference("resnet101", 5, 3)
    path = save(folder / f"ft5-{layout}{suffix}", make(state_of(twin), "resnet101"))
    model = build_model("resnet101", path, progress=False)
    assert model.num_classes == 5
    assert model.in_channels == 3
    unwrapped = model.weights_info.unwrapped
    if removed is None:
        assert not unwrapped
    else:
        assert isinstance(unwrapped, str)
        assert "\n" not in unwrapped
        for word in removed:
            assert word in unwrapped, f"{word!r} not in {unwrapped!r}"
    assert_same_logits(model, logits_of(twin, probe()))


def test_values_stored_beside_the_weights_are_kept_as_extras(reference, folder: Path) -> None:
    twin = reference("resnet101", 5, 3)
    extras = {
        "classes": ["akiec", "bcc", "bkl", "mel", "nv"],
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
        "input_size": 160,
    }
    path = save(folder / "with-extras.pth", nested(state_of(twin), "resnet101", "model", extras))
    model = build_model("resnet101", path, progress=False)
    assert model.weights_info.extras == extras
    assert_same_logits(model, logits_of(twin, probe()))


def test_a_bfloat16_safetensors_checkpoint_runs_in_float32(reference, folder: Path) -> None:
    import torchvision

    twin = reference("resnet101", 5, 3)
    half = {k: v.bfloat16() if v.is_floating_point() else v for k, v in state_of(twin).items()}
    model = build_model("resnet101", save(folder / "bf16.safetensors", half), progress=False)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    with torch.device("meta"):
        rounded = torchvision.models.resnet101(num_classes=5)
    rounded.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in half.items()}, assign=True
    )
    assert_same_logits(model, logits_of(rounded.eval(), probe()))


def test_a_bare_state_dict_has_no_extras(reference, folder: Path) -> None:
    path = save(folder / "bare.pth", state_of(reference("resnet101", 5, 3)))
    assert build_model("resnet101", path, progress=False).weights_info.extras == {}


# --- built without a checkpoint --------------------------------------------------------------


def test_random_weights_with_a_given_head_and_channels() -> None:
    model = build_model("resnet101", "random", num_classes=5, in_channels=1)
    assert (model.num_classes, model.in_channels) == (5, 1)
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert logits_of(model, probe(1)).shape == (1, 5)


def test_random_vgg16_with_a_given_head_and_channels() -> None:
    model = build_model("vgg16", "random", num_classes=2, in_channels=1)
    assert (model.num_classes, model.in_channels) == (2, 1)
    assert model.features[0].weight.shape == (64, 1, 3, 3)
    assert model.classifier[6].weight.shape == (2, 4096)


def test_random_weights_default_to_imagenets_shape() -> None:
    model = build_model("resnet101", "random")
    assert (model.num_classes, model.in_channels) == (1000, 3)


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [2, 4])
def test_other_input_channel_counts_are_refused_naming_the_number(
    channels: int, reference, folder: Path
) -> None:
    state = state_of(reference("resnet101", 5, 3))
    state["conv1.weight"] = torch.randn(64, channels, 7, 7, generator=torch.Generator())
    path = save(folder / "channels.pth", state)
    message = without(refusal("resnet101", path), path)
    assert "channel" in message
    assert re.search(rf"\b{channels}\b", message), message


def test_a_prefix_on_some_keys_only_is_refused_naming_the_misfits(reference, folder: Path) -> None:
    state = state_of(reference("resnet101", 5, 3))
    mixed = {(f"model.{key}" if key.startswith("layer4.") else key): v for key, v in state.items()}
    path = save(folder / "mixed.pth", mixed)
    message = refusal("resnet101", path)
    # The first misfits in either spelling: missing layer4.0.conv1.weight, unexpected
    # model.layer4.0.conv1.weight.
    assert "layer4.0.conv1.weight" in message


def test_a_backbone_that_does_not_fit_is_refused_naming_the_misfits(folder: Path) -> None:
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        resnet18 = torchvision.models.resnet18(num_classes=5)
    path = save(folder / "resnet18.pth", resnet18.state_dict())
    message = refusal("resnet101", path)
    assert "layer1.0.conv" in message  # conv1's 3×3 shape in resnet18, conv3 missing


def test_a_head_whose_bias_does_not_match_its_weight_is_refused(reference, folder: Path) -> None:
    state = state_of(reference("resnet101", 5, 3))
    state["fc.bias"] = torch.zeros(4)
    message = refusal("resnet101", save(folder / "torn-head.pth", state))
    assert "fc.bias" in message


def test_a_head_on_other_features_is_refused(reference, folder: Path) -> None:
    state = state_of(reference("resnet101", 5, 3))
    state["fc.weight"] = torch.zeros(5, 1024)
    message = refusal("resnet101", save(folder / "narrow-head.pth", state))
    assert "fc.weight" in message


def test_a_head_without_classes_is_refused(reference, folder: Path) -> None:
    state = state_of(reference("resnet101", 5, 3))
    state["fc.weight"], state["fc.bias"] = torch.zeros(0, 2048), torch.zeros(0)
    refusal("resnet101", save(folder / "no-classes.pth", state))


def test_class_instances_beside_the_weights_are_still_refused(reference, folder: Path) -> None:
    path = save(
        folder / "namespace.ckpt",
        with_namespace_hyper_parameters(state_of(reference("resnet101", 5, 3))),
    )
    message = refusal("resnet101", path)
    assert "argparse.Namespace" in message


def test_a_payload_under_a_training_key_never_runs(reference, folder: Path) -> None:
    marker = folder / "payload-ran"
    checkpoint = nested(state_of(reference("resnet101", 5, 3)), "resnet101")
    checkpoint["scheduler"] = Payload(f"open({str(marker)!r}, 'w').close()")
    path = save(folder / "payload.pth", checkpoint)
    refusal("resnet101", path)
    assert not marker.exists()

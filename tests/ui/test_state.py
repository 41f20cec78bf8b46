"""The window's Qt-free state: its rules, its events, and that it stands without Qt."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from visualizer.ui.jobs import ModelSpec, Picture, ViewOptions
from visualizer.ui.state import Requests, WindowState

QT_MODULES = ("PySide6", "shiboken6", "pyqtgraph")


def picture(key: int) -> Picture:
    return Picture(key, f"{key}.png", f"/images/{key}.png", None, np.zeros((4, 4, 3), np.uint8))


def test_the_state_imports_neither_qt_nor_torch(modules_after: Callable[[str], set[str]]) -> None:
    loaded = modules_after("import visualizer.ui.state")
    assert "visualizer.ui.state" in loaded
    assert not {name for name in loaded if name.split(".")[0] in {*QT_MODULES, "torch"}}


def test_each_field_has_an_event_that_fires_on_a_change_only() -> None:
    state = WindowState(ModelSpec("resnet101", "random", "cpu"))
    seen: list[tuple[str, object]] = []

    def recorder(name: str) -> Callable[[object], None]:
        return lambda value: seen.append((name, value))

    for name in ("spec", "options", "compare", "current"):
        getattr(state.events, name).connect(recorder(name))
    state.spec = ModelSpec("resnet101", "random", "cpu")  # equal: no event
    state.spec = state.changed_spec(model="vgg16")
    state.options = dataclasses.replace(state.options, stage="C3")
    state.options = dataclasses.replace(state.options, stage="C3")
    state.compare = True
    state.current = 7
    assert seen == [
        ("spec", ModelSpec("vgg16", "random", "cpu")),
        ("options", ViewOptions(stage="C3")),
        ("compare", True),
        ("current", 7),
    ]


def test_pictures_added_are_announced() -> None:
    state = WindowState(ModelSpec("resnet101"))
    added: list[int] = []
    state.picture_added.connect(lambda p: added.append(p.key))
    state.add_picture(picture(3))
    state.add_picture(picture(5))
    assert added == [3, 5]
    assert list(state.pictures) == [3, 5]


def test_another_network_drops_a_weights_file_but_keeps_named_weights() -> None:
    state = WindowState(ModelSpec("resnet101", "/checkpoints/mine.pth", "cpu"))
    assert state.changed_spec(model="vgg16") == ModelSpec("vgg16", "imagenet", "cpu")
    assert state.changed_spec(device="cuda") == ModelSpec(
        "resnet101", "/checkpoints/mine.pth", "cuda"
    )
    state.spec = ModelSpec("resnet101", "random", "cpu")
    assert state.changed_spec(model="vgg16") == ModelSpec("vgg16", "random", "cpu")


def test_compare_mode_pairs_both_networks_and_leads_with_the_one_chosen() -> None:
    # By default the other architecture, with ImageNet weights; the checkpoint stays.
    state = WindowState(ModelSpec("resnet101", "/checkpoints/mine.pth", "cuda"))
    assert state.compare_specs() == (
        ModelSpec("vgg16", "imagenet", "cuda"),
        ModelSpec("resnet101", "/checkpoints/mine.pth", "cuda"),
    )
    assert state.lead() == ModelSpec("resnet101", "/checkpoints/mine.pth", "cuda")
    assert state.side_labels() == ("VGG16", "ResNet101 · mine.pth")
    state.spec = ModelSpec("vgg16", "random", "cpu")
    assert state.compare_specs()[1] == ModelSpec("resnet101", "random", "cpu")
    assert state.lead() == ModelSpec("vgg16", "random", "cpu")


def test_compare_mode_pairs_any_two_networks_told_apart() -> None:
    """The network chosen on the left, the other one on the right, named so as to tell them
    apart even when both are ResNet101s."""
    fine_tuned = ModelSpec("resnet101", "/checkpoints/ft5.pth", "cpu", labels="/c/labels.txt")
    state = WindowState(fine_tuned, other=ModelSpec("resnet101", "imagenet", "cpu"))
    assert state.compare_specs() == (fine_tuned, ModelSpec("resnet101", "imagenet", "cpu"))
    assert state.lead() == fine_tuned
    assert state.side_labels() == ("ResNet101 · ft5.pth", "ResNet101 · ImageNet")
    state.spec = ModelSpec("resnet101", "random", "cpu")
    assert state.side_labels() == ("ResNet101 · random", "ResNet101 · ImageNet")
    state.other = ModelSpec("resnet101", "random", "cpu")
    assert state.side_labels() == ("ResNet101 · random (1)", "ResNet101 · random (2)")


def test_a_network_that_fails_falls_back_to_the_last_that_worked() -> None:
    requests = Requests()
    broken = ModelSpec("resnet101", "/checkpoints/broken.pth", "cuda")
    # At the start nothing has worked: ImageNet weights on the best device.
    assert requests.fallback(broken) == ModelSpec("resnet101", "imagenet", "auto")
    assert requests.fallback(ModelSpec("resnet101", "imagenet", "auto")) is None
    requests.good_spec = ModelSpec("vgg16", "random", "cpu")
    assert requests.fallback(broken) == ModelSpec("vgg16", "random", "cpu")
    assert requests.fallback(requests.good_spec) is None


def test_a_file_read_is_no_longer_loading() -> None:
    requests = Requests(loading={"/a.png": 1, "/b.png": 2})
    requests.forget_loading(1)
    assert requests.loading == {"/b.png": 2}

"""The next window opens with the network last used — a fine-tuned one too — unless the command
line names one, a screenshot is asked for, or its files have gone since."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from PySide6.QtCore import QSettings

from visualizer.networks import NetworkSpec

CHELSEA = str(Path(__file__).resolve().parents[2] / "assets" / "samples" / "chelsea.jpg")


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory) -> NetworkSpec:
    """A 3-class ResNet101 with its labels and a crop of its own."""
    folder = tmp_path_factory.mktemp("fine-tuned")
    torch.manual_seed(3)
    torch.save(torchvision.models.resnet101(num_classes=3).state_dict(), folder / "ft3.pth")
    (folder / "labels.txt").write_text("cat\ndog\nfox\n")
    return NetworkSpec("resnet101", str(folder / "ft3.pth"), str(folder / "labels.txt"), crop=192)


def test_the_next_window_opens_with_the_network_last_used(
    open_window, shown_after, fine_tuned: NetworkSpec, settings_path: str, tmp_path: Path
) -> None:
    from visualizer.ui.app import create_window

    first = open_window([CHELSEA])
    data = shown_after(first, lambda: first.set_network(fine_tuned))
    assert sorted(label for _, label, _ in data.topk) == ["cat", "dog", "fox"]
    assert data.view.shape[:2] == (192, 192)
    first.close()

    def opened(**given: object):
        settings = QSettings(settings_path, QSettings.Format.IniFormat)
        window = create_window([CHELSEA], device="cpu", settings=settings, **given)
        network = window.spec.network
        window.close()  # before its network loads: nothing to wait for
        return network

    assert opened() == fine_tuned
    # What the command line names wins; a screenshot shows what the command line says.
    assert opened(weights="random") == NetworkSpec("resnet101", "random")
    assert opened(model="vgg16") == NetworkSpec("vgg16", "imagenet")
    assert opened(remembered=False) == NetworkSpec("resnet101", "imagenet")
    # A weights file that has gone since: ImageNet's, not a failure at start.
    moved = tmp_path / "moved.pth"
    Path(fine_tuned.weights).rename(moved)
    try:
        assert opened() == NetworkSpec("resnet101", "imagenet")
    finally:
        moved.rename(fine_tuned.weights)

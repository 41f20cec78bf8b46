"""``fmviz export`` and ``fmviz info`` with networks of one's own (issue 14): fine-tuned heads of
5, 2 and 1 classes, a grey-scale ResNet101, labels files, their own preprocessing, and a
comparison of an ImageNet-like ResNet101 with a fine-tuned one.

The checkpoints are made here: torchvision's own ``resnet101`` / ``vgg16`` built with
``num_classes=N`` (and a one-channel first convolution for the grey model) under
``torch.manual_seed(0)``, saved with ``torch.save``. The class each export must explain is
worked out here too, independently of fmviz: torchvision's network on torchvision's own
transform of the same picture (for the grey model: Pillow's ``convert("L")`` and
torchvision's transforms written out). Each checkpoint is built once for the module; one
VGG16 at most.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms

from visualizer.cli import main

FT5_LABELS = ("nevus", "melanoma", "keratosis", "carcinoma", "dermatofibroma")
VGG2_LABELS = {"good": 0, "scratched": 1}  # class_to_idx, as torchvision's ImageFolder makes it
GREY_LABELS = ("normal", "effusion", "nodule")
BINARY_LABELS = ["defect"]  # stored in the checkpoint, under "class_names"


class Run(NamedTuple):
    """What one in-process ``fmviz`` run gave: exit status, stdout, stderr."""

    status: int
    out: str
    err: str


def run_fmviz(*words: object) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*map(str, words)])
    return Run(status, out.getvalue(), err.getvalue())


def write_photo(path: Path, seed: int = 3) -> Path:
    """A JPEG with structure in it (ramps, a disc, noise), in which colour matters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:150, 0:200]
    pixels = np.stack([255 * x / 199, 255 * y / 149, 128 + 80 * np.sin(x / 6)], axis=-1)
    pixels[((x - 120) ** 2 + (y - 60) ** 2) < 900] = (250, 220, 40)
    pixels += rng.normal(0, 10, pixels.shape)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path, quality=92)
    return path


def torchvision_network(arch: str, classes: int, channels: int = 3) -> nn.Module:
    """torchvision's ``arch`` with ``classes`` outputs (and ``channels`` input channels),
    initialised under ``torch.manual_seed(0)`` (the global generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = getattr(torchvision.models, arch)(num_classes=classes)
        if channels == 1:
            if arch == "resnet101":
                network.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
            else:
                network.features[0] = nn.Conv2d(1, 64, 3, padding=1)
    return network.eval()


def imagenet_input(arch: str, photo: Path) -> torch.Tensor:
    """torchvision's own evaluation transform of the architecture's ImageNet weights."""
    weights = {
        "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V2,
        "vgg16": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
    }[arch]
    with Image.open(photo) as image:
        return weights.transforms()(image.convert("RGB")).unsqueeze(0)


def grey_input(photo: Path, mean: float, std: float) -> torch.Tensor:
    """ResNet101's transform for one channel: ``convert("L")``, shorter side to 232
    (bilinear, antialiased), centre crop 224, normalise with one mean and std."""
    pipeline = transforms.Compose(
        [
            transforms.Resize(232, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([mean], [std]),
        ]
    )
    with Image.open(photo) as image:
        return pipeline(image.convert("L")).unsqueeze(0)


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    logits: torch.Tensor  # torchvision's, for the module's photo

    @property
    def top1(self) -> int:
        return int(torch.argmax(self.logits))


class Folder(NamedTuple):
    root: Path
    photo: Path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    root = tmp_path_factory.mktemp("finetuned")
    (root / "labels.txt").write_text("\n".join(FT5_LABELS) + "\n")
    (root / "wrong.txt").write_text("\n".join(FT5_LABELS[:4]) + "\n")
    (root / "vgg2.json").write_text(json.dumps(VGG2_LABELS))
    (root / "grey.csv").write_text(
        "index,name\n" + "".join(f"{i},{name}\n" for i, name in enumerate(GREY_LABELS))
    )
    return Folder(root, write_photo(root / "photo.jpg"))


@pytest.fixture(scope="module")
def checkpoint(folder: Folder) -> Iterator[functools._lru_cache_wrapper]:
    """``(name) → Checkpoint``, each made on first use and kept for the module:

    - ``ft5``: ResNet101, 5 classes, a bare state dict;
    - ``vgg2``: VGG16, 2 classes, a bare state dict;
    - ``grey``: ResNet101, 1 input channel, 3 classes;
    - ``binary``: ResNet101, one output, nested under ``model`` beside ``class_names``.
    """

    @functools.cache
    def make(name: str) -> Checkpoint:
        arch, classes, channels = {
            "ft5": ("resnet101", 5, 3),
            "vgg2": ("vgg16", 2, 3),
            "grey": ("resnet101", 3, 1),
            "binary": ("resnet101", 1, 3),
        }[name]
        network = torchvision_network(arch, classes, channels)
        if channels == 1:
            x = grey_input(folder.photo, 0.5, 0.25)
        else:
            x = imagenet_input(arch, folder.photo)
        with torch.no_grad():
            logits = network(x)[0]
        state = network.state_dict()
        saved = {"model": state, "class_names": BINARY_LABELS} if name == "binary" else state
        path = folder.root / f"{name}.pth"
        torch.save(saved, path)
        del network, state, saved
        if classes > 1:  # the top-1 must not hang on rounding
            top = torch.topk(logits, 2).values
            assert float(top[0] - top[1]) > 1e-3, f"{name}: pick another photo"
        return Checkpoint(path, logits)

    yield make
    make.cache_clear()


def overlay_text(out: Path, name: str) -> dict[str, str]:
    with Image.open(out / name) as picture:
        return dict(picture.text)


def files_in(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def single_names(stem: str, model: str, stage: str = "C5") -> set[str]:
    """What DESIGN §4 promises for one image and one network, one stage."""
    return {
        f"{stem}_{model}_{stage}.png",
        f"{stem}_{model}_gradcam_{stage}.png",
        f"{stem}_{model}_timings.csv",
    }


# --- a 5-class ResNet101 with a labels file ---------------------------------------------------


@pytest.fixture(scope="module")
def ft5_export(folder: Folder, checkpoint, device: str) -> tuple[Run, Path]:
    out = folder.root / "ft5-out"
    words = ["export", folder.photo, "--weights", checkpoint("ft5").path]
    words += ["--labels", folder.root / "labels.txt", "--out", out, "--stages", "C5"]
    return run_fmviz(*words, "--annotate", "--device", device), out


def test_a_5_class_resnet101_explains_its_own_top1_with_its_label(
    ft5_export: tuple[Run, Path], checkpoint
) -> None:
    run, out = ft5_export
    assert run.status == 0, run.err
    assert run.err == ""
    top1 = checkpoint("ft5").top1
    text = overlay_text(out, "photo_resnet101_gradcam_C5.png")
    assert text["target"] == f"{top1} {FT5_LABELS[top1]}"


def test_the_overlay_metadata_says_classes_labels_and_preprocessing(
    ft5_export: tuple[Run, Path],
) -> None:
    _, out = ft5_export
    for name in ("photo_resnet101_gradcam_C5.png", "photo_resnet101_C5.png"):
        text = overlay_text(out, name)
        assert text["classes"] == "5"
        assert text["labels"] == "labels.txt"
        assert text["scores"] == "softmax over the 5 classes"
        assert text["input"] == "3×224×224"
        # ResNet101's ImageNet transform, as torchvision publishes it: what was used.
        assert "resize shorter side to 232" in text["preprocessing"]
        assert "centre crop 224×224" in text["preprocessing"]
        assert "mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225)" in text["preprocessing"]


def test_the_annotated_figures_show_the_custom_label(
    ft5_export: tuple[Run, Path], checkpoint
) -> None:
    _, out = ft5_export
    top1 = checkpoint("ft5").top1
    overlay = overlay_text(out, "photo_resnet101_gradcam_C5_annotated.png")
    assert overlay["target"] == f"{top1} {FT5_LABELS[top1]}"
    assert overlay["caption"].startswith(f"Class {top1} {FT5_LABELS[top1]}: probability ")
    assert "rank 1 of 5" in overlay["caption"]
    assert "5 classes, labels: labels.txt" in overlay["caption"]
    grid = overlay_text(out, "photo_resnet101_C5_annotated.png")
    assert f"Top-1: {top1} {FT5_LABELS[top1]} (" in grid["caption"]


def test_target_is_checked_against_the_networks_classes(
    folder: Folder, checkpoint, device: str
) -> None:
    out = folder.root / "target-7"
    words = ["export", folder.photo, "--weights", checkpoint("ft5").path, "--target", "7"]
    run = run_fmviz(*words, "--out", out, "--device", device)
    assert run.status == 1
    assert run.err == "error: --target 7: the network has 5 classes (0–4)\n"
    assert not out.exists()


def test_another_target_of_5_is_explained_with_its_label(
    folder: Folder, checkpoint, device: str
) -> None:
    target = (checkpoint("ft5").top1 + 1) % 5  # not the class it would explain anyway
    out = folder.root / "target-other"
    words = ["export", folder.photo, "--weights", checkpoint("ft5").path, "--target", target]
    words += ["--labels", folder.root / "labels.txt", "--cam-stage", "C4", "--stages", "C1"]
    run = run_fmviz(*words, "--out", out, "--device", device)
    assert run.status == 0, run.err
    text = overlay_text(out, "photo_resnet101_gradcam_C4.png")
    assert text["target"] == f"{target} {FT5_LABELS[target]}"


def test_labels_of_the_wrong_count_are_one_error_naming_both_numbers(
    folder: Folder, checkpoint, device: str
) -> None:
    out = folder.root / "wrong-count"
    words = ["export", folder.photo, "--weights", checkpoint("ft5").path]
    run = run_fmviz(*words, "--labels", folder.root / "wrong.txt", "--out", out, "--device", device)
    assert run.status == 1
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: ")
    assert "wrong.txt" in lines[0]
    assert "4" in lines[0]
    assert "5" in lines[0]
    assert "Traceback" not in run.err
    assert not out.exists()


# --- a 2-class VGG16, labels as class_to_idx ---------------------------------------------------


def test_a_2_class_vgg16_explains_its_own_top1_with_its_label(
    folder: Folder, checkpoint, device: str
) -> None:
    made = checkpoint("vgg2")
    out = folder.root / "vgg2-out"
    # No --model: the checkpoint's keys say it is a VGG16.
    words = ["export", folder.photo, "--weights", made.path]
    words += ["--labels", folder.root / "vgg2.json", "--stages", "C5", "--out", out]
    run = run_fmviz(*words, "--device", device)
    assert run.status == 0, run.err
    assert files_in(out) == single_names("photo", "vgg16")
    names = sorted(VGG2_LABELS, key=VGG2_LABELS.__getitem__)
    text = overlay_text(out, "photo_vgg16_gradcam_C5.png")
    assert text["target"] == f"{made.top1} {names[made.top1]}"
    assert text["classes"] == "2"
    assert text["labels"] == "vgg2.json"
    assert "resize shorter side to 256" in text["preprocessing"]  # VGG16's own transform


# --- a grey-scale ResNet101 with its own mean and std ------------------------------------------


def test_a_grey_resnet101_with_its_own_mean_and_std(
    folder: Folder, checkpoint, device: str
) -> None:
    made = checkpoint("grey")
    out = folder.root / "grey-out"
    words = ["export", folder.photo, "--weights", made.path, "--mean", "0.5", "--std", "0.25"]
    words += ["--labels", folder.root / "grey.csv", "--stages", "C5", "--out", out]
    run = run_fmviz(*words, "--device", device)
    assert run.status == 0, run.err
    text = overlay_text(out, "photo_resnet101_gradcam_C5.png")
    assert text["target"] == f"{made.top1} {GREY_LABELS[made.top1]}"
    assert text["input"] == "1×224×224"
    assert text["classes"] == "3"
    assert text["labels"] == "grey.csv"
    assert "grey-scale" in text["preprocessing"]
    assert "mean (0.5) std (0.25)" in text["preprocessing"]
    with Image.open(out / "photo_resnet101_gradcam_C5.png") as picture:
        assert picture.mode == "RGB"  # the overlay over the grey input, as RGB
        assert picture.size == (224, 224)


# --- a one-output head, labels stored in the checkpoint ----------------------------------------


def test_a_one_output_head_says_its_probability_is_a_sigmoid(
    folder: Folder, checkpoint, device: str
) -> None:
    made = checkpoint("binary")
    out = folder.root / "binary-out"
    words = ["export", folder.photo, "--weights", made.path, "--stages", "C5", "--out", out]
    run = run_fmviz(*words, "--annotate", "--device", device)
    assert run.status == 0, run.err
    text = overlay_text(out, "photo_resnet101_gradcam_C5.png")
    assert text["target"] == "0 defect"
    assert text["classes"] == "1"
    assert text["labels"] == "the checkpoint ('class_names')"
    assert text["scores"] == "sigmoid of the one output (a binary classifier's probability)"
    figure = overlay_text(out, "photo_resnet101_gradcam_C5_annotated.png")
    probability = float(torch.sigmoid(made.logits[0])) * 100
    shown = f"{probability:.1f} %" if probability >= 0.1 else f"{probability:.2g} %"
    assert figure["caption"].startswith(
        f"Class 0 defect: probability {shown} (sigmoid of the one output)"
    )


# --- an ImageNet-like ResNet101 against a 5-class one ------------------------------------------


@pytest.fixture(scope="module")
def compared(folder: Folder, checkpoint, device: str) -> tuple[Run, Path]:
    out = folder.root / "compare-out"
    words = ["export", folder.photo, "--weights", "random", "--target", "3"]
    words += ["--compare-weights", checkpoint("ft5").path]
    words += ["--compare-labels", folder.root / "labels.txt", "--stages", "C5", "--out", out]
    return run_fmviz(*words, "--device", device), out


@pytest.fixture(scope="module")
def random_top1(networks, folder: Folder) -> int:
    """The top-1 of the random ResNet101 (fmviz's ``"random"`` weights), by torchvision's
    network holding the same weights."""
    twin = torchvision.models.resnet101()
    twin.load_state_dict(networks.model("resnet101").state_dict())
    with torch.no_grad():
        return int(torch.argmax(twin.eval()(imagenet_input("resnet101", folder.photo))))


def test_compare_two_resnet101s_writes_distinct_names(compared: tuple[Run, Path]) -> None:
    run, out = compared
    assert run.status == 0, run.err
    assert run.err == ""
    assert files_in(out) == (
        single_names("photo", "resnet101-random")
        | single_names("photo", "resnet101-ft5")
        | {"photo_compare_C5.png", "photo_compare_timings.csv"}
    )
    assert run.out.startswith("exported 1 of 1 images (8 files)")


def test_each_side_explains_its_own_class(
    compared: tuple[Run, Path], checkpoint, random_top1: int, networks
) -> None:
    """Different class lists: --target is the lead's (--model's) class; the fine-tuned side
    explains its own top-1, with its own label."""
    _, out = compared
    imagenet = networks.analyzer("resnet101").categories
    top1 = checkpoint("ft5").top1
    assert overlay_text(out, "photo_resnet101-random_gradcam_C5.png")["target"] == (
        f"3 {imagenet[3]}"
    )
    ft5 = overlay_text(out, "photo_resnet101-ft5_gradcam_C5.png")
    assert ft5["target"] == f"{top1} {FT5_LABELS[top1]}"
    assert ft5["classes"] == "5"
    text = overlay_text(out, "photo_compare_C5.png")
    assert text["target"] == f"3 {imagenet[3]} | {top1} {FT5_LABELS[top1]}"
    assert text["explained"] == "each network its own class (different class lists)"
    assert text["note"].startswith("The networks have different classes: each Grad-CAM")
    assert text["model"] == "ResNet101 · random | ResNet101 · ft5.pth"
    assert text["ResNet101 · ft5.pth class"] == (
        f"{top1} {FT5_LABELS[top1]}: {ft5_percent(checkpoint)}, rank 1 of 5"
    )
    assert text["classes"] == "1000 (ImageNet (torchvision)) | 5 (labels.txt)"
    assert random_top1 != 3  # --target, not the random network's own top-1


def ft5_percent(checkpoint) -> str:
    probability = float(torch.softmax(checkpoint("ft5").logits.double(), 0).max()) * 100
    return f"{probability:.1f} %" if probability >= 0.1 else f"{probability:.2g} %"


def test_the_comparison_csv_names_both_networks(compared: tuple[Run, Path]) -> None:
    _, out = compared
    with (out / "photo_compare_timings.csv").open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == [
        "stage",
        *(f"resnet101-random_{what}" for what in ("shape", "ms", "parameters")),
        *(f"resnet101-ft5_{what}" for what in ("shape", "ms", "parameters")),
    ]
    head = next(row for row in rows if row[0] == "head")
    assert (head[1], head[4]) == ("1000", "5")


def test_without_target_the_other_side_explains_its_top1_too(
    folder: Folder, checkpoint, random_top1: int, networks, device: str
) -> None:
    """--compare with a checkpoint on the left (once refused): without --target each side
    explains its own top-1."""
    out = folder.root / "compare-vgg"
    words = ["export", folder.photo, "--weights", checkpoint("ft5").path, "--compare"]
    words += ["--labels", folder.root / "labels.txt", "--compare-model", "resnet101"]
    words += ["--compare-weights", "random", "--stages", "C5", "--out", out]
    run = run_fmviz(*words, "--device", device)
    assert run.status == 0, run.err
    top1 = checkpoint("ft5").top1
    imagenet = networks.analyzer("resnet101").categories
    text = overlay_text(out, "photo_compare_C5.png")
    assert text["target"] == f"{top1} {FT5_LABELS[top1]} | {random_top1} {imagenet[random_top1]}"
    assert text["model"] == "ResNet101 · ft5.pth | ResNet101 · random"


# --- fmviz info ----------------------------------------------------------------------------


def test_info_of_a_5_class_checkpoint(folder: Folder, checkpoint, no_network: list) -> None:
    path = checkpoint("ft5").path
    words = ["info", "--model", "resnet101", "--weights", path]
    run = run_fmviz(*words, "--labels", folder.root / "labels.txt")
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == f"resnet101: {42_510_405:,} parameters"  # 44,549,160 less 995 heads
    assert lines[1] == f"  weights: {path}"
    assert lines[2] == "  classes: 5 (softmax); labels: labels.txt (nevus, melanoma, keratosis, …)"
    assert lines[3] == "  input: 3 channels (RGB), 224×224"
    assert lines[4].startswith("  preprocessing: resize shorter side to 232")
    assert "  C5    layer4       2048×7×7" in lines
    assert no_network == []


def test_info_of_a_checkpoint_shows_the_architecture_it_fits(checkpoint, no_network) -> None:
    run = run_fmviz("info", "--weights", checkpoint("vgg2").path)
    assert run.status == 0, run.err
    assert run.err == ""
    assert run.out.startswith("vgg16: ")
    assert "resnet101" not in run.out
    assert run.out.splitlines()[2].startswith("  classes: 2 (softmax); ")
    assert no_network == []


def test_info_says_what_was_unwrapped(checkpoint, folder: Folder, no_network) -> None:
    state = torch.load(checkpoint("ft5").path, weights_only=True)
    lightning = folder.root / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}, lightning)
    run = run_fmviz("info", "--weights", lightning)
    assert run.status == 0, run.err
    weights_line = f"  weights: {lightning} (under 'state_dict', prefix 'model.' removed)"
    assert run.out.splitlines()[:2] == [f"resnet101: {42_510_405:,} parameters", weights_line]


def test_info_of_a_grey_checkpoint_with_its_own_values(checkpoint, no_network: list) -> None:
    words = ["info", "--model", "resnet101", "--weights", checkpoint("grey").path]
    run = run_fmviz(*words, "--mean", "0.5", "--std", "0.25", "--crop", "160")
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[2] == "  classes: 3 (softmax); labels: none: numbered (class 0, class 1, class 2)"
    assert lines[3] == "  input: 1 channel (grey-scale), 160×160"
    assert "grey-scale" in lines[4]
    assert "centre crop 160×160" in lines[4]
    assert "mean (0.5) std (0.25)" in lines[4]
    assert no_network == []


def test_info_of_a_one_output_checkpoint_with_stored_labels(checkpoint, no_network: list) -> None:
    run = run_fmviz("info", "--model", "resnet101", "--weights", checkpoint("binary").path)
    assert run.status == 0, run.err
    assert run.out.splitlines()[2] == (
        "  classes: 1 (one output, sigmoid probability); "
        "labels: the checkpoint ('class_names') (defect)"
    )


def test_info_with_labels_of_the_wrong_count_is_one_error(
    folder: Folder, checkpoint, no_network: list
) -> None:
    words = ["info", "--model", "resnet101", "--weights", checkpoint("ft5").path]
    run = run_fmviz(*words, "--labels", folder.root / "wrong.txt")
    assert run.status == 1
    assert run.out == ""
    [line] = run.err.splitlines()
    assert line.startswith("error: ")
    assert "4" in line
    assert "5" in line

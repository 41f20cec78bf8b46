"""The user's own network in the window: the Network dialog, a fine-tuned checkpoint with its
labels (top-k, class search, Grad-CAM title, exports, status bar), a one-output network, any
two networks compared (two ResNet101s with different classes), and the settings that remember
them.

The checkpoints are torchvision's ResNet101 with a replaced head under a fixed seed, built
once for the module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialog, QFileDialog

from visualizer.networks import NetworkSpec

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
LABELS = ("melanoma", "nevus", "basal cell carcinoma", "actinic keratosis", "benign keratosis")


@dataclass(frozen=True)
class Checkpoints:
    five: str  # a 5-class ResNet101, a bare state dict
    labels: str  # its five labels, one a line
    four_labels: str  # a labels file of 4 names: does not fit
    binary: str  # a 1-output ResNet101 under "state_dict" with "model." prefixes and labels


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Checkpoints:
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    five = torchvision.models.resnet101(num_classes=5)
    torch.save(five.state_dict(), folder / "ft5.pth")
    torch.manual_seed(1)
    binary = torchvision.models.resnet101(num_classes=1).state_dict()
    nested = {
        "state_dict": {f"model.{key}": value for key, value in binary.items()},
        "epoch": 7,
        "classes": ["defect"],
    }
    torch.save(nested, folder / "binary.ckpt")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (folder / "four.txt").write_text("\n".join(LABELS[:4]) + "\n")
    return Checkpoints(
        str(folder / "ft5.pth"),
        str(folder / "labels.txt"),
        str(folder / "four.txt"),
        str(folder / "binary.ckpt"),
    )


def answering_network(monkeypatch: pytest.MonkeyPatch, window, network) -> list[tuple]:
    """The window's Network dialog answers ``network``; returns what it was filled with."""
    asked: list[tuple] = []

    def ask(title: str, spec: NetworkSpec, **_kwargs: object) -> NetworkSpec | None:
        asked.append((title, spec))
        return network

    monkeypatch.setattr(window, "ask_network", ask)
    return asked


def rows(predictions) -> list[str]:
    return [predictions.item(row).text() for row in range(predictions.count())]


def test_the_network_dialog_builds_a_spec(qtbot, checkpoints: Checkpoints) -> None:
    from visualizer.ui.network_dialog import NetworkDialog

    dialog = NetworkDialog(NetworkSpec("vgg16"), title="Network")
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Network"
    assert dialog.mean.placeholderText().startswith("default: 0.485, 0.456, 0.406")
    assert "256" in dialog.resize_.placeholderText()  # VGG16's ImageNet transform
    dialog.architecture.setCurrentIndex(dialog.architecture.findData("resnet101"))
    assert "232" in dialog.resize_.placeholderText()  # ResNet101's
    dialog.weights.setCurrentText(checkpoints.five)
    dialog.labels.setText(checkpoints.labels)
    dialog.mean.setText("0.5, 0.4,0.3")
    dialog.std.setText("0.25")
    dialog.resize_.setText("300")
    dialog.crop.setText("256")

    dialog.crop.setText("7")  # too small: said, and the dialog stays open
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.problem.isVisibleTo(dialog)
    assert dialog.problem.text().startswith("Crop: 7: must be 8 to 4096 pixels")
    dialog.mean.setText("0.5,x")
    dialog.crop.setText("256")
    dialog.accept()
    assert dialog.problem.text() == "Mean: '0.5,x': 'x' is not a number"
    dialog.mean.setText("0.5, 0.4,0.3")

    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.network() == NetworkSpec(
        "resnet101", checkpoints.five, checkpoints.labels, (0.5, 0.4, 0.3), (0.25,), 300, 256
    )
    # Filled from a spec, it shows it; empty fields stand for the defaults.
    again = NetworkDialog(dialog.network())
    qtbot.addWidget(again)
    assert again.network() == dialog.network()
    assert again.mean.text() == "0.5, 0.4, 0.3"
    named = NetworkDialog(NetworkSpec("resnet101", "random"))
    qtbot.addWidget(named)
    assert named.network() == NetworkSpec("resnet101", "random")


def test_a_fine_tuned_checkpoint_shows_its_own_labels(
    open_window,
    checkpoints: Checkpoints,
    shown_after,
    *,
    settings_path,
    monkeypatch,
    qtbot,
    tmp_path,
) -> None:
    from visualizer.ui.network_dialog import saved_network

    window = open_window([CHELSEA])
    network = NetworkSpec("resnet101", checkpoints.five, checkpoints.labels)
    asked = answering_network(monkeypatch, window, network)
    data = shown_after(window, window.weights_action.trigger)
    assert asked == [("Network", NetworkSpec("resnet101", "random"))]
    assert data.model.spec.network == network
    assert window.errors.messages == []

    # The top-k: all five classes, by their labels.
    assert [label for _, label, _ in data.topk] == [LABELS[i] for i, _, _ in data.topk]
    shown = rows(window.cam.predictions)
    assert len(shown) == 5
    assert [line.split("   ", 1)[1] for line in shown] == [
        f"{label}  ({index})" for index, label, _ in data.topk
    ]
    assert window.cam.heading.text() == "Top-5 of 5 classes"
    # The class search: the five labels.
    classes = window.cam.classes
    assert [classes.itemText(i) for i in range(classes.count())] == [
        f"{i} {label}" for i, label in enumerate(LABELS)
    ]
    assert classes.lineEdit().placeholderText() == "Search the 5 classes…"
    top = data.topk[0]
    assert f"Grad-CAM of <b>{top[0]} {top[1]}</b>" in window.cam.title.text()
    # The status bar: weights, where the labels come from, the preprocessing.
    assert "ft5.pth" in window.weights_label.text()
    assert window.labels_label.text() == "Labels: labels.txt"
    assert window.preprocessing_label.text() == "Input: resize 232, crop 224 (ImageNet default)"
    assert "mean (0.485, 0.456, 0.406)" in window.preprocessing_label.toolTip()
    assert window.windowTitle() == "fmviz — chelsea.jpg — ResNet101 · ft5.pth"

    # A class searched for and chosen: its Grad-CAM, titled with its label.
    search = window.cam.classes.completer()
    search.setCompletionPrefix("NEV")
    found = search.completionModel()
    assert [found.index(i, 0).data() for i in range(found.rowCount())] == ["1 nevus"]
    data = shown_after(window, lambda: search.activated[str].emit("1 nevus"))
    assert data.target == 1
    assert "Grad-CAM of <b>1 nevus</b>" in window.cam.title.text()

    # An overlay exported from the window names the class by its label.
    path = tmp_path / "cam.png"
    monkeypatch.setattr(window, "ask_export_path", lambda _what, _name: str(path))
    window.export("overlay")
    qtbot.waitUntil(lambda: window.idle() and path.exists(), timeout=60_000)
    assert Image.open(path).text["target"] == "1 nevus"

    # Remembered for the next Network dialog.
    remembered = saved_network(QSettings(settings_path, QSettings.Format.IniFormat), "network")
    assert remembered == network

    # Labels that do not fit: one line naming both numbers; the network stays as it was.
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *_a, **_k: (checkpoints.four_labels, "")
    )
    with qtbot.waitSignal(window.error_shown, timeout=60_000) as error:
        window.labels_action.trigger()
    qtbot.waitUntil(window.idle, timeout=60_000)
    assert error.args[0] == f"{checkpoints.four_labels}: 4 labels, but the network has 5 classes"
    assert window.spec.network == network
    assert window.labels_label.text() == "Labels: labels.txt"


def test_a_binary_network_shows_its_sigmoid_probability(
    open_window, checkpoints: Checkpoints, shown_after, monkeypatch
) -> None:
    window = open_window([CHELSEA])
    network = NetworkSpec(
        "resnet101", checkpoints.binary, mean=(0.5,) * 3, std=(0.25,) * 3, resize=240, crop=200
    )
    answering_network(monkeypatch, window, network)
    data = shown_after(window, window.weights_action.trigger)
    assert data.scores == "sigmoid"
    logit = window.worker._session._results[(data.picture, data.model.spec)].logits[0]
    assert len(data.topk) == 1
    assert data.topk[0][:2] == (0, "defect")
    assert data.topk[0][2] == pytest.approx(float(torch.sigmoid(logit)), abs=1e-6)
    assert rows(window.cam.predictions) == [f"{data.topk[0][2] * 100:5.1f} %   defect  (0)"]
    assert window.cam.heading.text() == "Sigmoid probability (one output)"
    assert f"(sigmoid {data.topk[0][2] * 100:.1f} %)" in window.cam.title.text()
    # The preprocessing given, what was unwrapped from the checkpoint, where its labels came from.
    assert data.view.shape == (200, 200, 3)
    assert window.preprocessing_label.text() == (
        "Input: resize 240, crop 200, mean 0.5,0.5,0.5, std 0.25,0.25,0.25 (given)"
    )
    assert "prefix 'model.' removed" in window.weights_label.text()
    assert "checkpoint" in window.labels_label.text()


def test_two_resnet101s_with_different_classes_each_explain_their_own(
    open_window,
    checkpoints: Checkpoints,
    shown_after,
    *,
    settings_path,
    monkeypatch,
    qtbot,
    tmp_path,
) -> None:
    from visualizer.ui.network_dialog import saved_network

    window = open_window([CHELSEA])
    fine_tuned = NetworkSpec("resnet101", checkpoints.five, checkpoints.labels)
    asked = answering_network(monkeypatch, window, fine_tuned)
    shown_after(window, window.compare_with_action.trigger)
    assert asked[0][0] == "Compare with"
    assert asked[0][1] == NetworkSpec("vgg16", "random")  # the default other side
    assert window.compare
    left, right = window.compare_view.panes
    assert (left.label, right.label) == ("ResNet101 · random", "ResNet101 · ft5.pth")
    assert left.title.text().startswith("<b>ResNet101 · random</b> · C1")
    assert right.title.text().startswith("<b>ResNet101 · ft5.pth</b> · C1")
    assert window.windowTitle() == "fmviz — chelsea.jpg — ResNet101 · random vs ResNet101 · ft5.pth"

    # Different classes: each side explains its own top-1, and the note says so.
    assert left.data.model.num_classes == 1000
    assert right.data.model.num_classes == 5
    assert (left.data.target, right.data.target) == (left.data.topk[0][0], right.data.topk[0][0])
    assert not left.data.shared
    assert not right.data.shared
    note = window.compare_view.note
    assert note.isVisible()
    assert "The networks have different classes" in note.text()
    assert f"<b>{right.data.target} {right.data.target_label}</b>" in note.text()
    assert right.data.target_label == LABELS[right.data.target]
    assert len(rows(right.predictions)) == 5
    assert left.picker.isVisible()
    assert right.picker.isVisible()
    assert not window.compare_view.controls.picker.isVisible()
    picked = right.picker.classes
    assert [picked.itemText(i) for i in range(picked.count())][:2] == ["0 melanoma", "1 nevus"]
    assert window.labels_label.text() == "Labels: ImageNet (torchvision) | labels.txt"

    # A class picked on one side changes that side only.
    other_class = next(i for i in range(5) if i != right.data.target)
    before = left.data.target
    shown_after(window, lambda: right.predictions.target_chosen.emit(other_class))
    assert right.data.target == other_class
    assert left.data.target == before
    assert f"Grad-CAM of <b>{other_class} {LABELS[other_class]}</b>" in right.cam.title.text()

    # The comparison exported says each side explains its own class, with its own label.
    path = tmp_path / "compare.png"
    monkeypatch.setattr(window, "ask_export_path", lambda _what, _name: str(path))
    window.export("comparison")
    qtbot.waitUntil(lambda: window.idle() and path.exists(), timeout=60_000)
    text = Image.open(path).text
    assert text["target"] == (
        f"{before} {left.data.target_label} | {other_class} {LABELS[other_class]}"
    )
    assert text["explained"].startswith("each network its own class")
    assert text["model"] == "ResNet101 · random | ResNet101 · ft5.pth"

    # The side compared is remembered.
    saved = QSettings(settings_path, QSettings.Format.IniFormat)
    assert saved_network(saved, "compared") == fine_tuned


def test_the_settings_remember_the_networks(
    open_window, checkpoints: Checkpoints, settings_path, monkeypatch
) -> None:
    from visualizer.ui.app import create_window
    from visualizer.ui.network_dialog import save_network, saved_network

    settings = QSettings(settings_path, QSettings.Format.IniFormat)
    custom = NetworkSpec("resnet101", checkpoints.five, checkpoints.labels, (0.5,), (0.25,), 256)
    compared = NetworkSpec("vgg16", "random", crop=200)
    save_network(settings, "network", custom)
    save_network(settings, "compared", compared)
    settings.sync()
    assert saved_network(settings, "network") == custom
    assert saved_network(settings, "compared") == compared

    window = open_window([CHELSEA], wait=False, compare=True)
    assert window.state.other.network == compared
    assert window.compare_view.panes[1].label == "VGG16"
    asked = answering_network(monkeypatch, window, None)
    window.load_weights()  # the dialog opens filled with the last custom network
    assert asked == [("Network", custom)]
    window.close()  # before it starts: nothing to wait for

    # From the command line (``fmviz`` gives ``ui.app.run`` these): a network and its pair.
    given = create_window(
        [CHELSEA],
        model="resnet101",
        weights=checkpoints.five,
        device="cpu",
        settings=settings,
        labels=checkpoints.labels,
        mean="0.5",
        std=(0.25,),
        resize="256",
        other=NetworkSpec("resnet101", "random"),
    )
    try:
        assert given.spec.network == custom
        assert given.state.other.network == NetworkSpec("resnet101", "random")
        assert given.compare
    finally:
        given.close()
        given.deleteLater()

    settings.setValue("compared/mean", "not numbers")
    assert saved_network(settings, "compared") is None

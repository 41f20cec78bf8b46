"""The corpus of broken and awkward inputs (tests/reliability/corpus.py) through the window:
dropped all at once, the good images join the strip and the bad ones are summed up in the one
red line, without a dialog; a bad checkpoint through File → Load weights (or ``fmviz
--weights``) is one error line and the network in use stays; a malicious one never runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtWidgets import QApplication, QFileDialog

from tests.reliability.corpus import (
    CHECKPOINT_KEYS,
    MALICIOUS_KEYS,
    PWNED,
    SHELL_NAMES,
    Corpus,
    build,
)
from tests.ui.dropping import drop

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
RANDOM_WEIGHTS = "Weights: random (untrained, seed 0)"
# A dropped folder is searched for images, whatever its name.
UI_REASONS = {"folder-named-jpg": r"^no images in this folder$"}


@pytest.fixture(scope="module")
def module_corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build(tmp_path_factory.mktemp("bad-input"))


@pytest.fixture
def corpus(module_corpus: Corpus, monkeypatch: pytest.MonkeyPatch):
    """The corpus, from its image folder (where a shell-like name would create its file);
    nothing may have run a payload or a name, and vanished files come back afterwards."""
    monkeypatch.chdir(module_corpus.image_folder)
    yield module_corpus
    ran = module_corpus.shell_ran()
    module_corpus.restore()
    assert ran == [], f"a file name or a checkpoint's payload was run: {ran}"


@pytest.fixture
def torch_loads(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The keyword arguments of every torch.load call (the worker thread's included)."""
    calls: list[dict] = []
    real = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def vanish_after_listing(monkeypatch: pytest.MonkeyPatch, corpus: Corpus) -> None:
    """The vanishing file is deleted once the dropped files are listed, before they are read."""
    from visualizer.ui import main_window

    listing = main_window.image_files
    gone = [case.path for case in corpus.images.values() if case.spec.vanishes]

    def listed_then_gone(paths: list[str]) -> tuple[list[str], list[str]]:
        found = listing(paths)
        for path in gone:
            assert str(path) in found[0]
            path.unlink()
        return found

    monkeypatch.setattr(main_window, "image_files", listed_then_gone)


def test_a_drop_of_the_whole_corpus(
    open_window, corpus: Corpus, *, reference, shown_after, monkeypatch, qtbot
) -> None:
    window = open_window([CHELSEA])
    vanish_after_listing(monkeypatch, corpus)
    good, bad = corpus.good, corpus.bad

    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        window.add_files([str(case.path) for case in corpus.images.values()])
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 1 + len(good), timeout=60_000)

    # The good images joined the strip, in the order dropped; the first of them is shown.
    keys = window.strip.keys()
    sources = [window.pictures[key].source for key in keys]
    assert sources == [CHELSEA, *(str(case.path) for case in good)]
    first = good[0]
    assert window.pictures[window.current].source == str(first.path)
    expected = reference.result(str(first.path))
    np.testing.assert_array_equal(window.data.activation, expected.stages["C1"].numpy())

    # Each bad file is one message naming it and saying why; the bar shows one line for all.
    messages = window.errors.messages
    assert len(messages) == len(bad), messages
    for case in bad:
        naming = [text for text in messages if text.startswith(f"{case.shown}: ")]
        assert len(naming) == 1, (case.key, messages)
        reason = UI_REASONS.get(case.key, case.spec.reason)
        assert re.search(reason, naming[0][len(case.shown) + 2 :]), naming[0]
    assert all(message.isprintable() for message in messages)
    assert window.errors.isVisible()
    line = window.errors.label.text()
    assert line == f"{messages[-1]}  (+{len(bad) - 1} more: hover to see them)"
    assert "\n" not in line
    assert window.errors.label.toolTip().splitlines() == messages
    assert QApplication.activeModalWidget() is None  # and no dialog at all: see conftest

    # The window goes on working: another stage, then the awkward images, one by one.
    data = shown_after(window, lambda: window.set_options(stage="C5"))
    np.testing.assert_array_equal(data.activation, expected.stages["C5"].numpy())
    for row, case in enumerate(good, start=1):
        if case.key in ("very-wide", "exif-rotated", "non-utf-8-name", "shell-name-1"):
            data = shown_after(window, lambda row=row: window.strip.setCurrentRow(row))
            assert window.pictures[data.picture].source == str(case.path)
            reference_result = reference.result(str(case.path))
            np.testing.assert_array_equal(data.view, np.asarray(reference_result.view))
    assert len(window.errors.messages) == len(bad)


def test_a_drop_of_shell_like_names_runs_nothing(
    open_window, corpus: Corpus, shown_after, qtbot
) -> None:
    window = open_window([CHELSEA])
    paths = [str(corpus.image_folder / name) for name in SHELL_NAMES]
    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        drop(window, paths)
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 1 + len(paths))
    assert [window.pictures[key].source for key in window.strip.keys()][1:] == paths  # noqa: SIM118
    assert window.errors.messages == []
    assert not (corpus.image_folder / PWNED).exists()


def choose_in_file_dialog(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[str]:
    """File → Load weights… (the Network dialog, its weights' Browse… button) will be
    answered with ``path``; returns the file dialogs' titles."""
    from visualizer.ui.network_dialog import NetworkDialog

    titles: list[str] = []

    def answer(_parent: object, title: str, *_args: object, **_kwargs: object):
        titles.append(title)
        return str(path), "Checkpoints (*.pth *.pt *.safetensors)"

    def browse_and_accept(dialog: NetworkDialog) -> int:
        dialog.browse_weights.click()
        dialog.accept()
        return dialog.result()

    monkeypatch.setattr(QFileDialog, "getOpenFileName", answer)
    monkeypatch.setattr(NetworkDialog, "exec", browse_and_accept)
    return titles


@pytest.mark.parametrize("key", CHECKPOINT_KEYS)
def test_load_weights_with_a_bad_checkpoint(
    open_window, corpus: Corpus, key: str, *, torch_loads, shown_after, monkeypatch, qtbot
) -> None:
    case = corpus.checkpoints[key]
    window = open_window([CHELSEA])
    spec, view = window.spec, window.data
    assert window.weights_label.text() == RANDOM_WEIGHTS
    titles = choose_in_file_dialog(monkeypatch, case.path)

    with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
        window.weights_action.trigger()
    qtbot.waitUntil(window.idle)
    assert titles == ["Load ResNet101 weights"]

    # One line, naming the file and why.
    message = shown.args[0]
    assert window.errors.messages == [message]
    assert message.startswith(f"{case.path}: "), message
    assert re.search(case.spec.reason, message[len(str(case.path)) + 2 :]), message
    assert window.errors.label.text() == message

    # The network in use is the one before, and the window shows it.
    assert window.spec == spec
    assert window.weights_label.text() == RANDOM_WEIGHTS
    data = shown_after(window, lambda: window.set_options(stage="C4"))
    assert data.model.spec == spec
    assert data.picture == view.picture
    assert [index for index, _, _ in data.topk] == [index for index, _, _ in view.topk]
    assert all(call.get("weights_only") is True for call in torch_loads)
    assert not corpus.marker.exists()


@pytest.mark.parametrize("key", MALICIOUS_KEYS)
def test_fmviz_weights_with_a_malicious_checkpoint(
    corpus: Corpus, key: str, *, torch_loads, settings_path, analyzer_of, monkeypatch, qtbot
) -> None:
    """``fmviz IMAGE --weights evil.pth``: the window says why it refused the file, runs
    untrained weights instead, and nothing in the file ever runs."""
    from PySide6.QtCore import QSettings

    from visualizer.ui import jobs
    from visualizer.ui.app import create_window

    case = corpus.checkpoints[key]
    monkeypatch.setenv("TORCH_HOME", str(corpus.folder / "torch-home"))  # no ImageNet cached
    monkeypatch.setattr("socket.create_connection", _offline)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    original = jobs._new_analyzer

    def new_analyzer(model: str, weights: str, device: str, **options: object):
        if weights == "random" and not options:
            return analyzer_of(model)
        return original(model, weights, device, **options)

    monkeypatch.setattr(jobs, "_new_analyzer", new_analyzer)
    settings = QSettings(settings_path, QSettings.Format.IniFormat)
    errors: list[str] = []
    window = create_window(
        [CHELSEA], model="resnet101", weights=str(case.path), device="cpu", settings=settings
    )
    try:
        window.error_shown.connect(errors.append)
        qtbot.waitSignal(window.view_shown, timeout=60_000).wait()
        qtbot.waitUntil(window.idle)
        assert len(errors) == 1, errors
        assert errors[0].startswith(f"{case.path}: refused: it holds Python objects ("), errors
        assert window.spec.weights != str(case.path)
        assert "untrained" in window.weights_label.text()
        assert window.banner.isVisible()  # untrained weights are said above the views
        assert torch_loads  # the file was read (by the model's request and the view's)…
        assert all(call.get("weights_only") is True for call in torch_loads)  # …safely
        assert not corpus.marker.exists()
    finally:
        window.close()
        window.deleteLater()


def _offline(*_args: object, **_kwargs: object):
    raise OSError(101, "Network is unreachable")


def test_all_grids_of_an_image_with_a_long_name(
    open_window, corpus: Corpus, tmp_path: Path, monkeypatch, qtbot
) -> None:
    """Its 250-byte name leaves no room for "_resnet101_C1.png": the names are cut to fit."""
    long = corpus.images["long-name"].path
    window = open_window([str(long)])
    out = tmp_path / "grids"
    out.mkdir()
    monkeypatch.setattr(window, "ask_export_path", lambda _what, _name: str(out))
    window.export("grids")
    qtbot.waitUntil(
        lambda: window.idle() and (len(os.listdir(out)) == 5 or bool(window.errors.messages))
    )
    assert window.errors.messages == []
    names = sorted(os.listdir(out))
    assert [name[-17:] for name in names] == [f"_resnet101_C{n}.png" for n in range(1, 6)]
    assert all(long.stem.startswith(name[:-17]) and len(name) < 230 for name in names)


def test_odd_names_join_the_strip(open_window, corpus: Corpus, qtbot) -> None:
    """A name that is not UTF-8, and one of 254 bytes, join the strip under their names."""
    window = open_window([CHELSEA])
    odd = corpus.images["non-utf-8-name"].path
    long = corpus.images["long-name"].path
    window.add_files([str(odd), str(long)])
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 3)
    keys = window.strip.keys()
    assert [window.pictures[key].name for key in keys[1:]] == [odd.name, long.name]
    assert [window.pictures[key].source for key in keys[1:]] == [str(odd), str(long)]
    assert window.strip.item(2).text() == "l" * 7 + "…" + "l" * 4 + ".png"  # cut in the middle
    assert window.errors.messages == []


def test_names_that_differ_in_a_byte_that_is_not_utf_8_look_different(
    open_window, picture_file, tmp_path: Path, qtbot
) -> None:
    window = open_window([CHELSEA])
    first = tmp_path / os.fsdecode(b"caf\xe9.png")
    second = tmp_path / os.fsdecode(b"caf\xe8.png")
    for path in (first, second):
        Path(picture_file("plain.png")).rename(path)
    window.add_files([str(first), str(second)])
    qtbot.waitUntil(lambda: window.idle() and window.strip.count() == 3)
    labels = [window.strip.item(row).text() for row in (1, 2)]
    assert labels[0] != labels[1]


def test_a_dropped_file_whose_name_is_not_utf_8(open_window, corpus: Corpus, qtbot) -> None:
    window = open_window([CHELSEA])
    case = corpus.images["non-utf-8-name"]
    drop(window, [str(case.path)])
    qtbot.waitUntil(
        lambda: window.idle() and (window.strip.count() == 2 or window.errors.isVisible())
    )
    assert window.errors.messages == []
    assert window.pictures[window.strip.keys()[1]].source == str(case.path)

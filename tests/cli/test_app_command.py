"""``fmviz [IMAGE ...]``: the window's command line (the window itself is tested in tests/ui)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import visualizer.ui.app
from visualizer.cli import main


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict]]:
    """Calls that would have opened the window, with their arguments."""
    calls: list[tuple[list[str], dict]] = []

    def fake_run(paths: list[str], **options: object) -> int:
        calls.append((list(paths), options))
        return 0

    monkeypatch.setattr(visualizer.ui.app, "run", fake_run)
    return calls


def test_no_command_opens_the_window_with_the_last_used_network(opened) -> None:
    assert main([]) == 0
    assert opened == [
        (
            [],
            {
                "model": None,
                "weights": "imagenet",
                "device": None,
                "screenshot": None,
                "compare": None,  # as the window was last closed
            },
        )
    ]


def test_images_and_options_reach_the_window(opened, tmp_path: Path) -> None:
    shot = tmp_path / "out.png"
    words = ["a.jpg", "photos", "--model", "vgg16", "--weights", "random", "--device", "cpu"]
    assert main([*words, "--screenshot", str(shot)]) == 0
    assert opened == [
        (
            ["a.jpg", "photos"],
            {
                "model": "vgg16",
                "weights": "random",
                "device": "cpu",
                "screenshot": str(shot),
                "compare": None,
            },
        )
    ]


def test_compare_opens_compare_mode(opened) -> None:
    assert main(["a.jpg", "--compare", "--weights", "random"]) == 0
    assert opened == [
        (
            ["a.jpg"],
            {
                "model": None,
                "weights": "random",
                "device": None,
                "screenshot": None,
                "compare": True,
            },
        )
    ]


def test_no_compare_opens_the_network_alone(opened) -> None:
    assert main(["a.jpg", "--no-compare"]) == 0
    assert opened[0][1]["compare"] is False


def test_compare_with_a_weights_file_is_bad_usage(
    opened, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["a.jpg", "--compare", "--weights", "vgg16.pth"])
    assert exit_info.value.code == 2
    assert "--compare builds both networks" in capsys.readouterr().err
    assert opened == []


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        (["--model", "alexnet"], "invalid choice: 'alexnet'"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--screenshot", "/no/such/folder/out.png"], "the folder /no/such/folder does not exist"),
        (["--screenshot", "."], ".: is a folder; give a file name"),
    ],
)
def test_bad_usage_exits_2_before_any_window(
    opened, words: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(words)
    assert exit_info.value.code == 2
    assert reason in capsys.readouterr().err
    assert opened == []


def test_help_names_the_window_and_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: fmviz [IMAGE ...] [--compare] [options]" in out
    for command in ("info", "export", "bench"):
        assert f"  {command}  " in out
    assert "--screenshot PATH" in out


def test_opening_the_window_imports_no_torch_before_it(modules_after) -> None:
    # P5: the window shows first; torch and the network load behind it.
    loaded = modules_after("import visualizer.cli, visualizer.ui.app")
    assert "PySide6.QtWidgets" in loaded
    assert "pyqtgraph" in loaded
    assert not {"torch", "torchvision", "captum"} & loaded


@pytest.fixture
def no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Linux machine with no display and no Qt platform chosen."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")


@pytest.mark.usefixtures("no_display")
def test_no_display_is_one_error_before_qt_loads(
    opened, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["a.jpg"]) == 1
    assert capsys.readouterr().err == (
        "error: no display to open the window on (DISPLAY is not set); use --screenshot PATH "
        "to save a picture of it, or fmviz export\n"
    )
    assert opened == []


@pytest.mark.usefixtures("no_display")
def test_a_screenshot_with_no_display_is_taken_offscreen(opened, tmp_path: Path) -> None:
    assert main(["a.jpg", "--screenshot", str(tmp_path / "out.png")]) == 0
    assert len(opened) == 1
    assert os.environ["QT_QPA_PLATFORM"] == "offscreen"

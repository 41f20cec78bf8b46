"""``fmviz [IMAGE ...]``: the window's command line (the window itself is tested in tests/ui)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import visualizer.ui.app
from visualizer.cli import main
from visualizer.networks import NetworkSpec

# What the window is told when no option names a network of one's own or a compared one.
NO_NETWORK_OF_ONES_OWN = {
    "labels": None,
    "mean": None,
    "std": None,
    "resize": None,
    "crop": None,
    "other": None,
}


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
                "weights": None,  # the last network used, else ImageNet
                "device": None,
                "screenshot": None,
                "compare": None,  # as the window was last closed
                "index": None,
                "live": None,
                "record": None,
                **NO_NETWORK_OF_ONES_OWN,
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
                "index": None,
                "live": None,
                "record": None,
                **NO_NETWORK_OF_ONES_OWN,
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
                "index": None,
                "live": None,
                "record": None,
                **NO_NETWORK_OF_ONES_OWN,
            },
        )
    ]


def test_no_compare_opens_the_network_alone(opened) -> None:
    assert main(["a.jpg", "--no-compare"]) == 0
    assert opened[0][1]["compare"] is False


def test_compare_with_a_weights_file_opens_compare_mode(opened) -> None:
    """A checkpoint can be compared: with the other architecture's ImageNet weights."""
    assert main(["a.jpg", "--compare", "--weights", "vgg16.pth"]) == 0
    [(_, options)] = opened
    assert options["compare"] is True
    assert options["weights"] == "vgg16.pth"
    assert options["other"] is None  # the window pairs it (visualizer.networks.compare_pair)


def test_a_network_of_ones_own_reaches_the_window(opened) -> None:
    words = ["a.jpg", "--model", "resnet101", "--weights", "ft5.pth", "--labels", "l.txt"]
    words += ["--mean", "0.5", "--std", "0.25", "--resize", "256", "--crop", "224"]
    assert main(words) == 0
    [(paths, options)] = opened
    assert paths == ["a.jpg"]
    assert options["weights"] == "ft5.pth"
    assert options["labels"] == "l.txt"
    assert (options["mean"], options["std"]) == ((0.5,), (0.25,))
    assert (options["resize"], options["crop"]) == (256, 224)
    assert options["other"] is None
    assert options["compare"] is None


def test_compare_options_name_the_other_network_and_imply_compare(opened) -> None:
    words = ["a.jpg", "--weights", "ft5.pth", "--compare-weights", "imagenet"]
    words += ["--compare-labels", "other.txt", "--compare-mean", "0.4,0.5,0.6"]
    assert main(words) == 0
    [(_, options)] = opened
    assert options["compare"] is True
    # The same architecture as --model's (resnet101 by default), ImageNet weights.
    assert options["other"] == NetworkSpec(
        "resnet101", "imagenet", labels="other.txt", mean=(0.4, 0.5, 0.6)
    )


def test_compare_model_alone_keeps_random_weights(opened) -> None:
    assert main(["--model", "vgg16", "--weights", "random", "--compare-model", "vgg16"]) == 0
    [(_, options)] = opened
    assert options["other"] == NetworkSpec("vgg16", "random")
    assert options["compare"] is True


def test_no_compare_with_a_compared_network_is_bad_usage(
    opened, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--no-compare", "--compare-weights", "b.pth"]) == 2
    assert capsys.readouterr().err.startswith("error: --no-compare: ")
    assert opened == []


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        (["--model", "alexnet"], "invalid choice: 'alexnet'"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--screenshot", "/no/such/folder/out.png"], "the folder /no/such/folder does not exist"),
        (["--screenshot", "."], ".: is a folder; give a file name"),
        (["--mean", "0.5,0.5"], "argument --mean: '0.5,0.5': 2 values; give 1 (grey) or 3"),
        (["--std", "x"], "argument --std: 'x': 'x' is not a number"),
        (["--compare-crop", "4"], "argument --compare-crop: 4: must be 8 to 4096 pixels"),
        (["--resize", "big"], "argument --resize: 'big' is not a whole number of pixels"),
        (["--compare-model", "alexnet"], "invalid choice: 'alexnet'"),
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


def test_an_index_reaches_the_window(opened, tmp_path: Path) -> None:
    assert main(["photo.jpg", "--index", str(tmp_path)]) == 0
    [(paths, options)] = opened
    assert paths == ["photo.jpg"]
    assert options["index"] == str(tmp_path)


def test_a_live_video_and_its_recording_reach_the_window(opened, tmp_path: Path) -> None:
    from tests.videos import write_shapes_video

    video = write_shapes_video(tmp_path / "clip.mp4", frames=3)
    record = tmp_path / "out.mkv"
    assert main(["--live", str(video), "--record", str(record), "--weights", "random"]) == 0
    [(paths, options)] = opened
    assert paths == []
    assert (options["live"], options["record"]) == (str(video), str(record))


@pytest.mark.parametrize(
    ("words", "status", "message"),
    [
        (["--live", "missing/clip.mp4"], 1, "error: missing/clip.mp4: no such file\n"),
        (["--record", "x.mp4"], 2, "error: --record: records the live view, so needs --live\n"),
        (["--live", "--compare"], 2, None),
        (["--live", "CLIP", "--record", "x.png"], 2, None),
        (["--live", "a.mp4", "--record", "./a.mp4"], 2, None),
    ],
)
def test_live_usage_and_missing_sources_are_one_line(  # noqa: PLR0917 (parametrized)
    opened, capsys, monkeypatch: pytest.MonkeyPatch, words, status, message
) -> None:
    monkeypatch.setattr("visualizer.core.live.sources.list_cameras", list)
    assert main(words) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    if message:
        assert err == message
    assert opened == []


def test_live_without_a_camera_says_so_in_one_line(
    opened, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("visualizer.core.live.sources.list_cameras", list)
    assert main(["--live"]) == 1
    assert capsys.readouterr().err == (
        "error: no camera found on this machine (fmviz --live FILE plays a video file instead)\n"
    )
    assert opened == []


def test_live_refuses_a_file_that_is_not_a_video(opened, capsys, tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n" * 20)
    assert main(["--live", str(fake)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {fake}: cannot be opened (")
    assert err.count("\n") == 1
    assert opened == []

"""``fmviz IMAGE --screenshot OUT``: the window run from the command line, until its first
complete view is saved (started in the background by conftest's ``window_commands``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_screenshot_of_the_first_view(window_commands) -> None:
    command = window_commands["sample"]
    status, stderr = command.finish(deadline_s=180)
    assert status == 0, stderr
    assert f"saved {command.screenshot}" in stderr
    assert error_lines(stderr) == []
    with Image.open(command.screenshot) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert (width, height) == (1400, 900)  # the window's size when nothing was saved
    assert command.screenshot.stat().st_size > 50_000
    # Not a blank window: many colours (the grid, the input, the heat map), and contrast.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    assert pixels.std() > 30
    assert not list(command.screenshot.parent.glob(".*.part"))  # written atomically


def test_only_a_broken_image_exits_1_naming_it(window_commands) -> None:
    command = window_commands["broken"]
    status, stderr = command.finish(deadline_s=60)
    naming = [line for line in error_lines(stderr) if "broken.jpg" in line]
    assert len(naming) == 1, stderr
    assert naming[0].startswith(f"error: {command.screenshot.parent / 'broken.jpg'}: ")
    assert not command.screenshot.exists()
    assert status == 1, "still running a minute after the start" if status is None else stderr


def test_a_screenshot_ignores_a_device_saved_by_another_session(window_commands) -> None:
    # A screenshot shows what the command line says: a device saved from a session on another
    # machine (CUDA, here missing; conftest's ``window_commands`` saves it in the run's
    # settings) neither fails the run nor leaves an error on the picture.
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    command = window_commands["saved-device"]
    status, stderr = command.finish(deadline_s=300)
    assert error_lines(stderr) == []
    assert status == 0, stderr
    assert command.screenshot.stat().st_size > 50_000


def test_a_screenshot_of_the_first_live_frame(window_commands) -> None:
    command = window_commands["live"]
    status, stderr = command.finish(deadline_s=180)
    assert status == 0, stderr
    assert f"saved {command.screenshot}" in stderr
    assert error_lines(stderr) == []
    with Image.open(command.screenshot) as image:
        pixels = np.asarray(image.convert("RGB"))
    # The live bar's green line is there, and a view: many colours.
    assert (np.abs(pixels.astype(int) - (0xE3, 0xF1, 0xE6)).sum(axis=2) == 0).sum() > 5_000
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    # Quitting once the screenshot is saved still finishes the recording (no closeEvent then).
    folder = command.screenshot.parent
    assert (folder / "recorded.mp4").stat().st_size > 0
    assert (folder / "recorded.csv").read_text().startswith("frame,time,rank,class,label,")
    assert not list(folder.glob(".recorded.partial.*"))

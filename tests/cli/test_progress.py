"""The progress bar: drawn only on a terminal, kept below messages, removed at the end."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visualizer.cli import main
from visualizer.cli.progress import BAR_WIDTH, Progress

COLUMNS = 60
WIDTH = COLUMNS - 1  # the bar leaves the last column free
CLEAR = "\r" + " " * WIDTH + "\r"


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """``shutil.get_terminal_size`` reads ``COLUMNS`` first."""
    monkeypatch.setenv("COLUMNS", str(COLUMNS))


def bar(done: int, total: int, label: str) -> str:
    filled = BAR_WIDTH * done // total
    line = f"[{'#' * filled}{'·' * (BAR_WIDTH - filled)}] {done}/{total} {label}"
    return "\r" + line[:WIDTH].ljust(WIDTH)


def on_screen(text: str) -> list[str]:
    """The lines a terminal shows for ``text``: each ``\\r`` returns to the line's start.

    Overwriting is approximated by keeping what follows the last ``\\r`` of each line, which is
    exact here since every redraw is padded to the full width.
    """
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")]


@pytest.mark.parametrize(
    ("stream", "total"),
    [
        pytest.param(io.StringIO(), 5, id="not-a-terminal"),
        pytest.param(FakeTerminal(), 1, id="terminal-one-step"),
        pytest.param(FakeTerminal(), 0, id="terminal-no-step"),
    ],
)
def test_nothing_is_drawn_off_a_terminal_or_for_one_step(stream: io.StringIO, total: int) -> None:
    progress = Progress(total, label="work", stream=stream)
    assert not progress.enabled
    progress.update(0)
    progress.update(1, label="a.png")
    progress.message("error: a.png: no such file")
    progress.close()
    assert stream.getvalue() == "error: a.png: no such file\n"


def test_the_bar_is_drawn_in_place_on_a_terminal() -> None:
    stream = FakeTerminal()
    progress = Progress(4, label="start", stream=stream)
    assert progress.enabled
    assert stream.getvalue() == ""  # nothing before the first update
    progress.update(1, label="a.png")
    assert stream.getvalue() == bar(1, 4, "a.png")
    assert stream.getvalue().startswith("\r[######" + "·" * 18 + "] 1/4 a.png")
    progress.update(2)
    assert stream.getvalue() == bar(1, 4, "a.png") + bar(2, 4, "a.png")  # the label is kept


@pytest.mark.parametrize(
    ("done", "total", "hashes"), [(0, 3, 0), (1, 3, 8), (2, 3, 16), (3, 3, 24), (7, 10, 16)]
)
def test_the_bar_fills_in_proportion(done: int, total: int, hashes: int) -> None:
    stream = FakeTerminal()
    Progress(total, stream=stream).update(done, label="x")
    assert stream.getvalue().startswith(f"\r[{'#' * hashes}{'·' * (BAR_WIDTH - hashes)}]")
    assert f"] {done}/{total} x" in stream.getvalue()


def test_update_can_change_the_total() -> None:
    stream = FakeTerminal()
    progress = Progress(2, stream=stream)
    progress.update(3, total=12, label="bench")
    assert stream.getvalue() == bar(3, 12, "bench")


def test_a_long_label_is_cut_to_the_terminal_width() -> None:
    stream = FakeTerminal()
    Progress(2, stream=stream).update(1, label="x" * 500)
    assert len(stream.getvalue()) == 1 + WIDTH


def test_a_message_clears_the_bar_prints_its_line_and_redraws() -> None:
    stream = FakeTerminal()
    progress = Progress(3, stream=stream)
    progress.update(1, label="b.jpg")
    progress.message("error: b.jpg: no such file")
    assert stream.getvalue() == (
        bar(1, 3, "b.jpg") + CLEAR + "error: b.jpg: no such file\n" + bar(1, 3, "b.jpg")
    )
    assert on_screen(stream.getvalue())[0] == "error: b.jpg: no such file"


def test_close_clears_the_bar_once() -> None:
    stream = FakeTerminal()
    progress = Progress(3, stream=stream)
    progress.close()
    assert stream.getvalue() == ""  # never drawn: nothing to clear
    progress.update(2, label="c.png")
    progress.close()
    progress.close()
    assert stream.getvalue() == bar(2, 3, "c.png") + CLEAR
    assert on_screen(stream.getvalue()) == [""]


def test_export_draws_the_bar_on_a_terminal_and_keeps_errors_whole(
    tmp_path: Path,
    device: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = tmp_path / "good.jpg"
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(good)
    missing = tmp_path / "gone.jpg"
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["export", str(good), str(missing), "--out", str(tmp_path / "out")]
    status = main([*argv, "--weights", "random", "--device", device, "--stages", "C5"])
    assert status == 1
    drawn = terminal.getvalue()
    assert "\r[" + "·" * BAR_WIDTH + "] 0/2 " in drawn
    assert "\r[" + "#" * (BAR_WIDTH // 2) + "·" * (BAR_WIDTH // 2) + "] 1/2 " in drawn
    assert on_screen(drawn) == [f"error: {missing}: no such file", ""]  # the bar is gone
    assert "Traceback" not in drawn
    assert capsys.readouterr().out.startswith("exported 1 of 2 images (3 files) to ")


def test_ctrl_c_clears_the_bar_and_says_how_far_the_export_got(
    tmp_path: Path,
    device: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from visualizer.core import Analyzer

    images = []
    for name in ("a", "b", "c"):
        pixels = np.random.default_rng(len(images)).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(tmp_path / f"{name}.png")
        images.append(tmp_path / f"{name}.png")
    analyze = Analyzer.analyze

    def interrupted(self: Analyzer, image: object, *, source: str | None = None) -> object:
        if source == str(images[1]):
            raise KeyboardInterrupt
        return analyze(self, image, source=source)

    monkeypatch.setattr(Analyzer, "analyze", interrupted)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = tmp_path / "out"
    argv = ["export", *map(str, images), "--out", str(out), "--stages", "C5"]
    status = main([*argv, "--weights", "random", "--device", device])
    assert status == 130
    drawn = terminal.getvalue()
    assert "] 1/3 " in drawn  # the bar was there, on the second image
    summary = f"interrupted: 1 of 3 images exported (3 files) to {out}"
    assert on_screen(drawn) == [summary, ""]  # the bar is gone, the line is whole
    assert capsys.readouterr().out == ""
    assert sorted(path.name for path in out.iterdir()) == [
        "a_resnet101_C5.png",
        "a_resnet101_gradcam_C5.png",
        "a_resnet101_timings.csv",
    ]

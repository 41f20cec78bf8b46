"""``fmviz info``: the stage table, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from visualizer.cli import main


def test_info_prints_the_stage_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", "resnet101", "--weights", "random"]) == 0
    out = capsys.readouterr().out
    assert "resnet101: 44,549,160 parameters, weights random (untrained, seed 0)" in out
    assert "C4    layer3       1024×14×14" in out
    assert "C5    layer4       2048×7×7" in out


def test_info_takes_a_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", "vgg16", "--weights", "random", "--size", "64x96"]) == 0
    out = capsys.readouterr().out
    assert "output for a 64×96 input" in out
    assert "C1    features.3   64×64×96" in out
    assert "C5    features.29  512×4×6" in out


def test_bad_weights_fail_with_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_text("not weights")
    assert main(["info", "--model", "vgg16", "--weights", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {bad}: a text file, not a checkpoint\n"
    assert captured.out == ""


@pytest.mark.parametrize(
    "words",
    [["info", "--size", "big"], ["info", "--model", "alexnet"], ["info", "--size", "8x8"]],
)
def test_bad_usage_exits_2(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(words)
    assert exit_info.value.code == 2
    assert "usage: fmviz" in capsys.readouterr().err


def test_python_dash_m_visualizer_runs_without_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pth"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "visualizer",
            "info",
            "--model",
            "resnet101",
            "--weights",
            str(missing),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {missing}: no such file (weights are 'imagenet', 'random' or a checkpoint path)"
    ]

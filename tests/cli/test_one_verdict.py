"""One verdict per request, whatever the front end: the same bad request exits with the same
status and says the same ``error:`` line in the window's command line (``--screenshot``),
``fmviz export``, ``fmviz bench`` and ``fmviz info``, wherever the option exists. Bad usage
(exit status 2) says the same reason after each command's ``<prog>: error:``.

The window runs as ``fmviz`` runs it, in a subprocess (offscreen); the commands in-process.
``{folder}`` in an option is the test's own folder, which holds ``three.txt``: three labels.

The window's subprocesses (5–6 s each on two cores, nearly all of it importing torch,
torchvision and Qt on one core) are all started with the session (tests/cli/conftest.py,
tests/cli/verdicts.py), three at a time, each in its own folder; each case then judges its
own process's exit status and stderr. Seven in a row took 35 s, three at a time 22 (four: no
quicker).
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.cli.verdicts import CASES, REQUESTS, Request, prepared
from visualizer.cli import main


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def windows(
    verdict_windows: dict[str, tuple[Request, Future[tuple[int, str, bool]]]],
) -> dict[str, tuple[Request, Future[tuple[int, str, bool]]]]:
    """Every window case's request and its running ``fmviz … --screenshot``, each in a folder
    of its own (started with the session: tests/cli/conftest.py)."""
    return verdict_windows


def run_command(
    front_end: str, request: Request, folder: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, bool]:
    """The command in-process: status, stderr, whether it wrote anything."""
    out = folder / "out"
    if front_end == "export":
        options = ("--weights", "random", *request.options)
        words = ["export", *request.images, "--out", str(out), "--stages", "C5", *options]
    elif front_end.startswith("bench"):
        words = [*front_end.split(), "--runs", "1", *request.options]
    else:
        words = ["info", "--model", "resnet101", *request.options]
    capsys.readouterr()
    status = main_exits(words)
    return status, capsys.readouterr().err, out.is_dir() and any(out.iterdir())


def main_exits(words: list[str]) -> int:
    """``main(words)``'s exit status, also where argparse ends it (bad usage)."""
    try:
        return main(words)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)


@pytest.mark.parametrize(("name", "front_end"), CASES, ids=[f"{n}: {f}" for n, f in CASES])
def test_the_same_request_gets_the_same_verdict(
    name: str,
    front_end: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    if "--device" in REQUESTS[name].options and cuda_available():
        pytest.skip("this machine has CUDA")
    if front_end == "window":
        asked, running = request.getfixturevalue("windows")[name]
        status, stderr, wrote = running.result()
    else:
        asked = prepared(name, tmp_path)
        status, stderr, wrote = run_command(front_end, asked, tmp_path, capsys)
    if asked.status == 2:  # "fmviz: error: …", "fmviz export: error: …", the same reason
        errors = [line.split(": ", 1)[1] for line in stderr.splitlines() if ": error: " in line]
    else:
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(asked.says), stderr
    assert "Traceback" not in stderr
    assert status == asked.status, stderr
    assert wrote == asked.partly_done

"""One verdict per request, whatever the front end: the same bad request exits with the same
status and says the same ``error:`` line in the window's command line (``--screenshot``),
``fmviz export``, ``fmviz bench`` and ``fmviz info``, wherever the option exists. Bad usage
(exit status 2) says the same reason after each command's ``<prog>: error:``.

The window runs as ``fmviz`` runs it, in a subprocess (offscreen); the commands in-process.
``{folder}`` in an option is the test's own folder, which holds ``three.txt``: three labels.

The window's subprocesses (5–6 s each on two cores, nearly all of it importing torch,
torchvision and Qt on one core) are all started with the module's first window case, three at
a time, each in its own folder; each case then judges its own process's exit status and
stderr. Seven in a row took 35 s, three at a time 22 (four: no quicker).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from visualizer.cli import main

ROOT = Path(__file__).resolve().parents[2]
CHELSEA = str(ROOT / "assets" / "samples" / "chelsea.jpg")
MISSING = "/nonexistent/missing.jpg"
WEIGHTS = "/nonexistent/weights.pth"


@dataclass(frozen=True)
class Request:
    options: tuple[str, ...]
    images: tuple[str, ...]
    says: str  # the start of the one error line (exit status 2: what follows "<prog>: ")
    partly_done: bool = False  # the other images are still shown or exported
    status: int = 1


REQUESTS = {
    "no CUDA": Request(("--device", "cuda"), (CHELSEA,), "error: CUDA is not available"),
    "no weights file": Request(
        ("--weights", WEIGHTS), (CHELSEA,), f"error: {WEIGHTS}: no such file"
    ),
    "no image file": Request((), (MISSING,), f"error: {MISSING}: no such file"),
    "one image of two missing": Request(
        (), (CHELSEA, MISSING), f"error: {MISSING}: no such file", partly_done=True
    ),
    "labels of the wrong count": Request(
        ("--labels", "{folder}/three.txt"),
        (CHELSEA,),
        "error: {folder}/three.txt: 3 labels, but the network has 1000 classes",
    ),
    "one mean for three channels": Request(
        ("--mean", "0.5"),
        (CHELSEA,),
        "error: mean (0.5) has 1 value, but the network takes 3 input channels",
    ),
    "two means": Request(
        ("--mean", "0.5,0.5"),
        (CHELSEA,),
        "error: argument --mean: '0.5,0.5': 2 values; give 1 (grey) or 3 (R,G,B)",
        status=2,
    ),
}
# Requests about the network itself, which fmviz info takes too.
NETWORK_REQUESTS = ("labels of the wrong count", "one mean for three channels", "two means")
# The front ends that take each request (bench takes no image and no weights, info no device).
CASES = [
    *[(name, "window") for name in REQUESTS],
    *[(name, "export") for name in REQUESTS],
    ("no CUDA", "bench"),
    ("no CUDA", "bench --startup"),
    ("no weights file", "info"),
    *[(name, "info") for name in NETWORK_REQUESTS],
]


WINDOWS_AT_ONCE = 3  # window subprocesses running side by side (two cores)


def prepared(name: str, folder: Path) -> Request:
    """The request ``name`` in ``folder``: ``{folder}`` replaced, ``three.txt`` written."""
    (folder / "three.txt").write_text("cat\ndog\nbird\n")
    named = REQUESTS[name]
    return replace(
        named,
        options=tuple(option.replace("{folder}", str(folder)) for option in named.options),
        says=named.says.replace("{folder}", str(folder)),
    )


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def windows(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Request, Future[tuple[int, str, bool]]]]]:
    """Every window case's request and its running ``fmviz … --screenshot`` (see above), each
    in a folder of its own; started on first use."""
    names = [name for name, front_end in CASES if front_end == "window"]
    if cuda_available():  # those cases are skipped
        names = [name for name in names if "--device" not in REQUESTS[name].options]
    with ThreadPoolExecutor(WINDOWS_AT_ONCE, thread_name_prefix="test-window") as pool:
        started = {}
        for name in names:
            folder = tmp_path_factory.mktemp("window")
            request = prepared(name, folder)
            started[name] = (request, pool.submit(run_window, request, folder))
        yield started


def run_window(request: Request, folder: Path) -> tuple[int, str, bool]:
    """``fmviz IMAGE ... --screenshot OUT``: status, stderr, whether the screenshot is saved."""
    shot = folder / "shot.png"
    environment = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "FMVIZ_SETTINGS": str(folder / "settings.ini"),
    }
    options = ("--weights", "random", *request.options)
    done = subprocess.run(
        [sys.executable, "-m", "visualizer", *request.images, *options, "--screenshot", str(shot)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=folder,
        timeout=300,
        check=False,
    )
    return done.returncode, done.stderr, shot.exists()


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

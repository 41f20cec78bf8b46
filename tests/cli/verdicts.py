"""The requests of tests/cli/test_one_verdict.py, and the window's runs of them: started with
the session (tests/cli/conftest.py), as each takes 5–6 s on two cores, nearly all of it
importing torch, torchvision and Qt on one core, and can pass while other tests run."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

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

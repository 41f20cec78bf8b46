"""``fmviz bench --startup``: how soon the window is up (P5) and shows its first complete view
(P6), and how long its event loop stalls meanwhile (P7), against references run alike.

Every case is a fresh process, started by this one, run in turn (interleaved) ``runs`` times:

- the app, ``fmviz IMAGE --weights random --screenshot …`` on the current display (offscreen
  where there is none), reporting when it painted its window and showed its first view;
- ``python -c "import torch"`` (P5's reference);
- a script that imports torch and torchvision, builds the network with random weights and runs
  one forward (P6's reference).

Times are from the start of the process to the event (the references: to their exit).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TARGETS = {"P5": 0.5, "P6": 1.3, "P7": 50.0}
WHAT = {
    "P5": "launch → window painted, vs python -c 'import torch'",
    "P6": "launch → first complete view (grid, top-5, Grad-CAM) vs a script importing torch "
    "and torchvision, building the network and running one forward",
    "P7": "longest event-loop stall (ms) while the network loads and runs behind the window",
}
SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
SAMPLE, SECOND = SAMPLES / "astronaut.jpg", SAMPLES / "coffee.jpg"
REFERENCE = """
import sys, torch, torchvision
model = getattr(torchvision.models, sys.argv[1])(weights=None).eval().to(sys.argv[2])
with torch.inference_mode():
    model(torch.rand(1, 3, 224, 224, device=sys.argv[2]))
"""


@dataclass
class StartupReport:
    """Medians in milliseconds, and the ratios they give."""

    model: str
    device: str
    runs: int
    medians_ms: dict[str, float]

    @property
    def ratios(self) -> dict[str, float]:
        m = self.medians_ms
        return {
            "P5": m["window shown"] / m["import torch"],
            "P6": m["first view"] / m["torchvision script"],
            "P7": m["longest stall"],
        }


def run_startup_bench(
    model: str = "resnet101",
    device: str = "cpu",
    runs: int = 3,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> StartupReport:
    """Launch the app and the references ``runs`` times each, interleaved.

    ``device``: as ``fmviz --device`` takes it (``"auto"`` included).
    """
    from visualizer.core.device import resolve_device  # noqa: PLC0415

    resolved = str(resolve_device(device))
    samples: dict[str, list[float]] = {
        name: [] for name in ("window shown", "first view", "longest stall", "launch stall")
    }
    samples |= {"import torch": [], "torchvision script": []}
    with tempfile.TemporaryDirectory(prefix="fmviz-startup-") as folder:
        for run in range(runs):
            app = _launch_app(Path(folder), model, device)
            samples["window shown"].append(app["window_shown"])
            samples["first view"].append(app["first_view"])
            samples["longest stall"].append(app["longest_stall_ms"])
            samples["launch stall"].append(app["launch_stall_ms"])
            samples["import torch"].append(_wall_ms([sys.executable, "-c", "import torch"]))
            reference = [sys.executable, "-c", REFERENCE, model, resolved]
            samples["torchvision script"].append(_wall_ms(reference))
            if progress is not None:
                progress(run + 1, runs)
    return StartupReport(
        model=model,
        device=resolved,
        runs=runs,
        medians_ms={name: statistics.median(values) for name, values in samples.items()},
    )


def _launch_app(folder: Path, model: str, device: str) -> dict[str, float]:
    """Milliseconds from launch to the window painted and to its first view; the stall."""
    report = folder / "startup.json"
    report.unlink(missing_ok=True)
    environment = {
        **os.environ,
        "FMVIZ_STARTUP_REPORT": str(report),
        "FMVIZ_SETTINGS": str(folder / "settings.ini"),  # the user's settings stay untouched
    }
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        environment.setdefault("QT_QPA_PLATFORM", "offscreen")
    words = ["--model", model, "--weights", "random", "--device", device]
    command = [sys.executable, "-m", "visualizer", str(SAMPLE), str(SECOND), *words]
    start = time.time()
    done = subprocess.run(  # noqa: S603 (this interpreter, our own program)
        command, capture_output=True, text=True, env=environment, check=False
    )
    if done.returncode != 0 or not report.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the app did not start: {last}")
    times = json.loads(report.read_text(encoding="utf-8"))
    return {
        "window_shown": (times["window_shown"] - start) * 1e3,
        "first_view": (times["first_view"] - start) * 1e3,
        "launch_stall_ms": times["launch_stall_ms"],
        "longest_stall_ms": times["longest_stall_ms"],
    }


def _wall_ms(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)  # noqa: S603 (our own scripts)
    return (time.perf_counter() - start) * 1e3

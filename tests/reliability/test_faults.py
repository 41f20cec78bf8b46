"""Faults injected where users meet them (DESIGN.md §7): the GPU running out of memory or
failing, a disk that fills up, a folder that cannot be written, a file in the way, a weights
download cut off half-way, and the window closed in the middle of an analysis.

This machine has no GPU: an analyzer is made to believe it runs on CUDA 0 (its ``device``, and
the name ``torch.cuda`` gives the card); its passes really run on the CPU and, for as long as
it believes so, fail inside the network (in its last layer, with the analyzer's hooks and
timing wrappers on), where a GPU would.
"""

from __future__ import annotations

import contextlib
import csv
import email.message
import errno
import functools
import hashlib
import http.client
import io
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from models import build_model
from models.weights import WeightsError
from tests.reliability.window_fixtures import (  # noqa: F401 (fixtures, found by name)
    _nothing_left_running,
    analyzer_of,
    dialogs,
    open_window,
    qapp_args,
    settings_path,
)
from visualizer.core import AnalysisResult, Analyzer, export
from visualizer.core.export import export_result, save_grid, save_timings
from visualizer.core.render import render_grid

SAMPLES = Path(__file__).resolve().parents[2] / "assets" / "samples"
CHELSEA = str(SAMPLES / "chelsea.jpg")
GPU_NAME = "NVIDIA Pretend 80GB"
GPU = f"CUDA 0: {GPU_NAME}"
# The last layer of each network: every forward and every Grad-CAM pass goes through it.
BREAKING_LAYER = {"resnet101": "fc", "vgg16": "classifier.6"}
OUT_OF_MEMORY = torch.OutOfMemoryError(
    "CUDA out of memory. Tried to allocate 392.00 MiB. GPU 0 has a total capacity of 79.19 GiB"
)
CUDA_ERRORS = {
    "out of memory": OUT_OF_MEMORY,
    "illegal access": RuntimeError("CUDA error: an illegal memory access was encountered"),
    "device lost": RuntimeError("CUDA error: unspecified launch failure"),
}
REASONS = {
    "out of memory": "ran out of memory",
    "illegal access": "failed",
    "device lost": "failed",
}


def hooks_left(model: nn.Module) -> int:
    """Hooks (forward, pre-forward, backward) and forward wrappers left on a network."""
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + ("forward" in m.__dict__)
        for m in model.modules()
    )


def gradient_image(width: int = 56, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([4 * x, 5 * y, (x * y) % 256], axis=-1) + rng.integers(
        0, 40, (height, width, 3)
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


# --- the GPU fails: the analysis goes on on the CPU, and says so ----------------------------


@pytest.fixture
def pretend_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.cuda`` names CUDA 0 (describe_device asks it); nothing else is pretended."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_args: GPU_NAME)


class PretendGpu:
    """Makes ``analyzer`` believe it runs on CUDA 0, where ``fails_in`` (``"_forward"``, the
    analysis, or ``"_grad_cams"``) raises ``error`` in the network's last layer (the untimed
    warm-up pass before the first analysis runs there too, without failing).

    The passes run on the CPU either way (the GPU is pretended): the failing one with the
    analyzer's hooks and timing wrappers in place, as on a real GPU.
    """

    def __init__(self, analyzer: Analyzer, error: BaseException, fails_in: str) -> None:
        self.analyzer = analyzer
        self.error = error
        self.failures = 0
        self.gpu = torch.device("cuda", 0)
        for method in ("_warm_up_pass", "_forward", "_grad_cams"):
            real = getattr(analyzer, method)
            setattr(analyzer, method, self._wrap(real, fail=method == fails_in))
        analyzer.device = self.gpu

    def _wrap(self, real: Callable[..., Any], *, fail: bool) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            analyzer = self.analyzer
            if analyzer.device.type != "cuda":
                return real(*args)
            layer = analyzer.model.get_submodule(BREAKING_LAYER[analyzer.arch])
            analyzer.device = torch.device("cpu")  # the pass runs here, on the pretend GPU
            if fail:
                layer.__dict__["forward"] = self._fail
            try:
                return real(*args)
            finally:
                layer.__dict__.pop("forward", None)
                analyzer.device = self.gpu

        return run

    def _fail(self, *_args: Any) -> torch.Tensor:
        self.failures += 1
        raise self.error


def unreachable(*_args: object, **_kwargs: object) -> nn.Module:
    """``model.to`` after a fatal CUDA error."""
    raise RuntimeError("CUDA error: unspecified launch failure")


def cpu_twin(analyzer: Analyzer) -> Analyzer:
    """Another analyzer of the same network, on the CPU: what the fall-back must give."""
    return Analyzer(analyzer.model, device="cpu")


@pytest.mark.parametrize("fault", ["out of memory", "illegal access"])
@pytest.mark.parametrize("fails_in", ["_forward", "_grad_cams"])
def test_a_failing_gpu_falls_back_to_the_cpu_with_a_notice(
    analyzer_of, pretend_cuda: None, fault: str, fails_in: str
) -> None:
    shared = analyzer_of("resnet101")
    analyzer = Analyzer(shared.model, device="cpu")  # the shared network, an analyzer of its own
    gpu = PretendGpu(analyzer, CUDA_ERRORS[fault], fails_in)
    image = gradient_image()
    expected = cpu_twin(analyzer).analyze(image)
    notice = f"{GPU} {REASONS[fault]}; running on the CPU from now on"

    result = analyzer.analyze(image)
    cam = analyzer.gradcam(result, "C4", target=7)

    assert gpu.failures == 1
    assert analyzer.device == torch.device("cpu")
    assert analyzer.notice == notice
    assert analyzer.describe_device().startswith("CPU (")
    if fails_in == "_forward":
        assert result.notice == notice
        assert result.device.startswith("CPU (")
    else:  # the analysis ran on the GPU, which failed afterwards
        assert result.notice is None
        assert result.device == GPU
    torch.testing.assert_close(result.logits, expected.logits, rtol=0, atol=1e-5)
    for stage, activation in expected.stages.items():
        torch.testing.assert_close(result.stages[stage], activation, rtol=0, atol=1e-5)
    np.testing.assert_allclose(cam, cpu_twin(analyzer).gradcam(expected, "C4", 7), atol=1e-5)
    assert hooks_left(analyzer.model) == 0  # the failed pass left nothing on the network
    later = analyzer.analyze(gradient_image(seed=1))
    assert later.notice == notice  # every later result says so too
    assert later.device.startswith("CPU (")
    assert gpu.failures == 1  # the GPU is not tried again


def test_an_accelerator_error_falls_back_too(analyzer_of, pretend_cuda: None) -> None:
    """PyTorch ≥ 2.7 raises ``torch.AcceleratorError`` for a failing kernel."""
    error_type = getattr(torch, "AcceleratorError", None)
    if error_type is None:
        pytest.skip("this PyTorch has no torch.AcceleratorError")
    error = error_type("CUDA error: misaligned address")
    analyzer = Analyzer(analyzer_of("resnet101").model, device="cpu")
    gpu = PretendGpu(analyzer, error, "_forward")
    result = analyzer.analyze(gradient_image())
    assert gpu.failures == 1
    assert result.notice == f"{GPU} failed; running on the CPU from now on"


def test_a_gpu_that_lost_the_network_gets_it_rebuilt_on_the_cpu(pretend_cuda: None) -> None:
    """After a fatal CUDA error nothing can be copied off the GPU: the network is built again
    from its weights, on the CPU, and gives what it gave before."""
    analyzer = Analyzer("resnet101", weights="random", device="cpu", progress=False)
    before = analyzer.model
    image = gradient_image()
    expected = analyzer.analyze(image, layers=["layer3.4"])
    gpu = PretendGpu(analyzer, CUDA_ERRORS["device lost"], "_forward")

    before.__dict__["to"] = unreachable  # nothing can be copied off the GPU
    result = analyzer.analyze(image, layers=["layer3.4"])
    assert gpu.failures == 1
    assert analyzer.model is not before
    assert next(analyzer.model.parameters()).device.type == "cpu"
    assert result.notice == f"{GPU} failed; running on the CPU from now on"
    torch.testing.assert_close(result.logits, expected.logits, rtol=0, atol=1e-5)
    assert len(result.timings) == len(expected.timings)  # timed with the new network's layers
    # the layers asked for are captured from the new network's modules, not the lost one's
    torch.testing.assert_close(result.layers["layer3.4"], expected.layers["layer3.4"])
    assert hooks_left(analyzer.model) == 0
    np.testing.assert_allclose(
        analyzer.gradcam(result, "C5"), analyzer.gradcam(expected, "C5"), atol=1e-5
    )


def test_a_lost_network_given_by_the_caller_is_a_clear_error(
    analyzer_of, pretend_cuda: None
) -> None:
    """A network built by the caller has no weights to rebuild it from: say what to do."""
    model = analyzer_of("resnet101").model
    analyzer = Analyzer(model, device="cpu")
    PretendGpu(analyzer, CUDA_ERRORS["device lost"], "_forward")

    model.__dict__["to"] = unreachable  # nothing can be copied off the GPU
    try:
        with pytest.raises(RuntimeError, match=r"build the Analyzer again with device='cpu'"):
            analyzer.analyze(gradient_image())
    finally:
        del model.__dict__["to"]
    assert hooks_left(model) == 0


def test_fmviz_export_says_it_fell_back(
    analyzer_of, pretend_cuda: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visualizer import core as engine
    from visualizer.cli import main

    analyzer = Analyzer(analyzer_of("resnet101").model, device="cpu")
    PretendGpu(analyzer, OUT_OF_MEMORY, "_forward")
    monkeypatch.setattr(engine, "Analyzer", lambda *_args, **_kwargs: analyzer)
    image = tmp_path / "photo.png"
    gradient_image().save(image)
    status, out, err = run_cli(main, [image, "--out", tmp_path / "out", "--stages", "C5"])
    assert (status, err) == (0, "")
    assert f"note: {GPU} ran out of memory; running on the CPU from now on" in out.splitlines()
    assert len(list((tmp_path / "out").iterdir())) == 3


@pytest.mark.parametrize("fails_in", ["_forward", "_grad_cams"])
def test_the_window_shows_the_fall_back_in_the_banner_and_the_status_bar(
    open_window,
    qtbot,
    analyzer_of,
    pretend_cuda: None,
    *,
    monkeypatch: pytest.MonkeyPatch,
    fails_in: str,
) -> None:
    from visualizer.ui import jobs

    analyzer = Analyzer(analyzer_of("resnet101").model, device="cpu")
    gpu = PretendGpu(analyzer, OUT_OF_MEMORY, fails_in)
    expected = cpu_twin(analyzer)
    built: list[tuple[str, str, str]] = []

    def new_analyzer(model: str, weights: str, device: str) -> Analyzer:
        built.append((model, weights, device))
        return analyzer

    monkeypatch.setattr(jobs, "_new_analyzer", new_analyzer)
    window = open_window([CHELSEA], device="auto")  # auto: CUDA, here the pretended one
    qtbot.waitUntil(window.idle, timeout=60_000)

    notice = f"{GPU} ran out of memory; running on the CPU from now on"
    cpu = f"Device: {expected.describe_device()}"
    assert built == [("resnet101", "random", "auto")]
    assert gpu.failures == 1
    assert window.data.notice == notice
    assert window.banner.isVisibleTo(window)
    assert notice in window.banner.messages[-1].splitlines()
    assert window.device_label.text() == cpu
    assert window.errors.messages == []  # a notice, not an error
    reference = expected.analyze(CHELSEA)
    np.testing.assert_allclose(window.data.cam, expected.gradcam(reference, "C5"), atol=1e-5)

    with qtbot.waitSignal(window.view_shown, timeout=60_000):
        window.set_options(stage="C3", cam_stage="C4")
    qtbot.waitUntil(window.idle, timeout=60_000)
    assert window.data.notice == notice  # it stays said
    assert notice in window.banner.messages[-1].splitlines()
    assert window.device_label.text() == cpu
    assert gpu.failures == 1
    assert window.errors.messages == []
    assert hooks_left(analyzer.model) == 0


# --- exports that cannot be written: nothing half-written, one clear error -----------------

# Each fault is set on the folder files are exported to.
FAULTS = ("disk full", "folder not writable", "target is a folder", "target busy")
REASON_TEXT = {
    "disk full": "No space left on device",
    "folder not writable": "Permission denied",
    "target is a folder": "Is a directory",
    "target busy": "Device or resource busy",
}
DISK_FREE = 400_000  # bytes: a ResNet101 C1 grid fits, its C2 grid (~600 kB) does not


class FullDisk:
    """A disk with ``free`` bytes left: a write takes what fits, then fails (ENOSPC)."""

    def __init__(self, free: int) -> None:
        self.free = free
        self._fdopen = os.fdopen

    def fdopen(self, handle: int, *args: Any, **kwargs: Any) -> _FillingFile:
        return _FillingFile(self, self._fdopen(handle, *args, **kwargs))


class _FillingFile:
    def __init__(self, disk: FullDisk, file: io.BufferedWriter) -> None:
        self.disk, self.file = disk, file

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.file.close()

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        taken = min(len(view), self.disk.free)
        self.file.write(view[:taken])
        self.file.flush()  # on the disk, as the part a real full disk keeps
        self.disk.free -= taken
        if taken < len(view):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return taken


def inject(
    fault: str,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    targets: tuple[str, ...] = (),
    *,
    free: int = DISK_FREE,
) -> None:
    """Set ``fault`` on ``folder``: ``targets`` are the names a folder is put in the way of, or
    that another program holds; ``free``: the bytes a full disk takes before it fails."""
    folder = folder.resolve()

    def inside(path: object) -> bool:
        path = Path(os.fsdecode(path)).resolve()
        return folder in (path, path.parent)

    if fault == "disk full":
        monkeypatch.setattr(export.os, "fdopen", FullDisk(free).fdopen)
    elif fault == "folder not writable":  # as chmod 555 would, for root too
        real_open = os.open

        def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writing and inside(path):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", guarded_open)
    elif fault == "target is a folder":
        for name in targets:
            (folder / name).mkdir(parents=True)
            (folder / name / "keep.txt").write_text("the user's\n")
    elif fault == "target busy":  # a file another program holds, as Windows reports it
        real_replace = os.replace

        def busy(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
            if inside(target) and Path(os.fsdecode(target)).name in targets:
                # As os.replace reports it: both names.
                strerror = os.strerror(errno.EBUSY)
                raise OSError(errno.EBUSY, strerror, os.fsdecode(source), None, os.fsdecode(target))
            real_replace(source, target, *args, **kwargs)

        monkeypatch.setattr(export.os, "replace", busy)
    else:
        raise ValueError(fault)


def leftovers(folder: Path) -> list[str]:
    """Temporary files and files that are not whole PNG or CSV files, anywhere in ``folder``."""
    bad = []
    for path in folder.rglob("*"):
        if path.name.endswith(".part") or path.name.startswith("."):
            bad.append(f"{path.name} (temporary)")
        elif path.is_file() and path.suffix == ".png":
            try:
                with Image.open(path) as image:
                    image.load()
            except (OSError, SyntaxError) as error:
                bad.append(f"{path.name} ({error})")
        elif path.is_file() and path.suffix == ".csv":
            with path.open(newline="") as file:
                rows = list(csv.reader(file))
            if not rows or not path.read_bytes().endswith(b"\n"):
                bad.append(f"{path.name} (cut short)")
    return bad


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def an_earlier_export(path: Path) -> None:
    """A whole PNG at ``path``, as an earlier export left it."""
    Image.new("RGB", (3, 2), (9, 8, 7)).save(path)


@pytest.fixture(scope="module")
def analysed(analyzer_of) -> tuple[Analyzer, AnalysisResult]:
    analyzer = analyzer_of("resnet101")
    return analyzer, analyzer.analyze(gradient_image(), source="photo.png")


def failed_api_export(
    analysed, folder: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> tuple[OSError, Path, dict[str, bytes]]:
    """Export into ``folder`` with ``fault`` set: the error, the file it failed on, and the
    files there before."""
    analyzer, result = analysed
    folder.mkdir()
    grid = render_grid(result.stages["C2"])
    old = folder / "grid.png"
    an_earlier_export(old)  # to be replaced
    in_the_way = "photo_resnet101_C1.png" if fault == "target is a folder" else "grid.png"
    inject(fault, folder, monkeypatch, targets=(in_the_way,))
    before = files_of(folder)
    if fault == "target is a folder":
        target = folder / "photo_resnet101_C1.png"
    elif fault == "disk full":
        target = folder / "photo_resnet101_C2.png"  # the C1 grid fits, this one does not
    else:
        target = old
    if target == old:
        write = functools.partial(save_grid, old, result, "C2", grid)
    else:
        write = functools.partial(export_result, analyzer, result, folder, "photo")
    with pytest.raises(OSError, match=REASON_TEXT[fault]) as raised:
        write()
    monkeypatch.undo()
    return raised.value, target, before


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_api_export_leaves_nothing_half_written(
    analysed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    folder = tmp_path / "out"
    error, _, before = failed_api_export(analysed, folder, monkeypatch, fault)
    assert error.errno is not None
    assert os.strerror(error.errno) == REASON_TEXT[fault]
    assert leftovers(folder) == []
    after = files_of(folder)
    for name, content in before.items():
        assert after[name] == content, f"{name} was changed"
    new = sorted(set(after) - set(before))
    assert new == []  # all of the export or nothing: the grid written before is taken back


def test_a_failed_api_export_names_the_file_not_its_temporary(
    analysed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error names the file that could not be written: not the hidden temporary file
    (gone by then), and not nothing at all (a full disk's error carries no name)."""
    unclear = {}
    for number, fault in enumerate(FAULTS):
        error, target, _ = failed_api_export(analysed, tmp_path / str(number), monkeypatch, fault)
        if str(target) not in str(error) or ".part" in str(error):
            unclear[fault] = str(error)
    assert unclear == {}, f"errors that do not name the file: {unclear}"


def test_a_failed_timings_export_keeps_the_old_file(
    analysed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, result = analysed
    target = tmp_path / "timings.csv"
    save_timings(target, result.timings)
    old = target.read_bytes()
    inject("disk full", tmp_path, monkeypatch, free=len(old) // 2)
    with pytest.raises(OSError, match="No space left on device"):
        save_timings(target, result.timings)
    monkeypatch.undo()
    assert target.read_bytes() == old
    assert [path.name for path in tmp_path.iterdir()] == ["timings.csv"]


def run_cli(main: Callable[[list[str]], int], words: list[object]) -> tuple[int, str, str]:
    """``fmviz export WORDS --weights random --device cpu``, in-process."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["export", *map(str, words), "--weights", "random", "--device", "cpu"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def cli(analyzer_of, monkeypatch: pytest.MonkeyPatch) -> Callable[[list[object]], tuple]:
    """``fmviz export`` in-process, on the shared random networks."""
    from visualizer import core as engine
    from visualizer.cli import main

    monkeypatch.setattr(engine, "Analyzer", lambda model, *_args, **_kw: analyzer_of(model))
    return lambda words: run_cli(main, words)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_cli_export_is_one_error_line_per_image(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    images = []
    for index, name in enumerate(["photo.png", "snap.png"]):
        gradient_image(seed=index).save(tmp_path / name)
        images.append(tmp_path / name)
    out = tmp_path / "out"
    out.mkdir()
    if fault != "target is a folder":
        an_earlier_export(out / "photo_resnet101_C2.png")
    inject(fault, out, monkeypatch, targets=("photo_resnet101_C2.png",))
    before = files_of(out)

    status, stdout, err = cli([*images, "--out", out, "--stages", "C1,C2"])

    monkeypatch.undo()
    lines = err.splitlines()
    assert status == 1
    assert "Traceback" not in err
    assert leftovers(out) == []
    after = files_of(out)
    for name, content in before.items():
        assert after[name] == content, f"{name} was changed"
    reason = REASON_TEXT[fault]
    if fault == "folder not writable":  # found before any network runs
        assert lines == [f"error: {out}: cannot write there ({reason})"]
        assert after == before
        return
    failed = [images[0]] if fault in ("target is a folder", "target busy") else images
    assert len(lines) == len(failed), err
    for line, image in zip(lines, failed, strict=True):
        assert line.startswith(f"error: {image}: "), line
        assert str(out) in line, line
        assert line.endswith(f"({reason})"), line
    assert f"exported {2 - len(failed)} of 2 images" in stdout
    if fault != "disk full":  # the other image is all there
        parts = ("C1.png", "C2.png", "gradcam_C5.png", "timings.csv")
        assert {name for name in after if name.startswith("snap_")} == {
            f"snap_resnet101_{part}" for part in parts
        }


@pytest.mark.parametrize("fault", ["target is a folder", "target busy"])
def test_a_failed_cli_export_names_the_file_it_could_not_write(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A line like "cannot write to out (Is a directory)" leaves the user to guess which file
    is in the way: the line names it."""
    image = tmp_path / "photo.png"
    gradient_image().save(image)
    out = tmp_path / "out"
    out.mkdir()
    inject(fault, out, monkeypatch, targets=("photo_resnet101_C2.png",))
    status, _, err = cli([image, "--out", out, "--stages", "C1,C2"])
    assert status == 1
    [line] = err.splitlines()
    assert line.startswith(f"error: {image}: ")
    assert "photo_resnet101_C2.png" in line, line


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("what", ["grid", "grids"])
def test_a_failed_window_export_is_one_red_line_naming_the_file(
    open_window, qtbot, tmp_path: Path, *, monkeypatch: pytest.MonkeyPatch, fault: str, what: str
) -> None:
    window = open_window([CHELSEA])
    folder = tmp_path / "exports"
    folder.mkdir()
    name = "chelsea_resnet101_C1.png"
    target = folder if what == "grids" else folder / name
    if what == "grid" and fault in ("disk full", "target busy"):
        an_earlier_export(folder / name)  # to be replaced
    # All five grids: the C1 grid fits on the disk, the C2 grid does not.
    inject(fault, folder, monkeypatch, (name,), free=DISK_FREE if what == "grids" else 1000)
    before = files_of(folder)
    monkeypatch.setattr(window, "ask_export_path", lambda _what, _name: str(target))
    errors: list[str] = []
    window.error_shown.connect(errors.append)

    window.export(what)
    qtbot.waitUntil(lambda: window.idle() and bool(errors), timeout=60_000)
    qtbot.wait(50)

    monkeypatch.undo()
    message = f"{target}: cannot be written ({REASON_TEXT[fault]})"
    assert errors == [message]
    assert window.errors.messages == [message]
    assert window.errors.isVisibleTo(window)
    assert leftovers(folder) == []
    after = files_of(folder)
    for old, content in before.items():
        assert after[old] == content, f"{old} was changed"
    if what == "grid" or fault != "disk full":
        assert set(after) == set(before)
    with qtbot.waitSignal(window.view_shown, timeout=60_000):  # the window goes on working
        window.set_options(stage="C2")
    assert window.data.options.stage == "C2"
    assert errors == [message]


# --- a weights download cut off half-way -----------------------------------------------------


class Server:
    """Stands for download.pytorch.org: serves ``payload``, cut off as ``fault`` says."""

    def __init__(self, payload: bytes, fault: str | None) -> None:
        self.payload, self.fault = payload, fault
        self.requests: list[str] = []

    def urlopen(self, request: Any, *_args: Any, **_kwargs: Any) -> _Response:
        self.requests.append(request.full_url)
        return _Response(self.payload, self.fault)


class _Response:
    def __init__(self, payload: bytes, fault: str | None) -> None:
        self.payload, self.fault, self.sent = payload, fault, 0
        self.cut = len(payload) // 2 if fault else len(payload)

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def info(self) -> email.message.Message:
        headers = email.message.Message()
        headers["Content-Length"] = str(len(self.payload))
        return headers

    def read(self, size: int = -1) -> bytes:
        if self.sent >= self.cut:
            if self.fault == "connection reset":
                raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
            if self.fault == "timeout":
                raise TimeoutError("The read operation timed out")
            if self.fault == "incomplete chunked read":
                raise http.client.IncompleteRead(b"", len(self.payload) - self.sent)
            return b""  # "closed early", or the whole file sent
        end = self.cut if size < 0 else min(self.cut, self.sent + size)
        chunk = self.payload[self.sent : end]
        self.sent = end
        return chunk


class _Connection:
    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None


@pytest.fixture(scope="module")
def checkpoint(networks) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A ResNet101 checkpoint in torchvision's format (random weights, not the real ones),
    as bytes, and its state dict: the session's random ResNet101's (``networks``, what
    ``build_model("resnet101", "random")`` gives), each weight moved a little (new tensors:
    the shared network is left as it is)."""
    state = networks.model("resnet101").state_dict()
    state = {key: tensor + 0.001 if tensor.is_floating_point() else tensor
             for key, tensor in state.items()}  # fmt: skip
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), state


# How each cut shows, in the user's words (from urllib's errors, or torch.hub's hash check of
# what arrived).
CUTS = {
    "connection reset": "download interrupted",
    "timeout": "download timed out",
    "closed early": "download damaged (checksum mismatch)",  # Content-Length not met
    "incomplete chunked read": "download interrupted",  # a chunked reply cut off
}


@pytest.mark.parametrize("fault", list(CUTS))
def test_a_download_cut_off_leaves_no_file_and_the_next_one_is_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint, fault: str
) -> None:
    from models import weights

    payload, state = checkpoint
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    real_path = weights.imagenet_checkpoint_path("resnet101")
    # The served file is not torchvision's: its name carries its own hash, as torchvision's
    # names carry theirs, so that torch.hub's hash check passes for the whole file only.
    digest = hashlib.sha256(payload).hexdigest()[:8]
    cached = real_path.with_name(f"resnet101-{digest}.pth")
    monkeypatch.setattr(weights, "imagenet_checkpoint_path", lambda _arch: cached)
    monkeypatch.setattr(socket, "create_connection", lambda *_a, **_k: _Connection())
    server = Server(payload, fault)
    monkeypatch.setattr(torch.hub, "urlopen", server.urlopen)

    with pytest.raises(WeightsError) as raised:
        build_model("resnet101", "imagenet", progress=False)

    message = str(raised.value)
    assert "\n" not in message
    assert CUTS[fault] in message
    assert message.startswith(
        f"{cached.name} is not in {cached.parent} and could not be downloaded"
    )
    assert len(server.requests) == 1
    assert list(cached.parent.iterdir()) == []  # no half file, no .partial, nothing to trip on

    server.fault = None  # the next attempt gets the whole file
    model = build_model("resnet101", "imagenet", progress=False)
    assert len(server.requests) == 2
    assert [path.name for path in cached.parent.iterdir()] == [cached.name]
    assert cached.read_bytes() == payload
    loaded = model.state_dict()
    for key in ("conv1.weight", "layer3.22.bn2.running_mean", "fc.bias"):
        torch.testing.assert_close(loaded[key], state[key], rtol=0, atol=0)


# --- the window closed in the middle of an analysis ------------------------------------------


def test_closing_the_window_during_an_analysis_ends_cleanly(
    open_window, analyzer_of, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from PySide6.QtWidgets import QApplication

    from visualizer.ui import jobs
    from visualizer.ui.worker import SHUTDOWN_WAIT_S

    model = analyzer_of("resnet101").model
    analyzer = Analyzer(model, device="cpu")
    monkeypatch.setattr(jobs, "_new_analyzer", lambda *_args: analyzer)
    window = open_window([CHELSEA])
    image = tmp_path / "next.png"
    gradient_image(seed=3).save(image)

    layer = model.get_submodule("layer3.5.conv2")  # half-way through the network
    inside = threading.Event()

    def slow(x: torch.Tensor) -> torch.Tensor:
        inside.set()
        time.sleep(0.5)  # the analysis is under way, the network's hooks are on
        return type(layer).forward(layer, x)

    layer.__dict__["forward"] = slow
    shown: list[int] = []
    window.view_shown.connect(lambda: shown.append(1))
    try:
        window.add_files([str(image)])
        deadline = time.monotonic() + 60
        while not inside.is_set():
            assert time.monotonic() < deadline, "the analysis did not start"
            QApplication.processEvents()
            time.sleep(0.005)
        assert hooks_left(model) > 1  # caught in the middle: hooks and timing wrappers on
        started = time.monotonic()
        window.close()
        closing = time.monotonic() - started
    finally:
        del layer.__dict__["forward"]
    assert closing < SHUTDOWN_WAIT_S, f"closing took {closing:.1f} s"
    assert [t.name for t in threading.enumerate() if t.name.startswith("fmviz-")] == []
    assert not window.isVisible()
    for _ in range(10):
        QApplication.processEvents()
        time.sleep(0.01)
    assert shown == []  # the analysis that finished after the close showed nothing
    assert hooks_left(model) == 0  # and took its hooks off the network

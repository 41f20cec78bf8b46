"""Shared test set-up: headless Qt, OpenMP threads that do not spin long, the device the tests
run their models on, and the random-weight networks that every folder's tests share.

Memory: a random VGG16 holds 0.53 GB of weights, a ResNet101 0.17 GB. Each architecture is
built once per session (``networks``) and shared by the tests of every folder; the reference
networks a folder builds besides (torchvision's twins, …) are let go after the last test that
uses them (``release_after_last_use``).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.memory import give_memory_back, resident_bytes, trim

if TYPE_CHECKING:
    from torch import nn

    from visualizer.core import Analyzer

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# libgomp's threads (PyTorch's on Linux) spin for a while at the end of every parallel region
# until all have arrived. On two cores, when other processes run too (the apps and benchmarks
# the tests start in the background, other test runs), one of the two is descheduled and the
# other spins on, layer after layer. A ResNet101 forward and backward pass, with two other
# torch processes and a busy one beside it: 8–14 s spinning as long as libgomp does by
# default (300 000 turns), 7–8.5 s with 100 000, 1.3–1.5 s with 10 000, 1.9–2 s not spinning
# at all (OMP_WAIT_POLICY=PASSIVE); alone: 0.44–0.51 s, 0.45–0.47 s with 10 000, 0.61 s not
# spinning. Read once, when torch loads libgomp (no test module has imported torch yet); the
# processes the tests start inherit it.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")


@pytest.fixture(scope="session")
def device() -> str:
    """Where model computations run: ``FMVIZ_TEST_DEVICE`` (e.g. ``cuda``), the CPU by default."""
    name = os.environ.get("FMVIZ_TEST_DEVICE", "cpu")
    if name != "cpu":
        import torch

        if torch.device(name).type != "cuda" or not torch.cuda.is_available():
            pytest.fail(f"FMVIZ_TEST_DEVICE={name} is not available here")
        # Exact comparisons with the references need full float32, not TF32 tensor cores.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return name


@pytest.fixture(scope="session")
def modules_after() -> Callable[[str], set[str]]:
    """The modules a fresh interpreter has loaded after running a statement."""

    def run(statement: str) -> set[str]:
        code = f"{statement}; import sys; print('\\n'.join(sys.modules))"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
        )
        return set(result.stdout.split())

    return run


# --- the networks every folder shares ---------------------------------------------------------


class Networks:
    """Random-weight analyzers, one per architecture and device, each built on first use and
    kept for the session (thread-safe: the window tests' workers ask from their threads).

    Tests share them: they may analyse with them, hook them and patch them for the test's
    duration, but must leave them as they found them. A test that changes a network for good
    (its weights, its device) builds its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[tuple[str, str], Analyzer] = {}

    def analyzer(self, arch: str, device: str = "cpu") -> Analyzer:
        """``Analyzer(arch, "random", device)``, shared."""
        # From its own module: tests replace ``visualizer.core.Analyzer`` for a while.
        from visualizer.core.analysis import Analyzer

        with self._lock:
            if (arch, device) not in self._built:
                self._built[arch, device] = Analyzer(arch, "random", device, progress=False)
            return self._built[arch, device]

    def model(self, arch: str) -> nn.Module:
        """Our network of ``arch`` with ``weights="random"``, on the CPU: the CPU analyzer's."""
        return self.analyzer(arch, "cpu").model


@pytest.fixture(scope="session")
def networks() -> Networks:
    return Networks()


# --- a benchmark started early ------------------------------------------------------------

STARTUP_BENCH_TESTS = ("ui", "test_bench_startup.py")


@dataclass
class StartupBench:
    """``fmviz bench --startup --runs 1 --json``, running in the background."""

    process: subprocess.Popen
    stdout: Path
    stderr: Path

    def finish(self, timeout_s: float) -> tuple[int | None, str, str]:
        """The exit status (None: still running after ``timeout_s`` more, then killed), what
        it wrote to stdout and to stderr."""
        try:
            status = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            status = None
        read = {"errors": "replace", "encoding": "utf-8"}
        return status, self.stdout.read_text(**read), self.stderr.read_text(**read)


@pytest.fixture(scope="session", autouse=True)
def startup_bench(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartupBench | None]:
    """``fmviz bench --startup`` in its own process, as a user would run it (its own home
    folder), for tests/ui/test_bench_startup.py: started with the session's first test, so
    that its launches of the app and of the references (15–25 s) pass while other tests run.
    Its timings are not judged there, only reported."""
    if not any(item.path.parts[-2:] == STARTUP_BENCH_TESTS for item in request.session.items):
        yield None
        return
    folder = tmp_path_factory.mktemp("startup-bench")
    home = folder / "home"
    home.mkdir()
    stdout, stderr = folder / "stdout.json", folder / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "visualizer", "bench", "--startup", "--runs", "1", "--json"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=errors,
            env={**os.environ, "HOME": str(home)},
        )
    bench = StartupBench(process, stdout, stderr)
    yield bench
    if process.poll() is None:
        process.kill()
        process.wait()


# --- letting go of what only some tests need --------------------------------------------------

_LAST_USER: dict[str, str] = {}  # fixture name → node id of the last test that uses it
_LAST_IN_MODULE: dict[tuple[str, str], str] = {}  # the same, module by module
_RELEASES: defaultdict[str, list[tuple[Callable[[], object], bool]]] = defaultdict(list)


def pytest_collection_finish(session: pytest.Session) -> None:
    _LAST_USER.clear()
    _LAST_IN_MODULE.clear()
    for item in session.items:  # in the order they run
        for name in getattr(item, "fixturenames", ()):
            _LAST_USER[name] = item.nodeid
            _LAST_IN_MODULE[name, str(item.path)] = item.nodeid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    released = False
    for name, releases in _RELEASES.items():
        last = _LAST_USER.get(name) == item.nodeid
        last_here = _LAST_IN_MODULE.get((name, str(item.path))) == item.nodeid
        for release, each_module in releases:
            if last or (each_module and last_here):
                release()
                released = True
    if released:
        give_memory_back()
    return result


@pytest.fixture(scope="session")
def release_after_last_use() -> Callable[..., None]:
    """``release_after_last_use(fixture_name, release, each_module=False)``: call
    ``release()`` (e.g. a cache's ``cache_clear``) once the last test that uses that fixture
    has run (``each_module``: also after its last test in each module, where the module's other
    tests would keep it too long; a later module's test builds again what it needs). A session
    fixture holding networks that only some tests need registers its cache so."""

    def register(name: str, release: Callable[[], object], *, each_module: bool = False) -> None:
        _RELEASES[name].append((release, each_module))

    return register


class _Trimmer:
    """Gives memory back once the resident set has grown by ``step`` since the last time (or
    since the lowest it was seen at after that): the allocator's free pages (5–10 ms), and,
    if that was not enough, what tests left in reference cycles (windows, tracebacks; a full
    collection takes 0.2 s with torch and Qt loaded, too long to make after every test)."""

    def __init__(self, step: int = 128 * 2**20) -> None:
        self.step = step
        self.low = 0  # the first call gives back

    def __call__(self) -> None:
        resident = resident_bytes()
        if resident > self.low + self.step:
            trim()
            resident = resident_bytes()
            if resident > self.low + self.step:
                gc.collect()
                trim()
                resident = resident_bytes()
        self.low = min(self.low, resident) if resident <= self.low + self.step else resident


@pytest.fixture(scope="session")
def _trimmer() -> _Trimmer:
    return _Trimmer()


@pytest.fixture(autouse=True)
def _memory_given_back(_trimmer: _Trimmer) -> Iterator[None]:
    """After each test: what the window's session froze is collectable again, and memory goes
    back to the system once the resident set has grown by 128 MiB: what the window tests
    leave in reference cycles (Qt and pyqtgraph objects, images) and the allocator's free
    pages from the networks tests build and drop otherwise added up to gigabytes.

    The window's session calls ``gc.freeze()`` once a network is loaded (the app's long-lived
    objects, left out of collections); here that would keep for good whatever the test made
    before it, windows and analyses included.
    """
    yield
    if gc.get_freeze_count():
        gc.unfreeze()  # the next full collection frees them
    if sys.platform == "linux":
        _trimmer()

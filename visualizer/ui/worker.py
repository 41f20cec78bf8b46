"""Background work for the window: jobs run off the event loop, replies come back as signals.

Each request gets a generation number. A request of a kind ("view", "model", …) that a newer
one of the same kind has overtaken is skipped before it starts, and its reply, if it was
already running, is marked stale, so the window shows only the latest (latest wins); a job
that reports its steps (an attribution method, pass by pass) stops at its next step once it is
stale. Replies are plain data (`jobs.ViewData` and the like); Qt objects stay on the main
thread.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from visualizer.ui.jobs import Session
from visualizer.ui.method_jobs import Cancelled, JobControl

SHUTDOWN_WAIT_S = 5.0  # the longest a closing window waits for a running job
WORKER_NICENESS = 5  # lower priority than the window's thread, not idle-only
# Errors whose message already says what went wrong, for the user, in one line.
EXPECTED_ERRORS = (
    "ImageLoadError",
    "WeightsError",
    "DeviceError",
    "ValueError",
    "OSError",
    "LabelsError",
    "PreprocessingError",
    "IndexFileError",
)


@dataclass(frozen=True)
class Reply:
    """What a job gave, or the one-line reason it failed."""

    kind: str
    generation: int
    value: Any = None
    error: str | None = None
    context: Any = None  # what the request carried along for its reply (e.g. a file name)
    skipped: bool = False  # overtaken by a newer request of its kind (or cancelled)


class Worker(QObject):
    """Runs jobs on background threads, one at a time per lane, and reports back.

    Lanes: ``"model"`` (networks, analyses, exports: one thread, so one `Session`) and
    ``"files"`` (reading images, so a large drop does not wait for the network).
    """

    replied = Signal(object)  # Reply, delivered on the main thread; one per request
    progress = Signal(str, float)  # what is happening, fraction done (-1: unknown)
    # A step of a job that reports them: (kind, generation, done, total, what is being done).
    stepped = Signal(str, int, int, int, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lanes: dict[str, _Lane] = {}
        self._latest: dict[str, int] = {}
        self._generations = itertools.count(1)
        self._session = Session(self._report)
        self._closed = False

    def submit(
        self,
        kind: str,
        job: Callable[[Session], Any],
        *,
        lane: str = "model",
        latest_wins: bool = True,
        context: Any = None,
    ) -> int:
        """Run ``job(session)`` on ``lane``; returns the request's generation number."""
        if self._closed:
            return 0
        generation = next(self._generations)
        if latest_wins:
            self._latest[kind] = generation
        if lane not in self._lanes:
            self._lanes[lane] = _Lane(f"fmviz-{lane}")
        self._lanes[lane].put(lambda: self._run(kind, generation, job, latest_wins, context))
        return generation

    def cancel(self, *kinds: str) -> None:
        """Drop the requests of ``kinds`` not started yet; a running one's reply will be stale."""
        for kind in kinds:
            self._latest[kind] = next(self._generations)

    def is_current(self, reply: Reply) -> bool:
        """False when a newer request of the same kind was made after this reply's."""
        return self.is_latest(reply.kind, reply.generation)

    def is_latest(self, kind: str, generation: int) -> bool:
        """False when a request of ``kind`` newer than ``generation`` was made (or the kind
        was cancelled since)."""
        latest = self._latest.get(kind)
        return latest is None or latest == generation

    def shutdown(self, wait_s: float = SHUTDOWN_WAIT_S) -> None:
        """Drop what is queued and stop the threads, waiting at most ``wait_s`` for a job that
        is running (a download can take minutes: the window does not wait for it)."""
        self._closed = True
        deadline = time.monotonic() + wait_s
        for lane in self._lanes.values():
            lane.stop()
        for lane in self._lanes.values():
            lane.join(max(0.0, deadline - time.monotonic()))
        self._lanes.clear()

    def _run(
        self,
        kind: str,
        generation: int,
        job: Callable[[Session], Any],
        latest_wins: bool,
        context: Any,
    ) -> None:
        if self._closed:
            return
        if latest_wins and self._latest.get(kind) != generation:
            self.replied.emit(Reply(kind, generation, context=context, skipped=True))
            return

        def cancelled() -> bool:
            return self._closed or (latest_wins and self._latest.get(kind) != generation)

        def step(done: int, total: int, what: str) -> None:
            if not self._closed:
                self.stepped.emit(kind, generation, done, total, what)

        try:
            with self._session.running(JobControl(cancelled, step)):
                value = job(self._session)
            reply = Reply(kind, generation, value=value, context=context)
        except Cancelled:  # stopped at a step: overtaken or cancelled
            reply = Reply(kind, generation, context=context, skipped=True)
        except Exception as error:  # noqa: BLE001 (every failure reaches the user as a message)
            reply = Reply(kind, generation, error=describe_error(error), context=context)
        if not self._closed:
            self.replied.emit(reply)

    def _report(self, text: str, fraction: float | None) -> None:
        if not self._closed:
            self.progress.emit(text, -1.0 if fraction is None else fraction)


class _Lane:
    """One background thread running jobs in order. A daemon: a job still running when the
    app quits (a stalled download) does not keep the process alive."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def put(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _serve(self) -> None:
        yield_to_the_window()
        preload_torch_libraries()
        while (job := self._jobs.get()) is not None:
            job()


def describe_error(error: BaseException) -> str:
    """One line for the user; a failure nobody foresaw also goes to stderr with its trace."""
    text = " ".join(str(error).split()) or type(error).__name__
    if type(error).__name__ in EXPECTED_ERRORS or isinstance(error, OSError):
        return text
    traceback.print_exception(error, file=sys.stderr)
    return f"unexpected {type(error).__name__}: {text[:300]}"


_preloaded = threading.Lock()


def preload_torch_libraries() -> None:
    """Map torch's largest native libraries with the GIL released, before ``import torch``.

    Importing torch loads ~450 MB of shared libraries; through Python's import that happens
    with the GIL held, and the window's event loop stops for 0.3–0.4 s (measured here). Loaded
    first through ``dlopen`` called by ctypes (which releases the GIL), they are already there
    when torch imports them. Linux only; anything unexpected is left to the import itself.
    """
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return
    with _preloaded:
        try:
            import ctypes  # noqa: PLC0415
            import importlib.util  # noqa: PLC0415

            spec = importlib.util.find_spec("torch")
            if spec is None or spec.origin is None:
                return
            folder = os.path.join(os.path.dirname(spec.origin), "lib")
            libc = ctypes.CDLL(None)
            libc.dlopen.restype = ctypes.c_void_p
            libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
            for name in ("libc10.so", "libtorch_cpu.so"):  # the CPU libraries: no CUDA needed
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    libc.dlopen(path.encode(), os.RTLD_NOW | os.RTLD_GLOBAL)
        except (OSError, AttributeError, ValueError):
            return


def yield_to_the_window() -> None:
    """Lower this thread's scheduling priority (and so that of the threads it starts, such as
    torch's intra-op pool): with as many busy threads as cores, the window still gets its turn."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # Linux gives each thread its own niceness
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)

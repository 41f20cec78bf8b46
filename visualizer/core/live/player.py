"""Playing a live source on a thread of its own, newest frame first.

The capture thread reads frames as the source gives them (a video file at its own pace, as a
camera would) and leaves the newest in a one-frame slot. Whoever analyses takes the slot's
frame when it is ready for another; a frame that arrives while the last one is still waiting
replaces it and is counted as dropped (latest wins), so what is analysed is never behind
what is captured by more than one analysis.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from visualizer.core.live.sources import Frame, LiveSourceError, VideoSource

RATE_WINDOW_S = 2.0  # frames per second are counted over the last this many seconds
CLOSE_WAIT_S = 5.0  # the longest close() waits for the capture thread (a camera read)


class RateMeter:
    """Events per second over the last ``window`` seconds (0.0 before two events)."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        """Count one event (at ``now``, ``time.monotonic()`` seconds, default: now)."""
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while len(self._times) > 2 and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self) -> float:
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


@dataclass(frozen=True)
class PlayerStats:
    """The player's counts so far: ``captured`` = ``taken`` + ``dropped`` (+ 1 waiting)."""

    captured: int
    taken: int
    dropped: int
    capture_fps: float
    paused: bool
    ended: bool  # the source has no more frames and the last one has been taken
    error: str | None  # why the source stopped early, in one line


class Player:
    """Plays ``source`` on a thread; ``take()`` gives the newest frame not yet taken.

    ``realtime``: a file's frames come at their presentation times (a camera's always come
    at its own pace); otherwise as fast as they decode. ``on_frame`` is called on the
    capture thread after each frame and once at the end: keep it short (e.g. emit a signal).
    The player owns the source: ``close()`` (or the end of a ``with`` block) stops the
    thread and releases the file or device. Frames come from the start only once ``start()``
    is called, or at once ``step()`` is.
    """

    def __init__(
        self,
        source: VideoSource,
        *,
        realtime: bool = True,
        on_frame: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.realtime = realtime
        self._on_frame = on_frame or (lambda: None)
        self._lock = threading.Condition()
        self._slot: Frame | None = None
        self._captured = self._taken = self._dropped = 0
        self._rate = RateMeter()
        self._paused = False
        self._steps = 0
        self._stopping = False
        self._done = False
        self._error: str | None = None
        self._origin: float | None = None  # monotonic time of the source's time 0
        self._thread = threading.Thread(target=self._run, name="fmviz-live", daemon=True)

    def start(self, *, paused: bool = False) -> None:
        """Start playing (or start paused: frames then come one ``step()`` at a time)."""
        self._paused = paused
        if not self._thread.is_alive() and not self._done:
            self._thread.start()

    def take(self) -> Frame | None:
        """The newest frame not taken yet (None: none came since the last one taken)."""
        with self._lock:
            frame, self._slot = self._slot, None
            if frame is not None:
                self._taken += 1
            return frame

    def pause(self) -> None:
        with self._lock:
            self._paused = True
            self._lock.notify_all()

    def resume(self) -> None:
        with self._lock:
            self._paused, self._steps, self._origin = False, 0, None
            self._lock.notify_all()

    def step(self) -> None:
        """Pause, and let exactly one more frame through."""
        with self._lock:
            self._paused = True
            self._steps += 1
            self._lock.notify_all()
        if not self._thread.is_alive() and not self._done:
            self._thread.start()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running(self) -> bool:
        """Whether the capture thread is still running (it releases the source as it ends)."""
        return self._thread.is_alive()

    def stats(self) -> PlayerStats:
        with self._lock:
            return PlayerStats(
                captured=self._captured,
                taken=self._taken,
                dropped=self._dropped,
                capture_fps=self._rate.rate(),
                paused=self._paused,
                ended=self._done and self._slot is None,
                error=self._error,
            )

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Stop the capture thread and release the source (waiting at most ``wait_s``)."""
        with self._lock:
            self._stopping = True
            self._slot = None
            self._lock.notify_all()
        if self._thread.ident is None:  # never started: the thread would have closed it
            self.source.close()
        else:
            self._thread.join(wait_s)

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            for decoded in self.source.decoded_frames():
                turn = self._wait_turn(decoded.time)
                if turn == "stop":
                    break
                if turn == "show":  # converted only now: a camera's frames passed over are not
                    self._publish(decoded.to_frame())
        except LiveSourceError as failure:
            self._error = str(failure)
        except Exception as failure:  # noqa: BLE001 (a frame that cannot be converted: said)
            why = " ".join(str(failure).split()) or type(failure).__name__
            self._error = f"{self.source.source}: frame {self._captured}: {why}"
        finally:
            self.source.close()
            with self._lock:
                self._done = True
            self._on_frame()

    def _wait_turn(self, time_s: float) -> str:
        """Whether the frame at ``time_s`` (seconds from the start) is shown (``"show"``),
        passed over (``"skip"``: a camera's frames while paused) or playing stops
        (``"stop"``); waits for its time or for a step."""
        with self._lock:
            while True:
                if self._stopping:
                    return "stop"
                if self._paused:
                    if self._steps:
                        self._steps -= 1
                        return "show"
                    if self.source.is_camera:  # keep reading: the device's queue stays fresh
                        return "skip"
                    self._lock.wait()
                    continue
                if not self.realtime or self.source.is_camera:
                    return "show"
                now = time.monotonic()
                if self._origin is None:  # at the start, and on resuming: from this frame
                    self._origin = now - time_s
                delay = self._origin + time_s - now
                if delay <= 0:
                    return "show"
                self._lock.wait(delay)

    def _publish(self, frame: Frame) -> None:
        with self._lock:
            if self._stopping:
                return
            if self._slot is not None:
                self._dropped += 1
            self._slot = frame
            self._captured += 1
            self._rate.tick()
        self._on_frame()

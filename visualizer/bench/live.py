"""P14: the live view's loop on a video, timed as the window runs it (DESIGN.md §8).

A `Player` plays the video on its capture thread into its one-frame slot (latest wins), and
this thread does what the window's worker does for each frame: it takes the newest frame and
runs ``live_jobs.analyse_frame`` on it (``Session.view``: the analysis, Grad-CAM and the stage
grid, plus the recording with ``record``), then takes the next newest. Three runs, after one
untimed warm-up frame:

- **decode only**: the capture thread alone, frames as fast as they decode, nothing analysed:
  what the source and the decoder allow.
- **real time**: frames at the video's own rate (``realtime=True``), as from a camera; frames
  that arrive while one is analysed are dropped.
- **as fast as decoded**: ``realtime=False``, so that a frame always waits when the analysis
  ends: the most analysed frames per second this machine reaches (P14's figure; a 30 fps
  source would cap the real-time run at 30). The capture thread still decodes all the while,
  on the same cores.

Each run measures ``frames`` analysed frames; frame *i*'s cycle runs from its take to the
next frame's (the last one's: to the moment the next frame is there to be taken), so the
analysed frames per second are ``frames`` over the cycles' sum, and the analysis's share of a
frame's wall time is its analysis time over its cycle (the rest: recording, waiting for a
frame). A video that ends before is played again from the start (``plays``).

The default video is made here (``make_clip``): moving shapes over a gradient, 640×480,
30 fps, 10 s, MPEG-4, in a temporary folder removed at the end.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visualizer.core.live import (
    LiveSourceError,
    Player,
    PlayerStats,
    Recorder,
    RecordingError,
    VideoSource,
)
from visualizer.networks import NetworkSpec
from visualizer.ui.jobs import ModelSpec, Session, ViewOptions
from visualizer.ui.live_jobs import analyse_frame, frame_picture

if TYPE_CHECKING:
    from visualizer.core.live import Frame
    from visualizer.ui.live_jobs import LiveFrame

KEY = "P14"
TARGET = 30.0  # analysed frames per second, at least
WHAT = (
    "live view on a GPU: ResNet101 analysed frames per second with grid and Grad-CAM "
    "(frames as fast as they decode)"
)
DEFAULT_FRAMES = {"cpu": 60, "accelerator": 300}  # analysed frames a run, by device kind
DEFAULT_STAGE = ViewOptions().stage  # the grid the window shows at first
CLIP_SIZE = (640, 480)  # width, height of the generated video
CLIP_RATE = 30  # its frames per second
CLIP_SECONDS = 10
DECODE_S = 2.0  # the decode-only run plays (the clip again and again) this long
BUSY = 0.9  # a run whose frames' work fills this share of their cycles is limited by it
WAIT_S = 0.5  # the longest wait for the capture thread's signal before looking again

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)
Note = Callable[[str], None]


# --- the generated video --------------------------------------------------------------------


def clip_frame(index: int, size: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """Frame ``index`` of the generated clip: (H, W, 3) uint8, a colour gradient with a red
    square moving right, a blue bar moving down and a yellow disc going round."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = 40 + 120 * x // max(1, width)
    frame[..., 1] = 60 + 100 * y // max(1, height)
    frame[..., 2] = 110
    side = height // 4
    left = (8 + 6 * index) % max(1, width - side)
    frame[height // 3 : height // 3 + side, left : left + side] = (230, 40, 40)
    top = (4 * index) % max(1, height - 12)
    frame[top : top + 12, width // 5 : width // 5 + width // 2] = (40, 60, 220)
    angle = 2 * math.pi * index / 90
    cx, cy = width / 2 + width / 4 * math.cos(angle), height / 2 + height / 4 * math.sin(angle)
    frame[(x - cx) ** 2 + (y - cy) ** 2 <= (height / 10) ** 2] = (240, 220, 40)
    return frame


def make_clip(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = CLIP_SIZE,
    rate: int = CLIP_RATE,
    seconds: float = CLIP_SECONDS,
) -> Path:
    """Write the moving shapes as an MPEG-4 video of ``seconds`` at ``rate`` fps to
    ``path`` (the container its suffix names)."""
    frames = (clip_frame(index, size) for index in range(max(1, round(seconds * rate))))
    return write_video(path, frames, rate=rate, quality=3)


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    *,
    rate: int,
    quality: int = 3,
    rotation: int = 0,
) -> Path:
    """Write ``frames`` ((H, W, 3) uint8 RGB, all of one size) as MPEG-4 at ``rate`` fps to
    ``path``, in the container its suffix names. ``quality``: FFmpeg's qscale (1 best, 31
    worst); ``rotation``: a display rotation in degrees, as phones record upright video."""
    import av  # noqa: PLC0415

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": str(quality)}
        if rotation:
            stream.set_display_rotation(rotation)
        for index, pixels in enumerate(frames):
            if index == 0:
                stream.height, stream.width = pixels.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def open_video(video: str) -> VideoSource:
    """``video`` opened for reading; raises ``LiveSourceError`` naming it and why."""
    if os.path.isdir(video):
        raise LiveSourceError(f"{video}: a folder, not a video file")
    if not os.path.exists(video):
        raise LiveSourceError(f"{video}: no such file")
    return VideoSource(video)


# --- the runs -------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: list[float]) -> float | None:
    return float(np.percentile(values, 90)) if values else None


@dataclass
class DecodeRun:
    """The capture thread alone: frames decoded (and made RGB images) in ``seconds``."""

    frames: int
    seconds: float
    plays: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {"fps": self.fps, "frames": self.frames, "seconds": self.seconds,
                "plays": self.plays}  # fmt: skip


@dataclass
class LoopRun:
    """One run of the live loop: the player's counts and each analysed frame's costs."""

    realtime: bool
    recording: bool = False  # each analysed frame recorded too
    captured: int = 0
    taken: int = 0
    dropped: int = 0
    waiting: int = 0  # captured, not taken yet when the run ended (0 or 1)
    plays: int = 0
    capture_s: float = 0.0  # from the player's start to the run's end
    analysis_ms: list[float] = field(default_factory=list)
    record_ms: list[float] = field(default_factory=list)
    cycles_s: list[float] = field(default_factory=list)  # take to next take, each frame

    @property
    def analysed(self) -> int:
        return len(self.analysis_ms)

    @property
    def seconds(self) -> float:
        """From the first analysed frame's take to the end of the last one's cycle."""
        return sum(self.cycles_s)

    @property
    def analysed_fps(self) -> float:
        return self.analysed / self.seconds if self.seconds > 0 else 0.0

    @property
    def captured_fps(self) -> float:
        return self.captured / self.capture_s if self.capture_s > 0 else 0.0

    @property
    def shares(self) -> list[float]:
        """Each analysed frame's analysis time over its cycle."""
        return [
            ms / 1000 / s for ms, s in zip(self.analysis_ms, self.cycles_s, strict=True) if s > 0
        ]

    @property
    def work_shares(self) -> list[float]:
        """Each analysed frame's analysis and recording time over its cycle (the rest: the
        wait for a frame)."""
        return [
            (ms + record) / 1000 / s
            for ms, record, s in zip(self.analysis_ms, self.record_ms, self.cycles_s, strict=True)
            if s > 0
        ]

    def limited_by(self, decode_fps: float, rate: float | None) -> str:
        """What keeps this run from analysing more frames a second, in a few words: the
        work on each frame (when a frame waits as each one's work ends), else the video's
        rate (real time, where decoding keeps up with it), else decoding."""
        work = _median(self.work_shares) or 0.0
        if work >= BUSY:
            return "the analysis" + (" and recording" if self.recording else "")
        if self.realtime and rate and decode_fps >= rate:
            return f"the video's rate ({rate:g} fps)"
        return "decoding"

    @property
    def analysis_share(self) -> float:
        """All the frames' analysis time over the run's wall time."""
        return sum(self.analysis_ms) / 1000 / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        cycles_ms = [s * 1000 for s in self.cycles_s]
        return {
            "realtime": self.realtime,
            "analysed": self.analysed,
            "captured": self.captured,
            "dropped": self.dropped,
            "waiting": self.waiting,
            "plays": self.plays,
            "seconds": self.seconds,
            "capture_seconds": self.capture_s,
            "captured_fps": self.captured_fps,
            "analysed_fps": self.analysed_fps,
            "analysis_ms": {"median": _median(self.analysis_ms), "p90": _p90(self.analysis_ms)},
            "record_ms": (
                {"median": _median(self.record_ms), "p90": _p90(self.record_ms)}
                if self.recording
                else None
            ),
            "cycle_ms": {"median": _median(cycles_ms), "p90": _p90(cycles_ms)},
            "analysis_share": self.analysis_share,
            "analysis_share_median": _median(self.shares),
            "work_share_median": _median(self.work_shares),
        }


class _Playing:
    """The video played by one `Player` after another (again from the start when it ends),
    with the counts of all of them; the capture thread's signal wakes the waiting one."""

    def __init__(self, video: str, realtime: bool) -> None:
        self.video, self.realtime = video, realtime
        self.arrived = threading.Event()
        self.totals = PlayerStats(0, 0, 0, 0.0, False, False, None)
        self.plays = 0
        self.started = time.perf_counter()
        self.player = self._player()

    def __enter__(self) -> _Playing:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.player.close()

    def _player(self) -> Player:
        player = Player(open_video(self.video), realtime=self.realtime,
                        on_frame=self.arrived.set)  # fmt: skip
        self.plays += 1
        player.start()
        return player

    def _play_again(self) -> None:
        ended = self.player.stats()
        self.player.close()
        if ended.captured == 0:  # nothing to play again
            raise LiveSourceError(f"{self.video}: no frame could be decoded")
        self.totals = _sum(self.totals, ended)
        self.player = self._player()

    def stats(self) -> PlayerStats:
        return _sum(self.totals, self.player.stats())

    def next(self, *, take: bool = True) -> Frame | None:
        """The newest frame, once there is one (``take``); or, not taking it, None once one
        waits to be taken."""
        while True:
            self.arrived.clear()
            if take and (frame := self.player.take()) is not None:
                return frame
            stats = self.player.stats()
            if not take and stats.captured > stats.taken + stats.dropped:
                return None
            if stats.error is not None:
                raise LiveSourceError(stats.error)
            if stats.ended:
                self._play_again()
                continue
            self.arrived.wait(WAIT_S)


def _sum(a: PlayerStats, b: PlayerStats) -> PlayerStats:
    return PlayerStats(a.captured + b.captured, a.taken + b.taken, a.dropped + b.dropped,
                       b.capture_fps, b.paused, b.ended, b.error)  # fmt: skip


def decode_only(video: str, seconds: float | None = None) -> DecodeRun:
    """The capture thread alone, frames as fast as they decode, for ``seconds`` (default
    ``DECODE_S``; the video played again as needed): each frame is taken at once and nothing
    else is done."""
    seconds = DECODE_S if seconds is None else seconds
    with _Playing(video, realtime=False) as playing:
        while time.perf_counter() - playing.started < seconds:
            playing.next()
        elapsed = time.perf_counter() - playing.started
        return DecodeRun(playing.stats().captured, elapsed, playing.plays)


def live_loop(
    video: str,
    frames: int,
    analyse: Callable[[Frame], LiveFrame],
    *,
    realtime: bool,
    recording: bool = False,
    progress: Callable[[int], None] | None = None,
) -> LoopRun:
    """``frames`` frames analysed by ``analyse``, each the newest the player has when the
    last one is done, as the window's live view takes them (``recording``: ``analyse``
    records them too)."""
    run = LoopRun(realtime=realtime, recording=recording)
    with _Playing(video, realtime=realtime) as playing:
        taken_at = None
        for number in range(frames):
            frame = playing.next()
            now = time.perf_counter()
            if taken_at is not None:
                run.cycles_s.append(now - taken_at)
            taken_at = now
            done = analyse(frame)
            run.analysis_ms.append(done.analysis_ms)
            run.record_ms.append(done.record_ms)
            if progress is not None:
                progress(number + 1)
        playing.next(take=False)  # the last cycle ends when the next frame is there
        end = time.perf_counter()
        run.cycles_s.append(end - taken_at)
        stats = playing.stats()
        run.captured, run.taken, run.dropped = stats.captured, stats.taken, stats.dropped
        run.waiting = stats.captured - stats.taken - stats.dropped
        run.plays = playing.plays
        run.capture_s = end - playing.started
    return run


# --- the bench ------------------------------------------------------------------------------


@dataclass
class LiveBenchReport:
    """The three runs and what they ran on."""

    model: str
    network: str  # as people name it: "ResNet101"
    weights: str
    device: str
    stage: str
    cam_stage: str
    video: dict[str, Any]
    frames: int
    record: bool
    warmup_ms: float
    decode: DecodeRun
    realtime: LoopRun
    fastest: LoopRun
    recorded_frames: int | None = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def p14_note(self) -> str | None:
        """Why P14 is not judged in this run, or None when it is."""
        if not self.device.startswith("CUDA"):
            return f"a GPU target: shown, not judged, on {self.device}"
        if self.model != "resnet101":
            return f"a ResNet101 target: shown, not judged, for {self.model}"
        return None

    def as_json(self) -> dict[str, Any]:
        """Machine-readable: the P14 entry (as ``fmviz bench``'s targets: its ``ratio`` is
        the analysed frames per second, ``unit`` ``"fps"``), then each run's figures."""
        fps = self.fastest.analysed_fps
        note = self.p14_note
        what = WHAT + (", recording too" if self.record else "")
        entry: dict[str, Any] = {"ratio": fps, "target": TARGET, "compare": "≥",
                                 "ok": None if note else fps >= TARGET, "unit": "fps",
                                 "what": what}  # fmt: skip
        if note:
            entry["note"] = note
        judged = {} if note else {KEY: fps}
        analysis = _median(self.fastest.analysis_ms + self.realtime.analysis_ms)
        runs = {"realtime": self.realtime, "fastest": self.fastest}
        rate = self.video.get("rate")
        return {
            "bench": "live",
            "model": self.model,
            "network": self.network,
            "weights": self.weights,
            "device": self.device,
            "stage": self.stage,
            "cam_stage": self.cam_stage,
            "video": self.video,
            "frames": self.frames,
            "record": self.record,
            KEY: entry,
            "ratios": judged,
            "targets": {key: TARGET for key in judged},
            "met": {key: value >= TARGET for key, value in judged.items()},
            "warmup_ms": self.warmup_ms,
            "decode": self.decode.as_json(),
            **{
                name: run.as_json() | {"limited_by": run.limited_by(self.decode.fps, rate)}
                for name, run in runs.items()
            },
            # What the analysis's own time allows: one frame after another, never a wait.
            "analysis_limit_fps": 1000 / analysis if analysis else None,
            "recorded_frames": self.recorded_frames,
            "versions": self.versions,
        }


def run_live_bench(
    model: str,
    device: str = "auto",
    *,
    weights: str = "random",
    video: str | None = None,
    frames: int | None = None,
    stage: str = DEFAULT_STAGE,
    record: bool = False,
    progress: Progress | None = None,
    note: Note | None = None,
) -> LiveBenchReport:
    """Time the live loop of ``model`` on ``video`` (None: a generated clip): the decode-only
    run, the real-time run and the as-fast-as-decoded run, ``frames`` analysed frames each
    (None: ``DEFAULT_FRAMES`` of the device's kind); ``record``: each analysed frame recorded
    too, to a temporary video.

    Raises:
        LiveSourceError: ``video`` is missing, not a video, or cannot be decoded.
        RecordingError: the recording cannot be written.
        WeightsError, DeviceError, …: the network cannot be built where asked.
    """
    import av  # noqa: PLC0415
    import torch  # noqa: PLC0415

    report = progress or (lambda _done, _total, _label: None)
    label = f"bench --live {model}"
    with tempfile.TemporaryDirectory(prefix="fmviz-bench-live-") as folder:
        report(0, 1, f"{label}: the video")
        video, described, first = _video(video, Path(folder))
        report(0, 1, f"{label}: building the network")
        session = Session()
        spec = ModelSpec.of(NetworkSpec(model, weights), device)
        info = session.model(spec)
        accelerator = not info.device.startswith("CPU")
        frames = frames or DEFAULT_FRAMES["accelerator" if accelerator else "cpu"]
        options = ViewOptions(stage=stage)
        recorder = Recorder(Path(folder) / "recorded.mp4") if record else None
        keys = itertools.count(-1, -1)  # live pictures' keys, as the window's

        def analyse(frame: Frame) -> LiveFrame:
            picture = frame_picture(next(keys), described["name"], frame)
            return _checked(
                analyse_frame(session, spec, picture, options, frame, recorder=recorder)
            )

        try:
            total = 2 + 2 * frames
            report(0, total, f"{label}: warm-up frame")
            warmup = analyse(first)  # untimed: the first pass's set-up; the recording opened
            if note is not None:
                expected = 2 * frames * warmup.analysis_ms / 1000
                note(
                    f"bench --live: {frames} analysed frames a run, two runs; the warm-up frame "
                    f"took {warmup.analysis_ms:.0f} ms (expected ≲ {expected:.0f} s in all)"
                )
            report(1, total, f"{label}: decoding only")
            decoded = decode_only(video)
            runs = {}
            for realtime, name in ((True, "real time"), (False, "as fast as decoded")):
                done = 2 + frames * len(runs)
                report(done, total, f"{label}: {name}")
                runs[realtime] = live_loop(
                    video,
                    frames,
                    analyse,
                    realtime=realtime,
                    recording=record,
                    progress=lambda n, done=done, name=name: report(
                        done + n, total, f"{label}: {name}"
                    ),
                )
            recorded = None
            if recorder is not None:
                recorder.close()
                recorded = recorder.frames
        finally:
            if recorder is not None:
                recorder.discard()
    return LiveBenchReport(
        model=model,
        network=spec.label,
        weights=info.weights + (f" (asked {weights}: {info.fallback})" if info.fallback else ""),
        device=info.device,
        stage=stage,
        cam_stage=options.cam_stage,
        video=described,
        frames=frames,
        record=record,
        warmup_ms=warmup.analysis_ms + warmup.record_ms,
        decode=decoded,
        realtime=runs[True],
        fastest=runs[False],
        recorded_frames=recorded,
        versions={"torch": torch.__version__, "av": av.__version__},
    )


def _video(video: str | None, folder: Path) -> tuple[str, dict[str, Any], Frame]:
    """The video to play (``video``, else a clip made in ``folder``), what it is, and its
    first frame (for the warm-up); raises ``LiveSourceError`` for one that cannot be played."""
    generated = video is None
    if video is None:
        video = str(make_clip(folder / "shapes.mp4"))
    with open_video(video) as source:
        described = {
            "source": "generated moving shapes" if generated else video,
            "generated": generated,
            "name": source.name,
            "size": list(source.size),
            "rate": source.rate,
            "frames": source.frame_count,
        }
        first = next(source.frames(), None)
    if first is None:
        raise LiveSourceError(f"{video}: no frame could be decoded")
    return video, described, first


def _checked(done: LiveFrame) -> LiveFrame:
    """``done``, unless its recording failed: then the ``RecordingError`` it says."""
    if done.record_error is not None:
        raise RecordingError(done.record_error)
    return done


# --- the text report ------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def report_lines(results: dict[str, Any]) -> Iterator[str]:
    """The text report of ``fmviz bench --live`` from its JSON: settings, the runs, P14."""
    video = results["video"]
    width, height = video["size"]
    rate = f"{video['rate']:g} fps" if video["rate"] else "rate unknown"
    count = f", {video['frames']} frames" if video["frames"] else ""
    yield (
        f"fmviz live loop: {results['network']} on {results['device']}, grid "
        f"{results['stage']}, Grad-CAM at {results['cam_stage']}, weights {results['weights']}"
        + (", recording each analysed frame" if results["record"] else "")
    )
    yield (
        f"video: {video['source']}, {width}×{height}, {rate}{count} "
        "(played again from the start as needed)"
    )
    yield f"{results['frames']} analysed frames a run, after a warm-up frame of " + (
        f"{results['warmup_ms']:.0f} ms"
    )
    yield ""
    decode = results["decode"]
    yield (
        f"decode only (the capture thread, nothing analysed): {decode['fps']:.1f} fps "
        f"({decode['frames']} frames in {decode['seconds']:.1f} s)"
    )
    yield ""
    record = results["record"]
    header = f"{'':<22}{'captured':>9}{'analysed':>9}{'dropped':>8}{'analysis ms':>15}"
    under = f"{'':<22}{'fps':>9}{'fps':>9}{'frames':>8}{'median':>8}{'p90':>7}"
    if record:
        header += f"{'record ms':>15}"
        under += f"{'median':>8}{'p90':>7}"
    yield header + f"{'analysis share':>17}"
    yield under + f"{'median':>9}{'all':>8}"
    for name, key in (
        (f"real time ({rate})", "realtime"),
        ("as fast as decoded", "fastest"),
    ):
        run = results[key]
        line = (
            f"{name:<22}{run['captured_fps']:>9.1f}{run['analysed_fps']:>9.2f}"
            f"{run['dropped']:>8}{_ms(run['analysis_ms']['median']):>8}"
            f"{_ms(run['analysis_ms']['p90']):>7}"
        )
        if record:
            recorded = run["record_ms"] or {"median": None, "p90": None}
            line += f"{_ms(recorded['median']):>8}{_ms(recorded['p90']):>7}"
        share = run["analysis_share_median"]
        line += f"{share if share is not None else 0:>9.0%}{run['analysis_share']:>8.0%}"
        yield line
    yield (
        "(analysis: Session.view, the window's work for a frame: network, Grad-CAM, grid; "
        "share: of the time from a frame's take to the next's)"
    )
    yield (
        f"what limits: in real time {results['realtime']['limited_by']}; as fast as decoded "
        f"{results['fastest']['limited_by']}"
    )
    limit = results["analysis_limit_fps"]
    if limit:
        yield (
            f"the analysis's own time allows {limit:.1f} fps (1000 / its median ms in both "
            "runs, frames never waited for)"
        )
    if results["recorded_frames"] is not None:
        yield f"recorded: {results['recorded_frames']} frames (warm-up included), then removed"
    yield ""
    entry = results[KEY]
    verdict = entry.get("note") or ("ok" if entry["ok"] else "under target")
    yield (
        f"{KEY:<4} {entry['ratio']:6.1f} fps (target {entry['compare']} {entry['target']:g} "
        f"fps, {verdict}): analysed fps {results['network']} with grid and Grad-CAM, frames as "
        "fast as they decode" + (", recording too" if record else "")
    )

"""Recording the live view: the analysed frames as a video, and their top-k as a CSV table.

Each analysed frame becomes one video frame (the input, the Grad-CAM overlay and the stage
grid side by side, `compose`) at its own capture time, so the video plays at the speed
things happened, however many frames were dropped. The files appear only when the recording
ends well (written under temporary names, then renamed): a failed recording leaves nothing.
"""

from __future__ import annotations

import contextlib
import csv
import os
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

CSV_COLUMNS = ("frame", "time", "rank", "class", "label", "probability")
TIME_BASE = Fraction(1, 1000)  # the video's timestamps are in milliseconds
# The encoder for each container, best first (FFmpeg's builds differ in what they have).
CODECS = {
    ".mp4": ("libx264", "h264", "mpeg4"),
    ".mov": ("libx264", "h264", "mpeg4"),
    ".mkv": ("libx264", "h264", "mpeg4"),
    ".avi": ("mpeg4",),
    ".webm": ("libvpx-vp9", "libvpx"),
}
GAP = 8  # pixels between the panels of a composed frame
GAP_COLOR = (32, 32, 36)
GRID_BOX = 1.5  # the grid's panel: this many times as wide as it is high


def compose(view: np.ndarray, overlay: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The live view as one picture: ``view`` (the input, (H, W, 3) uint8), ``overlay`` (the
    map over it, same size) and ``grid`` ((h, w, 3 or 4) uint8) side by side; the grid is
    fitted into an H × ``GRID_BOX``·H box, so that every frame of a recording has the same size
    whatever the grid's layout: (H, 2 W + 2 ``GAP`` + round(``GRID_BOX`` H), 3) uint8."""
    height = view.shape[0]
    box = (round(GRID_BOX * height), height)
    tiles = Image.fromarray(np.ascontiguousarray(grid[..., :3]))
    scale = min(box[0] / tiles.width, box[1] / tiles.height)
    size = (max(1, round(tiles.width * scale)), max(1, round(tiles.height * scale)))
    canvas = Image.new("RGB", box, GAP_COLOR)
    canvas.paste(tiles.resize(size, Image.Resampling.NEAREST),
                 ((box[0] - size[0]) // 2, (box[1] - size[1]) // 2))  # fmt: skip
    gap = np.empty((height, GAP, 3), np.uint8)
    gap[:] = GAP_COLOR
    return np.concatenate([view, gap, overlay, gap, np.asarray(canvas)], axis=1)


def csv_path_for(video: str | os.PathLike[str]) -> Path:
    """Where a recording's top-k table goes: beside the video, ``<stem>.csv``."""
    return Path(video).with_suffix(".csv")


class RecordingError(OSError):
    """A recording that cannot be written; the message names the file and says why."""


class Recorder:
    """Writes analysed frames to ``path`` (a video: .mp4, .mkv, .mov, .avi or .webm) and
    their top-k to ``csv_path`` (default ``csv_path_for(path)``; None: no table).

    Frames may differ in size (the grid's shape follows the stage shown): each is fitted
    into the first one's size. ``close()`` finishes the files; ``discard()`` removes them;
    a frame written after either is ignored. Safe to write from one thread and close from
    another (a close waits for the frame being written).

    Raises (when made):
        RecordingError: an unknown container, or a folder that cannot be written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        csv_path: str | os.PathLike[str] | bool | None = True,
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CODECS:
            known = ", ".join(CODECS)
            raise RecordingError(f"{self.path}: cannot record to {suffix or 'no suffix'} "
                                 f"(a video file: {known})")  # fmt: skip
        self.csv_path = (
            csv_path_for(path) if csv_path is True else (Path(csv_path) if csv_path else None)
        )
        self._video_part = _partial(self.path)
        self._csv_part = _partial(self.csv_path) if self.csv_path else None
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None
        self._last_pts = -1
        self._origin: float | None = None
        self._lock = threading.Lock()
        self._finished = False
        self.frames = 0
        try:
            self._table = (
                open(self._csv_part, "w", newline="", encoding="utf-8")  # noqa: SIM115
                if self._csv_part
                else None
            )
        except OSError as failure:
            raise RecordingError(
                f"{self.csv_path}: cannot be written ({failure.strerror})"
            ) from None
        self._writer = csv.writer(self._table) if self._table else None
        if self._writer:
            self._writer.writerow(CSV_COLUMNS)

    def write(
        self,
        frame: int,
        time: float,
        picture: np.ndarray,
        topk: Sequence[tuple[int, str, float]] = (),
    ) -> None:
        """Add one analysed frame: its number and time (s) at capture, the composed view
        ((H, W, 3) uint8) and its top-k ``(class, label, probability)`` rows.

        Raises:
            RecordingError: the video or the table cannot be written (a full disk); the
                recording is discarded.
        """
        with self._lock:
            if self._finished:
                return
            try:
                self._write(frame, time, picture, topk)
            except Exception as failure:  # noqa: BLE001 (an encoder refusing: discarded, said)
                self._discard()
                raise RecordingError(f"{self.path}: cannot be written ({_why(failure)})") from None

    def _write(
        self, frame: int, time: float, picture: np.ndarray, topk: Sequence[tuple[int, str, float]]
    ) -> None:
        import av  # noqa: PLC0415

        if self._container is None:
            self._open(picture.shape[1], picture.shape[0])
        if self._origin is None:  # a recording started mid-way starts at 0 all the same
            self._origin = time
        pts = max(self._last_pts + 1, round((time - self._origin) / TIME_BASE))
        self._last_pts = pts
        video_frame = av.VideoFrame.from_ndarray(self._fitted(picture), format="rgb24")
        video_frame.pts = pts
        video_frame.time_base = TIME_BASE
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        if self._writer:
            for rank, (index, label, probability) in enumerate(topk, start=1):
                self._writer.writerow((frame, f"{time:.6f}", rank, index, label,
                                       f"{probability:.6g}"))  # fmt: skip
        self.frames += 1

    def close(self) -> list[Path]:
        """Finish and keep the files; returns them (none when no frame was written)."""
        import av  # noqa: PLC0415

        with self._lock:
            if self._finished:
                return []
            try:
                written = self._close()
            except (av.FFmpegError, OSError) as failure:
                self._discard()
                raise RecordingError(f"{self.path}: cannot be written ({_why(failure)})") from None
            self._discard()  # what was not renamed (a table of no frames)
            return written

    def _close(self) -> list[Path]:
        written: list[Path] = []
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._video_part, self.path)
            written.append(self.path)
        if self._table is not None:
            self._table.close()
            self._table = None
            if written:
                os.replace(self._csv_part, self.csv_path)
                written.append(self.csv_path)
        return written

    def discard(self) -> None:
        """Stop and remove what was written so far."""
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        self._finished = True
        if self._container is not None:
            # Already failing (or thrown away): the files go whatever closing says.
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        if self._table is not None:
            self._table.close()
            self._table = None
        for part in (self._video_part, self._csv_part):
            if part is not None:
                with contextlib.suppress(OSError):  # never made (no folder there, say)
                    part.unlink()

    def _open(self, width: int, height: int) -> None:
        import av  # noqa: PLC0415

        # 4:2:0 video wants even sides.
        self._size = (width + width % 2, height + height % 2)
        codec = next((name for name in CODECS[self.path.suffix.lower()]
                      if name in av.codecs_available), None)  # fmt: skip
        if codec is None:
            raise OSError(f"this FFmpeg has no encoder for {self.path.suffix} video")
        self._container = av.open(str(self._video_part), "w", format=_format(self.path))
        # Fast, with no look-ahead: each frame is encoded as it comes, off the frame's time.
        options = {"preset": "veryfast", "tune": "zerolatency"} if codec == "libx264" else {}
        self._stream = self._container.add_stream(codec, rate=30, options=options)
        self._stream.width, self._stream.height = self._size
        self._stream.pix_fmt = "yuv420p"
        self._stream.time_base = TIME_BASE
        self._stream.codec_context.time_base = TIME_BASE

    def _fitted(self, picture: np.ndarray) -> np.ndarray:
        width, height = self._size
        if picture.shape[:2] == (height, width):
            return np.ascontiguousarray(picture)
        image = Image.fromarray(picture)
        image.thumbnail((width, height), Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (width, height), GAP_COLOR)
        canvas.paste(image, (0, 0))
        return np.asarray(canvas)


def _partial(path: Path) -> Path:
    """A hidden temporary beside ``path`` with the same suffix (FFmpeg picks the container
    by it)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def _format(path: Path) -> str:
    return {".mkv": "matroska", ".mov": "mov", ".webm": "webm", ".avi": "avi"}.get(
        path.suffix.lower(), "mp4"
    )


def _why(failure: object) -> str:
    return " ".join(str(getattr(failure, "strerror", None) or failure).split())

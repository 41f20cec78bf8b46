"""Where live frames come from: a camera, or a video file played as if it were one.

Capture and decoding are FFmpeg's, through PyAV: the same library reads a webcam (V4L2 on
Linux, AVFoundation on macOS, DirectShow on Windows), decodes every common video file, lists
the cameras by name (`av.enumerate_input_devices`) and writes the recordings
(`visualizer.core.live.recorder`), without Qt, so that scripts and ``fmviz bench --live`` use
the same path as the window.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

# The input format that reads cameras on each platform (FFmpeg's libavdevice).
CAMERA_FORMATS = {"linux": "v4l2", "darwin": "avfoundation", "win32": "dshow"}
# A frame larger than this is refused before it is decoded (as Pillow refuses image bombs).
MAX_FRAME_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class LiveSourceError(OSError):
    """A camera or video that cannot be opened or read; the message names it and says why,
    on one line."""


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    ``index`` counts the frames the source gave, from 0 (a frame dropped still counts);
    ``time`` is its time in seconds from the source's start (a video's presentation time, a
    camera's capture time); ``image`` is RGB, upright (a video's rotation applied).
    """

    index: int
    time: float
    image: Image.Image


@dataclass(frozen=True)
class DecodedFrame:
    """A frame as FFmpeg decoded it, not yet converted to RGB: a player converts only the
    frames it shows (a paused camera is still read, and its frames passed over cheaply).

    ``index`` and ``time`` as `Frame`'s; ``decoded``: PyAV's ``VideoFrame``.
    """

    index: int
    time: float
    decoded: Any

    def to_frame(self) -> Frame:
        """The `Frame`: RGB, upright (the display rotation applied)."""
        image = self.decoded.to_image()
        if self.decoded.rotation:  # the display matrix: degrees counter-clockwise
            image = image.rotate(self.decoded.rotation, expand=True)
        return Frame(self.index, self.time, image)


@dataclass(frozen=True)
class Camera:
    """A camera FFmpeg can open: ``device`` for ``av.open``, ``name`` for people."""

    device: str
    name: str
    input_format: str


def camera_format() -> str | None:
    """FFmpeg's camera input format on this platform (None where fmviz knows none)."""
    return next((fmt for prefix, fmt in CAMERA_FORMATS.items() if sys.platform.startswith(prefix)),
                None)  # fmt: skip


def list_cameras() -> list[Camera]:
    """The cameras on this machine, the default first; empty when there are none.

    From FFmpeg's device list (``av.enumerate_input_devices``); on Linux the ``/dev/video*``
    capture nodes are taken when FFmpeg lists none (some V4L2 drivers do not say).
    """
    import av  # noqa: PLC0415 (FFmpeg's libraries load with it)

    fmt = camera_format()
    if fmt is None:
        return []
    try:
        devices = av.enumerate_input_devices(fmt)
    except (ValueError, av.FFmpegError):
        devices = []
    cameras = [
        Camera(device.name, device.description or device.name, fmt)
        for device in sorted(devices, key=lambda device: not device.is_default)
        if not device.media_types or "video" in device.media_types
    ]
    if not cameras and fmt == "v4l2":
        cameras = [Camera(str(node), _v4l2_name(node), fmt) for node in _v4l2_nodes()]
    return cameras


def _v4l2_nodes() -> list[Path]:
    nodes = Path("/dev").glob("video*")
    return sorted(nodes, key=lambda node: int(node.name[5:]) if node.name[5:].isdigit() else 0)


def _v4l2_name(node: Path) -> str:
    try:
        return (Path("/sys/class/video4linux") / node.name / "name").read_text().strip()
    except OSError:
        return node.name


class VideoSource:
    """Frames of a camera or a video file, in order, as RGB images.

    ``camera``: frames come at the camera's own pace (``is_camera``); a file's frames come as
    fast as they decode, with their presentation times (``Player`` plays them in real time).
    Close it (or use it as a context manager) to release the file or the device.

    Raises (when made):
        LiveSourceError: the file or device is missing, unreadable, holds no video, or its
            frames are larger than ``MAX_FRAME_PIXELS``.
    """

    def __init__(self, target: str, *, camera: Camera | None = None) -> None:
        import av  # noqa: PLC0415

        self.name = camera.name if camera else Path(target).name
        self.source = target
        self.is_camera = camera is not None
        try:
            if camera is not None:
                self._container = av.open(camera.device, format=camera.input_format)
            else:
                self._container = av.open(target)
        except (av.FFmpegError, OSError, ValueError) as failure:  # ValueError: no such format
            raise LiveSourceError(_reason(target, camera, failure)) from None
        streams = self._container.streams.video
        if not streams:
            self._container.close()
            raise LiveSourceError(f"{target}: holds no video stream")
        self._stream = streams[0]
        self._stream.thread_type = "AUTO"  # frame and slice threads, as FFmpeg's players do
        width, height = self._stream.codec_context.width, self._stream.codec_context.height
        if width * height > MAX_FRAME_PIXELS:
            self._container.close()
            raise LiveSourceError(
                f"{target}: frames of {width}×{height} pixels exceed the limit of "
                f"{MAX_FRAME_PIXELS} (a decompression bomb?)"
            )
        self._decoded = self._container.decode(self._stream)
        self._count = 0
        try:  # the first frame now: a file that cannot be decoded is said at once
            self._first = self._next_frame()
        except LiveSourceError:
            self._container.close()
            raise
        # As shown: a video turned a quarter by its display matrix plays in the other shape.
        turned = self._first is not None and round(self._first.rotation) % 180 == 90
        self.size = (height, width) if turned else (width, height)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.rate = float(rate) if rate else None  # frames per second, where the file says
        self.frame_count = self._stream.frames or None  # where the file says

    def frames(self) -> Iterator[Frame]:
        """The frames in order; a file's end ends them.

        Raises:
            LiveSourceError: the data cannot be decoded (a damaged file, a camera unplugged).
        """
        return (decoded.to_frame() for decoded in self.decoded_frames())

    def decoded_frames(self) -> Iterator[DecodedFrame]:
        """The frames in order, as decoded (``to_frame()`` converts one); as ``frames()``."""
        first: float | None = None
        frame, self._first = self._first, None
        while frame is not None:
            time = frame.time if frame.time is not None else self._count / (self.rate or 30.0)
            first = time if first is None else first
            yield DecodedFrame(self._count, time - first, frame)
            self._count += 1
            frame = self._next_frame()

    def _next_frame(self) -> Any:
        """The next decoded frame (PyAV's), None at the end."""
        import av  # noqa: PLC0415

        try:
            return next(self._decoded)
        except StopIteration:
            return None
        except (av.FFmpegError, OSError) as failure:
            raise LiveSourceError(f"{self.source}: frame {self._count}: {_why(failure)}") from None

    def close(self) -> None:
        """Release the file or device (also when its frames are not all read)."""
        self._container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """``"shapes.mp4 · 320×240 · 25 fps"``: what is playing, in a few words."""
        width, height = self.size
        rate = f" · {self.rate:g} fps" if self.rate else ""
        return f"{self.name} · {width}×{height}{rate}"


def open_source(spec: str | None) -> VideoSource:
    """The live source ``spec`` names (as ``fmviz --live`` takes it), opened.

    None or ``""``: the first camera; a number: that camera (0 is the first); an existing
    file: that video; else a camera whose name contains ``spec`` (case-insensitively), or
    that FFmpeg calls ``spec`` (``/dev/video2``).

    Raises:
        LiveSourceError: no such file or camera, no camera at all, or one that cannot be
            opened (the message lists the cameras there are).
    """
    found = find_source(spec)
    if isinstance(found, Camera):
        return VideoSource(found.device, camera=found)
    return VideoSource(found)


def find_source(spec: str | None) -> str | Camera:
    """The video file or the camera ``spec`` names (see `open_source`), without opening it.

    Raises:
        LiveSourceError: a folder, no such file or camera, or no camera at all.
    """
    if spec and os.path.isdir(spec):
        raise LiveSourceError(f"{spec}: a folder, not a video file")
    if spec and os.path.isfile(spec):
        return spec
    cameras = list_cameras()
    if not cameras:
        if spec and not spec.isdecimal() and (os.sep in spec or Path(spec).suffix):
            raise LiveSourceError(f"{spec}: no such file")
        raise LiveSourceError(
            "no camera found on this machine (fmviz --live FILE plays a video file instead)"
        )
    return _camera_named(spec, cameras)


def _camera_named(spec: str | None, cameras: list[Camera]) -> Camera:
    if not spec:
        return cameras[0]
    if spec.isdecimal():
        if int(spec) < len(cameras):
            return cameras[int(spec)]
    else:
        for camera in cameras:
            if spec in (camera.device, camera.name) or spec.lower() in camera.name.lower():
                return camera
    known = ", ".join(f"{number}: {camera.name}" for number, camera in enumerate(cameras))
    raise LiveSourceError(f"{spec}: no such file or camera (cameras: {known})")


def _reason(target: str, camera: Camera | None, failure: Any) -> str:
    what = f"camera {camera.name} ({camera.device})" if camera else target
    return f"{what}: cannot be opened ({_why(failure)})"


def _why(failure: Any) -> str:
    """FFmpeg's reason, without the file name it repeats."""
    text = getattr(failure, "strerror", None) or str(failure)
    return " ".join(str(text).split())

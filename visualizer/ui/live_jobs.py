"""The live view's work on the worker thread: a frame analysed as an image is, and recorded.

Nothing here touches Qt (``fmviz bench --live`` times this very work without a window).
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from visualizer.ui.jobs import ModelSpec, Picture, Session, ViewData, ViewOptions, picture_of

if TYPE_CHECKING:
    from visualizer.core.live import Frame, Recorder
    from visualizer.ui.method_jobs import MethodSettings

# What a dropped or opened file must end with to be played rather than read as an image.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg",
                            ".wmv", ".flv", ".ogv", ".3gp", ".ts"})  # fmt: skip


@dataclass(frozen=True, eq=False)
class LiveFrame:
    """A frame's view, as the window shows it, and what it cost."""

    index: int  # the frame's number in its source (dropped frames count)
    time: float  # seconds from the source's start
    picture: Picture  # the frame as a picture (for a snapshot)
    data: ViewData
    analysis_ms: float  # analysis, Grad-CAM and grid, on the worker
    record_ms: float  # composing and encoding the recorded frame (0 when not recording)
    record_error: str | None = None  # why the recording stopped (it is then discarded)


def is_video(path: str) -> bool:
    """Whether ``path`` names a video file (by its suffix), to be played live."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def frame_name(source: str, index: int) -> str:
    """The name of frame ``index`` of ``source`` (a file or a camera's name), as the strip
    and exported files show it: ``"clip_frame00012"``."""
    stem = Path(source).stem if is_video(source) else source  # a camera's name is kept whole
    # No dots: exports take the name's stem, which must be the whole name (a camera "USB2.0
    # HD WebCam" would otherwise give every frame the stem "USB2").
    stem = re.sub(r"[^\w-]+", "_", stem).strip("_") or "live"
    return f"{stem}_frame{index:05d}"


def frame_picture(key: int, source: str, frame: Frame, *, live: bool = True) -> Picture:
    """``frame`` of ``source`` as a `Picture` (``live``: analysed quietly and forgotten with
    the next frame; not live: a snapshot, kept as an image added to the strip is)."""
    name = frame_name(source, frame.index)
    picture = picture_of(key, name, f"{source} · frame {frame.index} ({frame.time:.2f} s)",
                         frame.image)  # fmt: skip
    return dataclasses.replace(picture, live=live)


def analyse_frame(
    session: Session,
    spec: ModelSpec,
    picture: Picture,
    options: ViewOptions,
    frame: Frame,
    *,
    methods: MethodSettings | None = None,
    recorder: Recorder | None = None,
    record_shift: tuple[int, float] = (0, 0.0),
) -> LiveFrame:
    """The view of ``frame`` (``Session.view``: the image's own analysis, grid and map), and
    its recording when ``recorder`` is given: input, map overlay and grid side by side, its
    number and time shifted by ``record_shift`` (the frames and seconds of the videos of a
    list recorded before this one). A recording that cannot be written is discarded and said
    in ``record_error``; the frame's view comes all the same.
    """
    from visualizer.core.live import RecordingError  # noqa: PLC0415

    start = time.perf_counter()
    data = session.view(spec, picture, options, methods=methods)
    analysed = time.perf_counter()
    record_error = None
    if recorder is not None:
        try:
            frames, seconds = record_shift
            shifted = dataclasses.replace(
                frame, index=frame.index + frames, time=frame.time + seconds
            )
            record(recorder, shifted, data)
        except RecordingError as error:
            record_error = str(error)
    return LiveFrame(
        index=frame.index,
        time=frame.time,
        picture=picture,
        data=data,
        analysis_ms=(analysed - start) * 1000,
        record_ms=(time.perf_counter() - analysed) * 1000,
        record_error=record_error,
    )


def record(recorder: Recorder, frame: Frame, data: ViewData) -> None:
    """Add ``data``'s view of ``frame`` to ``recorder``: the input, the map over it at the
    view's opacity and colormap, and the grid."""
    from visualizer.core.live import compose  # noqa: PLC0415
    from visualizer.core.render import overlay  # noqa: PLC0415

    blended = overlay(
        Image.fromarray(data.view),
        data.cam,
        opacity=data.options.opacity,
        colormap=data.options.cam_colormap,
    )
    recorder.write(frame.index, frame.time, compose(data.view, blended, data.grid.rgba()),
                   data.topk)  # fmt: skip

"""Short videos the tests write themselves: shapes moving over a plain background."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def shapes_frame(index: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """Frame ``index`` of the shapes video: (H, W, 3) uint8, a red square moving right and a
    blue bar moving down, on grey."""
    width, height = size
    frame = np.full((height, width, 3), 90, np.uint8)
    side = height // 4
    x = (4 + 3 * index) % max(1, width - side)
    frame[height // 3 : height // 3 + side, x : x + side] = (230, 40, 40)
    y = (2 * index) % max(1, height - 8)
    frame[y : y + 8, width // 5 : width // 5 + width // 2] = (40, 60, 220)
    return frame


def write_shapes_video(
    path: str | Path,
    *,
    frames: int = 30,
    rate: int = 25,
    size: tuple[int, int] = (160, 120),
    rotation: int = 0,
) -> Path:
    """Write ``frames`` frames of the shapes video at ``rate`` fps to ``path`` (MPEG-4 in
    the container its suffix names); ``rotation``: a display rotation in degrees."""
    from visualizer.bench.live import write_video

    pixels = (shapes_frame(index, size) for index in range(frames))
    return write_video(path, pixels, rate=rate, quality=2, rotation=rotation)


def decoded_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame of ``path`` as (H, W, 3) uint8, decoded by PyAV directly (a reference
    independent of fmviz's reader)."""
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]

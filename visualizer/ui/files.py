"""Turning what the user drops, opens or pastes into images to read."""

from __future__ import annotations

import os
import urllib.parse

import numpy as np
from PIL import Image
from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage

from visualizer.ui.jobs import Picture, picture_of


def local_file(url: QUrl) -> str:
    """The path of a local file's URL, byte for byte: ``QUrl.toLocalFile`` decodes a name's
    bytes as UTF-8, so a name that is not UTF-8 would become another (missing) file."""
    if os.name != "posix":
        return url.toLocalFile()
    encoded = url.path(QUrl.ComponentFormattingOption.FullyEncoded)
    return os.fsdecode(urllib.parse.unquote_to_bytes(encoded))


def qimage_to_rgba(image: QImage) -> np.ndarray:
    """A copy of ``image`` as ``(H, W, 4)`` uint8 RGBA, safe to hand to another thread."""
    converted = image.convertToFormat(QImage.Format.Format_RGBA8888)
    width, height, stride = converted.width(), converted.height(), converted.bytesPerLine()
    if width == 0 or height == 0:
        return np.zeros((0, 0, 4), np.uint8)
    rows = np.frombuffer(converted.constBits(), np.uint8, count=stride * height)
    return rows.reshape(height, stride)[:, : 4 * width].reshape(height, width, 4).copy()


def pasted_picture(key: int, name: str, rgba: np.ndarray) -> Picture:
    """A `Picture` of a pasted or dropped image, made RGB as ``load_image`` would."""
    from visualizer.core.images import to_rgb  # noqa: PLC0415

    if rgba.size == 0:
        raise ValueError(f"{name}: the image is empty")
    return picture_of(key, name, f"<{name}>", to_rgb(Image.fromarray(rgba, "RGBA")))

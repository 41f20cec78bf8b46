"""Turning what the user drops, opens or pastes into images to read."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage

from visualizer.ui.jobs import Picture, picture_of

MAX_FOLDER_FILES = 1000  # images taken from one dropped folder (and its subfolders)
SKIPPED_EXTENSIONS = {".pdf", ".eps", ".ps", ".svg"}  # Pillow lists some it will not open


def local_file(url: QUrl) -> str:
    """The path of a local file's URL, byte for byte: ``QUrl.toLocalFile`` decodes a name's
    bytes as UTF-8, so a name that is not UTF-8 would become another (missing) file."""
    if os.name != "posix":
        return url.toLocalFile()
    encoded = url.path(QUrl.ComponentFormattingOption.FullyEncoded)
    return os.fsdecode(urllib.parse.unquote_to_bytes(encoded))


def image_extensions() -> set[str]:
    """File endings Pillow reads, for picking images out of a folder."""
    Image.init()
    return {ext for ext in Image.registered_extensions() if ext not in SKIPPED_EXTENSIONS}


def image_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """The files to read for ``paths``, and a message for each path that gives none.

    A file is taken as it is (reading it says whether it is an image); a folder gives the
    image files inside it and its subfolders, sorted, hidden ones left out.
    """
    files: list[str] = []
    problems: list[str] = []
    extensions = image_extensions()
    for path in paths:
        if os.path.isdir(path):
            found = _images_in(Path(path), extensions)
            if not found:
                problems.append(f"{path}: no images in this folder")
            files.extend(found)
        else:
            files.append(path)  # a missing or unreadable file is reported when it is read
    return list(dict.fromkeys(files)), problems


def _images_in(folder: Path, extensions: set[str]) -> list[str]:
    found = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and Path(name).suffix.lower() in extensions:
                found.append(os.path.join(root, name))
                if len(found) >= MAX_FOLDER_FILES:
                    return found
    return found


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

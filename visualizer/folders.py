"""Which files of the folders a user gives are images: one rule for the window's drops and
``fmviz export FOLDER``. Imports neither torch nor Qt, so the window can use it at start-up."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

MAX_FOLDER_FILES = 1000  # images taken from one folder (and its subfolders)
SKIPPED_EXTENSIONS = {".pdf", ".eps", ".ps", ".svg"}  # Pillow lists some it will not open


def image_extensions() -> set[str]:
    """File endings Pillow reads, for picking images out of a folder."""
    Image.init()
    return {ext for ext in Image.registered_extensions() if ext not in SKIPPED_EXTENSIONS}


def image_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """The files to read for ``paths``, and a message for each path that gives none.

    A file is taken as it is (reading it says whether it is an image); a folder gives the
    image files inside it and its subfolders, sorted, hidden ones left out, at most
    ``MAX_FOLDER_FILES`` of them.
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


def _images_in(folder: Path, extensions: set[str], *, everything: bool = False) -> list[str]:
    """The image files under ``folder``, sorted; at most ``MAX_FOLDER_FILES`` (read when
    called) unless ``everything``."""
    limit = None if everything else MAX_FOLDER_FILES
    found = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and Path(name).suffix.lower() in extensions:
                found.append(os.path.join(root, name))
                if limit is not None and len(found) >= limit:
                    return found
    return found


def all_images_in(folder: str | os.PathLike[str]) -> list[str]:
    """Every image file in ``folder`` and its subfolders, sorted, hidden ones left out (no
    limit: for indexing a dataset)."""
    return _images_in(Path(folder), image_extensions(), everything=True)

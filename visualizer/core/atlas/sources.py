"""The images a dataset index covers: folders, image files and text files listing paths."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from visualizer.folders import all_images_in

LIST_SUFFIXES = (".txt", ".lst")  # a text file of paths, one a line


class SourceError(ValueError):
    """A source that gives no images; the message names it and says why, on one line."""


def image_paths(sources: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The absolute paths of the images ``sources`` name, sorted, each once.

    A folder gives the image files in it and its subfolders (hidden ones left out); a ``.txt``
    or ``.lst`` file gives the paths it lists, one a line (relative to the list's folder; blank
    lines and lines starting with ``#`` skipped); any other file is taken as an image (reading
    it says whether it is one). Sorting makes the images' numbers, and so the index, the same
    whatever order the sources are given in.

    Raises:
        SourceError: a source that does not exist, a folder without images, or a list that
            cannot be read.
    """
    found: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            images = all_images_in(path)
            if not images:
                raise SourceError(f"{source}: no images in this folder")
            found.extend(images)
        elif path.suffix.lower() in LIST_SUFFIXES:
            listed = _listed(path)
            if not listed:
                raise SourceError(f"{source}: lists no images")
            found.extend(listed)
        elif path.exists():
            found.append(str(path))
        else:
            raise SourceError(f"{source}: no such file or folder")
    return sorted({os.path.abspath(path) for path in found})


def _listed(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as failure:
        reason = failure.strerror if isinstance(failure, OSError) else "not UTF-8 text"
        raise SourceError(f"{path}: cannot read the list of images ({reason})") from None
    entries = [line.strip() for line in lines]
    return [str(path.parent / entry) for entry in entries if entry and not entry.startswith("#")]

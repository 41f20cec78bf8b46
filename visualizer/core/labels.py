"""A network's class names: from a labels file, the checkpoint, ImageNet, or numbered.

Formats read (the first that fits, by suffix then content):

- JSON: a list of names; an object index → name (``{"0": "benign", …}``); or an object
  name → index (``class_to_idx``, as torchvision's ``ImageFolder`` makes it).
- CSV (``.csv``, or every line ``<index>,<name>``): ``index,name`` rows, a header allowed.
- text: one name a line (blank lines at the end ignored).

The same Python shapes are read from a checkpoint, under ``models.LABEL_KEYS``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.weights import LABEL_KEYS, PATH_SHOWN, shown

MAX_LABELS_BYTES = 16 * 1024 * 1024  # a labels file larger than this is not one
INDEXED_LINE = re.compile(r"^\s*\d+\s*,")
NUMBERED = "none: numbered"
IMAGENET = "ImageNet (torchvision)"


class LabelsError(ValueError):
    """Class names that cannot be used; one line naming the file (or key) and the reason,
    e.g. ``labels.txt: 4 labels, but the network has 5 classes``."""


@dataclass(frozen=True)
class Labels:
    """A network's class names and where they come from.

    Attributes:
        names: one a class, in index order.
        source: in words: the file, ``"the checkpoint ('class_to_idx')"``, ``IMAGENET`` or
            ``NUMBERED``.
    """

    names: tuple[str, ...]
    source: str


def read_labels(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names in a labels file, in index order.

    Raises:
        LabelsError: not readable, not one of the formats, empty, or indices that are not
            0 … N-1 exactly once; the message names the file.
    """
    path = Path(path)
    name = shown(path, PATH_SHOWN)
    try:
        if path.is_dir():
            raise LabelsError(f"{name}: is a folder, not a labels file")
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise LabelsError(f"{name}: too large for a labels file (over 16 MB)")
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabelsError(f"{name}: no such file") from None
    except OSError as error:
        raise LabelsError(f"{name}: cannot be read ({error.strerror or error})") from None
    if b"\x00" in data:
        raise LabelsError(f"{name}: not a text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelsError(f"{name}: not UTF-8 text") from None
    if not text.strip():
        raise LabelsError(f"{name}: the file is empty")
    suffix = path.suffix.lower()
    lines = [line for line in text.splitlines() if line.strip()]
    if suffix == ".json" or text.lstrip()[:1] in ("[", "{"):
        try:
            loaded = json.loads(text)
        except ValueError as error:
            raise LabelsError(f"{name}: not valid JSON ({error})") from None
        return labels_from_object(loaded, name)
    if suffix in (".csv", ".tsv") or all(INDEXED_LINE.match(line) for line in lines):
        return _from_csv(text, name, delimiter="\t" if suffix == ".tsv" else ",")
    names = text.splitlines()
    while names and not names[-1].strip():
        names.pop()
    blank = next((number for number, line in enumerate(names, 1) if not line.strip()), None)
    if blank is not None:
        raise LabelsError(f"{name}: line {blank} is empty (one class name a line)")
    return tuple(line.strip() for line in names)


def labels_from_object(loaded: object, where: str) -> tuple[str, ...]:
    """Class names from a list of names, a mapping index → name or a mapping name → index.

    Raises:
        LabelsError: another shape, or indices that are not 0 … N-1 exactly once.
    """
    if isinstance(loaded, Mapping):
        if not loaded:
            raise LabelsError(f"{where}: no labels in it")
        keys, values = list(loaded), list(loaded.values())
        if all(_is_index(key) for key in keys) and all(isinstance(v, str) for v in values):
            return _indexed({int(key): value for key, value in loaded.items()}, where)
        if all(isinstance(key, str) for key in keys) and all(_is_index(v) for v in values):
            by_index: dict[int, str] = {}
            for label, index in loaded.items():
                if int(index) in by_index:
                    raise LabelsError(
                        f"{where}: index {int(index)} is given to both "
                        f"{shown(by_index[int(index)])!r} and {shown(label)!r}"
                    )
                by_index[int(index)] = label
            return _indexed(by_index, where)
        raise LabelsError(f"{where}: an object must map indices to names or names to indices")
    if isinstance(loaded, Sequence) and not isinstance(loaded, (str, bytes)):
        if not loaded:
            raise LabelsError(f"{where}: no labels in it")
        if not all(isinstance(item, str) for item in loaded):
            raise LabelsError(f"{where}: a list of labels must hold names only")
        return tuple(item.strip() for item in loaded)
    raise LabelsError(f"{where}: a {type(loaded).__name__}, not a list or mapping of labels")


def resolve_labels(
    given: str | os.PathLike[str] | Sequence[str] | Mapping[object, object] | None,
    stored: Mapping[str, object],
    classes: int,
    imagenet: Sequence[str],
) -> Labels:
    """The labels of a network with ``classes`` outputs: those ``given`` (a file or names),
    else those ``stored`` in its checkpoint (the first of ``LABEL_KEYS``), else ImageNet's
    for 1000 classes, else ``class 0`` … ``class N-1``.

    Raises:
        LabelsError: unreadable labels, or a count other than ``classes`` (both numbers named).
    """
    if given is not None:
        if isinstance(given, (str, os.PathLike)):
            source = shown(Path(given).name, PATH_SHOWN)
            names = read_labels(given)
            where = shown(given, PATH_SHOWN)
        else:
            source = where = "the labels given"
            names = labels_from_object(given, where)
    else:
        key = next((key for key in LABEL_KEYS if stored.get(key) is not None), None)
        if key is None:
            if classes == len(imagenet):
                return Labels(tuple(imagenet), IMAGENET)
            return Labels(tuple(f"class {index}" for index in range(classes)), NUMBERED)
        source = where = f"the checkpoint ({key!r})"
        names = labels_from_object(stored[key], where)
    if len(names) != classes:
        raise LabelsError(
            f"{where}: {len(names)} labels, but the network has {classes} "
            f"{'class' if classes == 1 else 'classes'}"
        )
    return Labels(names, source)


def _from_csv(text: str, name: str, delimiter: str) -> tuple[str, ...]:
    rows = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if row]
    if rows and not _is_index(rows[0][0].strip()):
        rows = rows[1:]  # a header, e.g. "index,name"
    by_index: dict[int, str] = {}
    for number, row in enumerate(rows, 1):
        if len(row) < 2 or not _is_index(row[0].strip()):
            raise LabelsError(f"{name}: row {number} is not index,name")
        index = int(row[0])
        if index in by_index:
            raise LabelsError(f"{name}: index {index} appears twice")
        by_index[index] = row[1].strip()
    if not by_index:
        raise LabelsError(f"{name}: no labels in it")
    return _indexed(by_index, name)


def _indexed(by_index: Mapping[int, str], where: str) -> tuple[str, ...]:
    """Names in index order; the indices must be 0 … N-1."""
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        beyond = sorted(index for index in by_index if index >= len(by_index))
        raise LabelsError(
            f"{where}: indices must run from 0 to {len(by_index) - 1}: "
            f"{missing[0]} is missing" + (f", {beyond[0]} is beyond" if beyond else "")
        )
    return tuple(by_index[index].strip() for index in range(len(by_index)))


def _is_index(value: object) -> bool:
    """An int (not a bool) ≥ 0, or the text of one."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.strip().isdigit()

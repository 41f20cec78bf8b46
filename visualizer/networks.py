"""Which network: architecture, weights, labels and preprocessing — plain data, no torch.

The command line and the window describe the networks a user asks for with a ``NetworkSpec``
before torch loads; ``Analyzer(spec.model, spec.weights, **spec.analyzer_options())`` builds
one. Compare mode puts two of them side by side: the two architectures, or one architecture
with two checkpoints (ImageNet against fine-tuned, epoch 5 against epoch 50).

Examples::

    spec = NetworkSpec("resnet101", "ft5.pth", labels="labels.txt", mean=(0.5,), std=(0.25,))
    sides, lead = compare_pair(spec, NetworkSpec("resnet101"))
    network_names(sides)  # ("resnet101-ft5", "resnet101-imagenet")
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from visualizer.choices import MODEL_LABELS, MODELS

NAMED_WEIGHTS = ("imagenet", "random")
MIN_SIZE, MAX_SIZE = 8, 4096  # pixels: the resize and crop a user may ask for
WEIGHTS_LABELS = {"imagenet": "ImageNet", "random": "random"}


@dataclass(frozen=True)
class NetworkSpec:
    """A network as a user names it.

    Attributes:
        model: ``"vgg16"`` or ``"resnet101"``.
        weights: ``"imagenet"``, ``"random"`` or the path of a checkpoint.
        labels: a labels file; None: the checkpoint's own, else ImageNet's for 1000 classes,
            else ``class 0`` … ``class N-1``.
        mean, std: per input channel (3 values, or 1 for a one-channel network), in [0, 1]
            pixel units; None: the checkpoint's, else the architecture's ImageNet values.
        resize: the length in pixels the shorter side is resized to; None: default.
        crop: the side in pixels of the centre crop the network sees; None: default.
    """

    model: str = "resnet101"
    weights: str = "imagenet"
    labels: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: int | None = None
    crop: int | None = None

    def analyzer_options(self) -> dict[str, object]:
        """The keyword arguments of ``Analyzer`` beyond model and weights."""
        return {
            "labels": self.labels,
            "mean": self.mean,
            "std": self.std,
            "resize": self.resize,
            "crop": self.crop,
        }

    @property
    def named_weights(self) -> bool:
        """True for ``"imagenet"`` and ``"random"``, False for a checkpoint file."""
        return self.weights in NAMED_WEIGHTS

    @property
    def custom(self) -> bool:
        """True when anything differs from the architecture with named weights and defaults."""
        return not self.named_weights or any(
            value is not None for value in self.analyzer_options().values()
        )

    @property
    def weights_label(self) -> str:
        """``"ImageNet"``, ``"random"`` or the checkpoint's file name."""
        return WEIGHTS_LABELS.get(self.weights) or PurePath(self.weights).name

    @property
    def label(self) -> str:
        """The architecture's name, with the checkpoint's for a file: ``"ResNet101 · ft5.pth"``."""
        name = MODEL_LABELS.get(self.model, self.model)
        return name if self.named_weights else f"{name} · {self.weights_label}"

    def with_changes(self, **changes: object) -> NetworkSpec:
        """A copy with ``changes``; another architecture drops a weights file (a checkpoint fits
        one architecture only) and with it the labels and preprocessing that went with it."""
        if "model" in changes and changes["model"] != self.model and not self.named_weights:
            changes.setdefault("weights", "imagenet")
            for name in ("labels", "mean", "std", "resize", "crop"):
                changes.setdefault(name, None)
        return dataclasses.replace(self, **changes)


def compare_pair(
    main: NetworkSpec, other: NetworkSpec | None = None
) -> tuple[tuple[NetworkSpec, NetworkSpec], int]:
    """The two networks of compare mode, left and right, and the index of ``main`` among them.

    Without ``other``: the other architecture with ImageNet weights (untrained when ``main``'s
    are), VGG16 on the left as the architectures are listed. With ``other``: ``main`` on the
    left, ``other`` on the right. The lead (``main``) is the side whose class both explain when
    they share their class list.
    """
    if other is None:
        weights = "random" if main.weights == "random" else "imagenet"
        partner = NetworkSpec(next(m for m in MODELS if m != main.model), weights)
        sides = (main, partner) if MODELS.index(main.model) == 0 else (partner, main)
        return sides, sides.index(main)
    return (main, other), 0


def network_labels(sides: Sequence[NetworkSpec]) -> tuple[str, ...]:
    """The names of networks shown side by side, told apart: ``NetworkSpec.label``
    (``"VGG16"``, ``"ResNet101 · ft5.pth"``) for different architectures; the architecture and
    its weights for one architecture twice (``"ResNet101 · ImageNet"``, ``"ResNet101 ·
    ft5.pth"``); numbered (``" (1)"``, ``" (2)"``) where even those are the same."""
    if len({spec.model for spec in sides}) == len(sides):
        labels = [spec.label for spec in sides]
    else:
        labels = [f"{MODEL_LABELS.get(s.model, s.model)} · {s.weights_label}" for s in sides]
    return numbered(labels)


def numbered(labels: Sequence[str]) -> tuple[str, ...]:
    """``labels``, each with ``" (1)"``, ``" (2)"`` … after it where two are the same."""
    if len(set(labels)) == len(labels):
        return tuple(labels)
    return tuple(f"{label} ({number})" for number, label in enumerate(labels, 1))


def network_names(sides: tuple[NetworkSpec, ...]) -> tuple[str, ...]:
    """File-name-safe names of the networks, told apart: the architecture alone when it is
    unique (``"vgg16"``), else with its weights (``"resnet101-imagenet"``, ``"resnet101-ft5"``),
    numbered when even those are the same (``"resnet101-ft5-1"``, ``"resnet101-ft5-2"``)."""
    names = [spec.model for spec in sides]
    if len(set(names)) == len(names):
        return tuple(names)
    names = [f"{spec.model}-{_file_safe(_weights_tag(spec))}" for spec in sides]
    if len(set(names)) == len(names):
        return tuple(names)
    return tuple(f"{name}-{number}" for number, name in enumerate(names, 1))


def parse_values(text: str) -> tuple[float, ...]:
    """``"0.485,0.456,0.406"`` (or one value, ``"0.5"``) as numbers: 1 or 3 finite values.

    Raises:
        ValueError: a one-line reason, e.g. ``"'0.5,x': 'x' is not a number"``.
    """
    parts = [part.strip() for part in re.split(r"[,\s]+", text.strip()) if part.strip()]
    if not parts:
        raise ValueError("give 1 or 3 numbers, e.g. 0.485,0.456,0.406")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{text!r}: {part!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r}: {part} is not a finite number")
        values.append(value)
    if len(values) not in (1, 3):
        raise ValueError(f"{text!r}: {len(values)} values; give 1 (grey) or 3 (R,G,B)")
    return tuple(values)


def parse_size(text: str) -> int:
    """A size in pixels, ``MIN_SIZE`` to ``MAX_SIZE``.

    Raises:
        ValueError: a one-line reason.
    """
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number of pixels") from None
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise ValueError(f"{value}: must be {MIN_SIZE} to {MAX_SIZE} pixels")
    return value


def _weights_tag(spec: NetworkSpec) -> str:
    return spec.weights if spec.named_weights else PurePath(spec.weights).stem


def _file_safe(text: str) -> str:
    """``text`` with anything but letters, digits, ``.``, ``_`` and ``-`` made ``_``."""
    return re.sub(r"[^\w.-]+", "_", text, flags=re.ASCII).strip("._") or "weights"

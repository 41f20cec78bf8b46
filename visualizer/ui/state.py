"""The window's state, free of Qt: the images, the network, the options, what is on its way.

The window is the controller: it changes the state in answer to the user and the worker, and
its views subscribe to the state's events (psygnal), as in ndv's models → controllers → views.
Nothing here imports Qt, so the state and its rules are tested without a window.

Examples::

    state = WindowState(ModelSpec("resnet101", "random"))
    state.events.spec.connect(lambda spec: print("now", spec.label))
    state.spec = state.changed_spec(model="vgg16")  # prints "now VGG16"
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from psygnal import Signal, evented

from visualizer.choices import MODELS
from visualizer.ui.jobs import ModelSpec, Picture, ViewOptions

COMPARED = MODELS  # compare mode: left, right
NAMED_WEIGHTS = ("imagenet", "random")


def is_named(weights: str) -> bool:
    """True for the weights a name stands for (``"imagenet"``, ``"random"``), not a file."""
    return weights in NAMED_WEIGHTS


@evented
@dataclass
class WindowState:
    """What the window shows and for what; each field has an event of the same name
    (``state.events.spec``, ``.options``, ``.compare``, ``.current``) that fires with the new
    value when it changes."""

    spec: ModelSpec  # the network in use (in compare mode: the lead's, see ``lead``)
    options: ViewOptions = field(default_factory=ViewOptions)
    compare: bool = False  # VGG16 and ResNet101 side by side
    current: int | None = None  # the key of the picture shown
    grid_aspect: float = 1.0  # the grid pane's width ÷ height, for the next view's columns
    pictures: dict[int, Picture] = field(default_factory=dict)  # the strip, by key

    picture_added: ClassVar[Signal] = Signal(object)  # a Picture, once it is in ``pictures``

    def add_picture(self, picture: Picture) -> None:
        """Put ``picture`` in the strip."""
        self.pictures[picture.key] = picture
        self.picture_added.emit(picture)

    def changed_spec(self, **changes: str) -> ModelSpec:
        """The spec with ``changes`` (``model``, ``weights``, ``device``); another network
        drops a weights file (it fits one network only) for ImageNet weights."""
        if "model" in changes and "weights" not in changes and not is_named(self.spec.weights):
            changes["weights"] = "imagenet"
        return dataclasses.replace(self.spec, **changes)

    def compare_specs(self) -> tuple[ModelSpec, ...]:
        """The networks compared: named weights as for the network alone (a weights file fits
        one network only: ImageNet instead), on its device."""
        weights = self.spec.weights if is_named(self.spec.weights) else "imagenet"
        return tuple(ModelSpec(model, weights, self.spec.device) for model in COMPARED)

    def lead(self) -> ModelSpec:
        """The network of the pair whose top-1 class both explain: the one chosen alone."""
        specs = self.compare_specs()
        return next((spec for spec in specs if spec.model == self.spec.model), specs[0])


@dataclass
class Requests:
    """The bookkeeping of what was asked of the worker and what came back.

    The worker tags each request with a generation and drops stale replies (latest wins);
    this is what the window needs on top: what is still awaited, and what last worked.
    """

    waiting: int = 0  # requests sent and not answered yet
    select_next: list[int] = field(default_factory=list)  # the newest batch: its first is shown
    loading: dict[str, int] = field(default_factory=dict)  # real path → key, files being read
    view_failed: bool = False  # the latest view failed: selecting the image again retries
    compare_pending: set[str] = field(default_factory=set)  # compared networks still awaited
    compare_errors: set[str] = field(default_factory=set)  # shown for the latest compare request
    good_device: str | None = None  # the last device both compared networks ran on
    good_spec: ModelSpec | None = None  # the last network that loaded

    def fallback(self, spec: ModelSpec) -> ModelSpec | None:
        """What to use when ``spec`` could not be had: the last network that worked or, at the
        start, ImageNet (else untrained) weights on the best device; None to keep ``spec``."""
        if self.good_spec == spec:
            return None
        chosen = self.good_spec or ModelSpec(
            spec.model, spec.weights if is_named(spec.weights) else "imagenet"
        )
        return chosen if chosen != spec else None

    def forget_loading(self, key: int) -> None:
        """``key`` was read (or failed): it is no longer being loaded."""
        self.loading = {real: k for real, k in self.loading.items() if k != key}

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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from psygnal import Signal, evented

from visualizer.networks import compare_pair, network_labels
from visualizer.ui.jobs import ModelSpec, Picture, ViewOptions

if TYPE_CHECKING:
    from visualizer.core.atlas import Atlas

SIDES = (0, 1)  # compare mode: left, right
NAMED_WEIGHTS = ("imagenet", "random")


def is_named(weights: str) -> bool:
    """True for the weights a name stands for (``"imagenet"``, ``"random"``), not a file."""
    return weights in NAMED_WEIGHTS


@evented
@dataclass
class WindowState:
    """What the window shows and for what; each field has an event of the same name
    (``state.events.spec``, ``.options``, ``.compare``, ``.current``, ``.atlas``) that fires
    with the new value when it changes."""

    spec: ModelSpec  # the network in use (in compare mode: the lead's, see ``lead``)
    options: ViewOptions = field(default_factory=ViewOptions)
    compare: bool = False  # two networks side by side
    # The network compared with ``spec``; None: the other architecture with ImageNet weights
    # (untrained ones when ``spec``'s are), see ``networks.compare_pair``.
    other: ModelSpec | None = None
    # Compare mode, when the two sides' classes differ: the class each side explains (None:
    # its own top-1). When they share their classes, ``options.target`` is for both.
    side_targets: tuple[int | None, int | None] = (None, None)
    current: int | None = None  # the key of the picture shown
    grid_aspect: float = 1.0  # the grid pane's width ÷ height, for the next view's columns
    pictures: dict[int, Picture] = field(default_factory=dict)  # the strip, by key
    # The dataset index open (``fmviz index``), made by ``spec``'s network; None: none.
    atlas: Atlas | None = None

    picture_added: ClassVar[Signal] = Signal(object)  # a Picture, once it is in ``pictures``

    def add_picture(self, picture: Picture) -> None:
        """Put ``picture`` in the strip."""
        self.pictures[picture.key] = picture
        self.picture_added.emit(picture)

    def changed_spec(self, **changes: object) -> ModelSpec:
        """The spec with ``changes`` (``model``, ``weights``, ``labels``, ``mean``, …,
        ``device``); another architecture drops a weights file (it fits one architecture
        only) for ImageNet weights, and the labels and preprocessing that went with it."""
        device = changes.pop("device", self.spec.device)
        return ModelSpec.of(self.spec.network.with_changes(**changes), str(device))

    def compare_specs(self) -> tuple[ModelSpec, ModelSpec]:
        """The networks compared, left and right, on the device in use: the one in use and
        ``other`` (by default the other architecture, VGG16 on the left)."""
        other = self.other.network if self.other is not None else None
        sides, _ = compare_pair(self.spec.network, other)
        left, right = (ModelSpec.of(side, self.spec.device) for side in sides)
        return left, right

    def lead(self) -> ModelSpec:
        """The network of the pair whose top-1 class both explain: the one chosen alone."""
        return self.spec

    def side_labels(self) -> tuple[str, str]:
        """The names of the sides compared, told apart: ``"ResNet101 · ImageNet"`` and
        ``"ResNet101 · random"`` where the architecture alone would name both alike."""
        left, right = network_labels([spec.network for spec in self.compare_specs()])
        return left, right


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
    compare_pending: set[int] = field(default_factory=set)  # compared sides still awaited
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

"""Attribution methods and picked layers in the window: what is asked of the worker, what
comes back, and how a running job hears that it should stop.

Plain data, free of Qt and of torch (torch comes with the first job), so that the window can
offer the methods before the network loads. The window asks for one method at a time (a
`MethodJob`): a view asked for meanwhile waits for one method at most. A slow method reports
every pass of the network through its job's `JobControl`, which also stops it at the next
pass once a newer request has overtaken it or the user cancelled it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from visualizer.choices import LAYER_METHODS, METHOD_TITLES, METHODS  # noqa: F401 (the window's)

if TYPE_CHECKING:
    from visualizer.ui.jobs import ModelSpec, Picture

DEFAULT_METHODS = ("gradcam", "guided-gradcam", "saliency", "integrated-gradients")
# Many passes of the network each: they show their progress and can be cancelled.
SLOW_METHODS = ("integrated-gradients", "occlusion", "smoothgrad-saliency", "smoothgrad-ig")
FAITHFULNESS_STEPS = 32  # the engine's default (``faithfulness.DEFAULT_STEPS``)


class Cancelled(Exception):  # noqa: N818 (a state, not a failure)
    """A job stopped at a pass of the network: a newer request overtook it, or the user
    cancelled it. The worker answers it as skipped."""


Step = Callable[[int, int, str], None]  # (done, total, what is being done)


@dataclass(frozen=True)
class JobControl:
    """What a running job may ask of the worker: whether to stop, and where to report its
    steps."""

    cancelled: Callable[[], bool]
    step: Step

    def progress(self, what: str, report: Step | None = None) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` for the engine: raises `Cancelled` once the job
        should stop, else reports the step (to ``report`` as well, if given)."""

        def progress(done: int, total: int) -> None:
            if self.cancelled():
                raise Cancelled(what)
            self.step(done, total, what)
            if report is not None:
                report(done, total, what)

        return progress


NO_CONTROL = JobControl(cancelled=lambda: False, step=lambda _done, _total, _what: None)

Parameters = tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class MethodSettings:
    """How the window runs the methods: Captum parameters per method (over the engine's
    defaults, under Captum's names) and the number of steps of the deletion and insertion
    curves. Hashable, so that results are cached by it.

    Examples::

        MethodSettings.of({"integrated-gradients": {"n_steps": 8}}, steps=8)
    """

    parameters: tuple[tuple[str, Parameters], ...] = ()
    steps: int = FAITHFULNESS_STEPS

    @classmethod
    def of(
        cls,
        parameters: Mapping[str, Mapping[str, object]] | None = None,
        *,
        steps: int = FAITHFULNESS_STEPS,
    ) -> MethodSettings:
        """Settings from a mapping ``{method: {parameter: value}}``."""
        given = parameters or {}
        return cls(
            tuple(
                sorted((method, tuple(sorted(values.items()))) for method, values in given.items())
            ),
            steps,
        )

    def for_method(self, method: str) -> dict[str, object]:
        """The parameters given for ``method`` (the engine adds its defaults)."""
        return dict(dict(self.parameters).get(method, ()))


@dataclass(frozen=True)
class MethodJob:
    """One method for one image, network and class: what the methods panel asks for."""

    request: int  # the panel's request it belongs to
    spec: ModelSpec
    picture: Picture
    method: str
    target: int
    layer: str | None  # the layer methods' layer (a stage or a feature layer); else None
    settings: MethodSettings


@dataclass(frozen=True, eq=False)
class MethodData:
    """One method's map of one class and how faithful it is, ready to show.

    ``map`` is the engine's ``Attribution.map``; the curves and areas its ``Faithfulness``.
    """

    method: str
    title: str  # e.g. "Integrated Gradients"
    target: int
    layer: str | None
    parameters: str  # in words, e.g. "n_steps=50, baselines=0.0, internal_batch_size=16"
    view: np.ndarray = field(repr=False)  # (H, W, 3) uint8: the input as the network saw it
    map: np.ndarray = field(repr=False)  # (H, W) float32 in [0, 1]
    fractions: np.ndarray = field(repr=False)  # (steps + 1,)
    deletion: np.ndarray = field(repr=False)
    insertion: np.ndarray = field(repr=False)
    deletion_auc: float = 0.0
    insertion_auc: float = 0.0

    @property
    def heading(self) -> str:
        """The title, with the layer for the layer methods: ``"Grad-CAM at C5"``."""
        return f"{self.title} at {self.layer}" if self.layer else self.title


def method_title(method: str, layer: str | None = None) -> str:
    """``"Integrated Gradients"``, or for a layer method ``"Grad-CAM at layer3.4"``."""
    title = METHOD_TITLES.get(method, method)
    return f"{title} at {layer}" if layer and method in LAYER_METHODS else title

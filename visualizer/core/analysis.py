"""One network, loaded once, and what it makes of an image: stages, top-5, timings, Grad-CAM."""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import nn

from models import STAGE_NAMES, build_model
from models.stages import stage_index
from visualizer.core.attribution import GradCam, grad_cam, stage_gradients
from visualizer.core.device import describe_device, is_device_failure, resolve_device
from visualizer.core.images import load_image, to_rgb
from visualizer.core.layers import FeatureLayer, captured_layers, feature_layers, unknown_layer
from visualizer.core.network_setup import network_setup
from visualizer.core.timing import LayerTimer, Timing

if TYPE_CHECKING:
    from visualizer.core.attribution_methods import Attribution, Progress
    from visualizer.core.faithfulness import Faithfulness

TOP_K = 5
# How result.timings were measured, in words, for the window, exports and metadata.
STEADY_TIMING = "steady state: after one untimed warm-up pass"
COLD_TIMING = "cold: the network's first pass on this device"
DEFAULT_CAM_STAGE = "C5"  # the last convolutional stage, as in the Grad-CAM paper
_tokens = itertools.count(1)
# One lock a network: analyzers sharing a network take turns, since a pass puts hooks and
# wrappers on its modules.
_model_locks: weakref.WeakKeyDictionary[nn.Module, threading.Lock] = weakref.WeakKeyDictionary()
_model_locks_guard = threading.Lock()


def _lock_of(model: nn.Module) -> threading.Lock:
    with _model_locks_guard:
        return _model_locks.setdefault(model, threading.Lock())


def probabilities_of(logits: torch.Tensor, scores: str) -> torch.Tensor:
    """Class probabilities from ``logits`` ``(classes,)``: ``scores`` ``"softmax"``, or
    ``"sigmoid"`` for a one-output head (a binary classifier: a softmax over one class would
    always be 1)."""
    return torch.sigmoid(logits) if scores == "sigmoid" else torch.softmax(logits, dim=0)


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    """What one network made of one image. Every tensor is on the CPU.

    Treat the tensors as read-only: Grad-CAM starts again from ``stages``.
    """

    model: str  # "vgg16" or "resnet101"
    weights: str  # e.g. "ImageNet (IMAGENET1K_V2)" or "random (untrained, seed 0)"
    source: str  # the image file, or "<image>" for an image given in memory
    stages: Mapping[str, torch.Tensor]  # "C1" … "C5": (C, H, W) float32
    # (class index, label, probability), descending: min(5, classes) rows; the probability
    # is the softmax's, or the sigmoid of the one logit of a one-output head (``scores``).
    topk: list[tuple[int, str, float]]
    timings: list[Timing]  # (layer name, module type, milliseconds), in execution order
    input: torch.Tensor  # (1, C, H, W): exactly what the model saw, normalised (C: 3 or 1)
    view: Image.Image  # RGB W×H: the image as the model saw it, before normalisation
    preprocessing: str  # how ``input`` was made from the image, in words
    logits: torch.Tensor  # (classes,)
    device: str  # where it ran, e.g. "CPU (2 threads)"
    notice: str | None = None  # set when something had to change, e.g. a fall-back to the CPU
    trained: bool = field(default=True, repr=False)  # False for random weights
    analyzer: int = field(default=0, repr=False)  # which Analyzer made it (its token)
    # Each timed layer's output shape (batch first), by layer name; empty with timings off.
    layer_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict, repr=False)
    # True when ``timings`` come from the network's first pass on its device (no warm-up):
    # such a pass pays one-off costs (allocations, kernel choices) and is many times slower.
    cold: bool = field(default=False, repr=False)
    classes: int = 1000  # the head's outputs
    scores: str = "softmax"  # how logits became probabilities: "softmax", or "sigmoid" (one)
    labels_source: str = "ImageNet (torchvision)"  # where the class names come from
    # The outputs of the modules asked for by name (``analyze(image, layers=[...])``):
    # (C, H, W) float32, by the name given.
    layers: Mapping[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def timing(self) -> str:
        """How ``timings`` were measured, in words (``STEADY_TIMING`` or ``COLD_TIMING``)."""
        return COLD_TIMING if self.cold else STEADY_TIMING

    @property
    def size(self) -> tuple[int, int]:
        """The model input's ``(height, width)``: the size of Grad-CAM maps."""
        return self.input.shape[-2], self.input.shape[-1]


class Analyzer:
    """A network loaded once, analysing images one at a time (thread-safe).

    Args:
        model: ``"vgg16"``, ``"resnet101"``, or one of ``models``' networks already built
            (it is moved to ``device``; it must be in eval mode).
        weights: ``"imagenet"``, ``"random"`` or a checkpoint path (ignored for a built model).
            A checkpoint may be fine-tuned: any number of classes, 3 or 1 input channels.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (or ``"cuda:1"``).
        timings: time every layer (``result.timings``); off, the list is empty.
        channels_last: keep weights and activations channels-last on the device (faster
            convolutions on many GPUs); results are the same tensors, in the usual layout.
        warm_up: before the first timed pass on a device, run the network once untimed, so
            that ``timings`` are steady-state (the first pass on a CPU or GPU is typically
            2–20× slower: memory allocation, kernel selection, lazy initialisation). Off, the
            first result's timings are that cold pass, and ``result.cold`` says so.
        labels: the class names: a labels file (see ``visualizer.core.labels``) or a sequence
            of names; None: those stored in the checkpoint, else ImageNet's for a 1000-class
            network, else ``class 0`` … ``class N-1``.
        mean, std: the normalisation, one value per input channel (3, or 1 for a grey-scale
            network); None: the checkpoint's (``mean``, ``std``), else ImageNet's (averaged
            over RGB for one channel).
        resize: the shorter side's length after resizing, in pixels; None: the architecture's
            (256), or the crop's ratio to it when only the crop is given.
        crop: the centre crop's side, the model input's size, in pixels; None: the
            checkpoint's ``input_size``, else the architecture's (224).

    Raises:
        WeightsError: the weights could not be had or do not fit.
        LabelsError: the labels cannot be read, or their count is not the network's classes.
        PreprocessingError: mean, std, resize or crop that cannot be used (e.g. 3 values for
            a one-channel network).
        DeviceError: the device cannot be used.

    Examples::

        analyzer = Analyzer("resnet101", weights="random", device="cpu")
        result = analyzer.analyze("photo.jpg")
        cam = analyzer.gradcam(result, stage="C5")
    """

    def __init__(
        self,
        model: str | nn.Module = "resnet101",
        weights: str | os.PathLike[str] = "imagenet",
        device: str | torch.device = "auto",
        *,
        timings: bool = True,
        progress: bool = True,
        channels_last: bool = False,
        warm_up: bool = True,
        labels: str | os.PathLike[str] | Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        resize: int | None = None,
        crop: int | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self._weights = weights if isinstance(model, str) else None
        if isinstance(model, str):
            model = build_model(model, weights, progress=progress)
        elif not hasattr(model, "forward_from") or not hasattr(model, "stages"):
            raise TypeError("model must be a name or a network built by models.build_model")
        elif model.training:
            raise ValueError("the model is in training mode: call model.eval() first")
        self._lock = _lock_of(model)
        self.channels_last = channels_last
        with self._lock:
            self.model = model.to(self.device)
            if channels_last:
                self.model.to(memory_format=torch.channels_last)
        self.arch: str = model.arch
        self.weights_info = getattr(model, "weights_info", None)
        self.num_classes: int = getattr(model, "num_classes", 1000)
        self.in_channels: int = getattr(model, "in_channels", 3)
        self.labels, self.preprocessing = network_setup(
            model, labels=labels, mean=mean, std=std, resize=resize, crop=crop
        )
        self.categories: list[str] = list(self.labels.names)
        self.timings = timings
        self.warm_up = warm_up
        self._warm = False  # a pass has run on the current device
        self.notice: str | None = None
        self._timer = LayerTimer(model)
        self._token = next(_tokens)
        self._feature_layers: tuple[FeatureLayer, ...] | None = None
        self._feature_names: frozenset[str] = frozenset()

    def analyze(
        self,
        image: str | os.PathLike[str] | Image.Image,
        *,
        source: str | None = None,
        layers: Sequence[str] = (),
    ) -> AnalysisResult:
        """Run the network on ``image`` (a path, read with ``load_image``, or a PIL image).

        ``source`` names an image given in memory in the result (default ``"<image>"``).
        ``layers``: names of modules (``feature_layers()``) or stages whose outputs to keep
        in ``result.layers`` as well; each costs a copy of its output, nothing else.

        Raises:
            ImageLoadError: the file is not a readable image.
            ValueError: a name in ``layers`` that is no stage and no feature layer.
        """
        names = list(self._modules(layers))  # an unknown name is refused before any work
        if isinstance(image, Image.Image):
            picture, source = to_rgb(image), source or "<image>"
        else:
            picture, source = load_image(image), os.fspath(image)
        x, view = self.preprocessing(picture)
        return self.analyze_input(x, view, source=source, layers=names)

    def feature_layers(self) -> tuple[FeatureLayer, ...]:
        """Every module whose output is a feature map, in the order they run, with its type,
        output shape at this network's input size and stage (``visualizer.core.layers``):
        the layers ``analyze(layers=...)``, Grad-CAM and Guided Grad-CAM take."""
        if self._feature_layers is None:
            size = self.preprocessing.crop
            self._feature_layers = feature_layers(self.model, size, size)
            self._feature_names = frozenset(layer.name for layer in self._feature_layers)
        return self._feature_layers

    @property
    def labels_source(self) -> str:
        """Where the class names come from, in words."""
        return self.labels.source

    @property
    def binary(self) -> bool:
        """True for a one-output head: its probability is the sigmoid of its logit."""
        return self.num_classes == 1

    def analyze_input(
        self,
        x: torch.Tensor,
        view: Image.Image,
        *,
        source: str = "<input>",
        layers: Sequence[str] = (),
    ) -> AnalysisResult:
        """Run the network on an input already made: ``x`` ``(1, C, H, W)`` normalised (C the
        network's input channels), and ``view``, its RGB pixels before normalisation
        (``preprocessing(image)`` gives both); ``layers`` as for ``analyze``."""
        names = list(self._modules(layers))
        if x.ndim != 4 or x.shape[:2] != (1, self.in_channels):
            raise ValueError(
                f"expected an input of shape (1, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if view.size != (x.shape[3], x.shape[2]):
            raise ValueError(
                f"the view is {view.size[0]}×{view.size[1]}, the input {x.shape[3]}×{x.shape[2]}"
            )
        x = x.detach().to("cpu", torch.float32)
        with self._lock:
            if self.warm_up and self.timings and not self._warm:
                self._on_device(self._warm_up_pass, x)
            logits, stages, timings, shapes, cold, outputs = self._on_device(
                self._forward, x, names
            )
        return self._result(
            layers=outputs,
            cold=cold and self.timings,
            source=source,
            x=x,
            view=view,
            logits=logits,
            stages=stages,
            timings=timings,
            shapes=shapes,
        )

    def gradcam(
        self, result: AnalysisResult, stage: str = DEFAULT_CAM_STAGE, target: int | None = None
    ) -> np.ndarray:
        """Grad-CAM of class ``target`` (None: the top-1 class) at ``stage``.

        Returns a float32 ``(H, W)`` map at the model input's size, in [0, 1]: Captum's
        ``LayerGradCam(relu_attributions=True)`` upsampled bilinearly and min–max scaled.
        """
        return self.gradcams(result, [stage], target)[stage].map

    def gradcams(
        self,
        result: AnalysisResult,
        stages: Sequence[str] = STAGE_NAMES,
        target: int | None = None,
    ) -> dict[str, GradCam]:
        """Grad-CAM of class ``target`` at several stages, from one backward pass."""
        if isinstance(stages, str):
            stages = [stages]
        if not stages:
            raise ValueError("no stage asked for")
        for stage in stages:
            stage_index(stage)
        if result.model != self.arch:
            raise ValueError(f"this result is from {result.model}, not {self.arch}")
        target = result.topk[0][0] if target is None else self._checked_target(target)
        with self._lock:
            return self._on_device(self._grad_cams, result, list(stages), target)

    def attribute(
        self,
        result: AnalysisResult,
        method: str,
        target: int | None = None,
        layer: str | None = None,
        *,
        progress: Progress | None = None,
        **parameters: object,
    ) -> Attribution:
        """Captum's ``method`` (``attribution_methods.METHODS``) for class ``target`` (None:
        the top-1) on the input ``result`` was made from; ``layer`` for Grad-CAM and Guided
        Grad-CAM: a stage (``"C1"`` … ``"C5"``, default ``"C5"``) or a feature layer's name
        (``feature_layers()``: ``"layer3.4"``, ``"features.10"``). ``parameters`` go to Captum
        under its own names (``attribution_methods.defaults`` for the rest).
        ``progress(done, total)`` hears of every pass of the network and may stop the method
        by raising (``attribution_methods.CancelledError``); nothing is left on the network.

        Raises:
            ValueError: an unknown method or layer, a layer for a method that takes none.
            TypeError: a parameter the method does not take.
        """
        from visualizer.core.attribution_methods import (  # noqa: PLC0415
            LAYER_METHODS,
            attribute,
            defaults,
        )

        if result.model != self.arch:
            raise ValueError(f"this result is from {result.model}, not {self.arch}")
        defaults(method)  # an unknown method is refused before anything runs
        target = result.topk[0][0] if target is None else self._checked_target(target)
        name = None
        if method in LAYER_METHODS:
            name = layer or DEFAULT_CAM_STAGE
            self._module(name)
        elif layer is not None:
            raise ValueError(f"{method} takes no layer")
        with self._lock:
            return self._on_device(
                lambda: attribute(
                    self.model,
                    result.input.to(self.device),
                    method,
                    target,
                    layer=None if name is None else self._module(name),
                    layer_name=name,
                    progress=progress,
                    **parameters,
                )
            )

    def faithfulness(
        self,
        result: AnalysisResult,
        attribution: Attribution | np.ndarray,
        target: int | None = None,
        **options: object,
    ) -> Faithfulness:
        """The deletion and insertion curves of ``attribution``'s map (or of a map ``(H, W)``
        for class ``target``, default the top-1) and their areas, on the input ``result`` was
        made from (``visualizer.core.faithfulness``; ``options``: ``steps``, ``baseline``,
        ``batch_size``, ``progress``)."""
        if isinstance(attribution, np.ndarray):
            heat = attribution
            target = result.topk[0][0] if target is None else self._checked_target(target)
        else:
            heat, target = attribution.map, attribution.target
        from visualizer.core.faithfulness import faithfulness  # noqa: PLC0415

        with self._lock:
            return self._on_device(
                lambda: faithfulness(
                    self.model,
                    result.input.to(self.device),
                    heat,
                    target,
                    sigmoid=self.binary,
                    **options,
                )
            )

    def _module(self, name: str) -> nn.Module:
        """The module a stage or a feature layer's name stands for.

        Raises:
            ValueError: ``name`` is neither.
        """
        if not isinstance(name, str):
            raise TypeError(f"a layer is named by a string, not {type(name).__name__}")
        if name in self.model.stages:
            return self.model.stages[name]
        known = self.feature_layers()
        if name not in self._feature_names:
            raise unknown_layer(name, known)
        return self.model.get_submodule(name)

    def _modules(self, names: Sequence[str]) -> dict[str, nn.Module]:
        if isinstance(names, str):
            names = [names]
        return {name: self._module(name) for name in names}

    def label(self, index: int) -> str:
        """The class name of ``index``."""
        return self.categories[self._checked_target(index)]

    def describe_device(self) -> str:
        """Where the network runs, in words."""
        return describe_device(self.device)

    def _warm_up_pass(self, x: torch.Tensor) -> None:
        """One untimed pass, so that the timed one that follows is steady-state."""
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            self.model(x)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        self._warm = True

    def _forward(
        self, x: torch.Tensor, layers: Sequence[str] = ()
    ) -> tuple[
        torch.Tensor,
        dict[str, torch.Tensor],
        list[Timing],
        dict[str, tuple[int, ...]],
        bool,
        dict[str, torch.Tensor],
    ]:
        """Logits, stages, timings, layer shapes, whether this was the device's first pass
        (cold), and the outputs of the modules named ``layers``; tensors copied to the CPU
        here, where a failing device shows."""
        cold = not self._warm
        stages: dict[str, torch.Tensor] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        outputs: dict[str, torch.Tensor] = {}
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (
            self._captured(stages, to_host=True),
            captured_layers(self._modules(layers), outputs),
            self._timed(shapes) as timings,
            torch.inference_mode(),
        ):
            logits = self.model(x)
        if self.device.type == "cuda":  # the stages' copies to the host were queued: wait
            torch.cuda.current_stream(self.device).synchronize()
        on_cpu = {stage: stages[stage][0].to("cpu", torch.float32) for stage in STAGE_NAMES}
        self._warm = True
        return logits[0].to("cpu", torch.float32), on_cpu, timings, shapes, cold, outputs

    def _grad_cams(
        self, result: AnalysisResult, stages: list[str], target: int
    ) -> dict[str, GradCam]:
        first = min(stages, key=stage_index)
        if result.analyzer == self._token:
            start = result.stages[first].to(self.device).unsqueeze(0)
        else:  # another network's analysis: its activations are not this network's
            captured: dict[str, torch.Tensor] = {}
            with self._captured(captured), torch.inference_mode():
                self.model(result.input.to(self.device))
            start = captured[first]
        activations, gradients = stage_gradients(self.model, stages, start, target)
        maps = {}
        for stage in stages:
            cam, weights = grad_cam(activations[stage], gradients[stage], result.size)
            maps[stage] = GradCam(
                stage=stage,
                target=target,
                map=cam.to("cpu", torch.float32).numpy(),
                channel_weights=weights.to("cpu", torch.float32),
            )
        return maps

    @contextmanager
    def _captured(
        self, stages: dict[str, torch.Tensor], *, to_host: bool = False
    ) -> Iterator[None]:
        """Copies of the stage outputs of the passes run inside, by stage; ``to_host``: the
        copies may be on the CPU (from CUDA: queued into pinned memory as each stage is made,
        so one wait at the end covers them all; the caller waits)."""
        pinned = to_host and self.device.type == "cuda"

        def capture(stage: str, output: torch.Tensor) -> None:
            # Copied, as later in-place operations of other networks could overwrite an output
            # (the stream runs the copy before them); outside inference mode, so that the copy
            # can start a Grad-CAM pass later.
            with torch.inference_mode(False):
                if pinned:
                    host = torch.empty(output.shape, dtype=torch.float32, pin_memory=True)
                    stages[stage] = host.copy_(output, non_blocking=True)
                else:
                    stages[stage] = output.clone(memory_format=torch.contiguous_format)

        handles = [
            module.register_forward_hook(lambda _m, _i, output, stage=stage: capture(stage, output))
            for stage, module in self.model.stages.items()
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def _timed(self, shapes: dict[str, tuple[int, ...]]) -> Iterator[list[Timing]]:
        if not self.timings:
            yield []
            return
        with self._timer.timing(self.device, shapes) as timings:
            yield timings

    def _on_device(self, work, *args):
        """``work(*args)`` on the device; if the accelerator fails, again on the CPU."""
        try:
            return work(*args)
        except RuntimeError as error:
            if self.device.type == "cpu" or not is_device_failure(error):
                raise
            failed = describe_device(self.device)
            reason = "ran out of memory" if isinstance(error, torch.OutOfMemoryError) else "failed"
        self._move_to_cpu()
        self._warm = False
        self.notice = f"{failed} {reason}; running on the CPU from now on"
        if work == self._forward and self.warm_up and self.timings:
            self._warm_up_pass(args[0])  # the CPU's first pass would be cold
        return work(*args)

    def _move_to_cpu(self) -> None:
        """Bring the network to the CPU; from a broken GPU, rebuild it from its weights."""
        self.device = torch.device("cpu")
        try:
            self.model.to("cpu")
        except RuntimeError:
            if self._weights is None:
                raise RuntimeError(
                    "the GPU failed and the network could not be copied off it; "
                    "build the Analyzer again with device='cpu'"
                ) from None
            self.model = build_model(self.arch, self._weights, progress=False)
            self._timer = LayerTimer(self.model)
            self._lock = _lock_of(self.model)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _result(
        self,
        *,
        cold: bool,
        source: str,
        x: torch.Tensor,
        view: Image.Image,
        logits: torch.Tensor,
        stages: dict[str, torch.Tensor],
        timings: list[Timing],
        shapes: dict[str, tuple[int, ...]],
        layers: dict[str, torch.Tensor],
    ) -> AnalysisResult:
        probabilities = probabilities_of(logits, "sigmoid" if self.binary else "softmax")
        top = torch.topk(probabilities, min(TOP_K, probabilities.numel()))
        topk = [
            (index, self.categories[index] if index < len(self.categories) else str(index), p)
            for index, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)
        ]
        info = self.weights_info
        return AnalysisResult(
            model=self.arch,
            weights=str(info) if info is not None else "unknown",
            source=source,
            stages=MappingProxyType(stages),
            topk=topk,
            timings=timings,
            input=x,
            view=view,
            preprocessing=self.preprocessing.describe(),
            logits=logits,
            device=describe_device(self.device),
            notice=self.notice,
            trained=info.trained if info is not None else True,
            analyzer=self._token,
            layer_shapes=MappingProxyType(shapes),
            cold=cold,
            classes=self.num_classes,
            scores="sigmoid" if self.binary else "softmax",
            labels_source=self.labels.source,
            layers=MappingProxyType(layers),
        )

    def _checked_target(self, target: int) -> int:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TypeError(f"target must be a class index, not {type(target).__name__}")
        if not 0 <= target < self.num_classes:
            raise ValueError(
                f"target {target} is not a class index: the network has {self.num_classes} "
                f"{'class' if self.num_classes == 1 else 'classes'} (0 to {self.num_classes - 1})"
            )
        return int(target)

"""One network, loaded once, and what it makes of an image: stages, top-5, timings, Grad-CAM."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image
from torch import nn

from models import STAGE_NAMES, build_model, imagenet_weights
from models.stages import stage_index
from visualizer.core.attribution import GradCam, grad_cam, stage_gradients
from visualizer.core.device import describe_device, is_device_failure, resolve_device
from visualizer.core.images import load_image, to_rgb
from visualizer.core.preprocess import Preprocessing
from visualizer.core.timing import LayerTimer, Timing

TOP_K = 5
DEFAULT_CAM_STAGE = "C5"  # the last convolutional stage, as in the Grad-CAM paper


@dataclass(frozen=True, eq=False)
class AnalysisResult:
    """What one network made of one image. Every tensor is on the CPU."""

    model: str  # "vgg16" or "resnet101"
    weights: str  # e.g. "ImageNet (IMAGENET1K_V2)" or "random (untrained, seed 0)"
    source: str  # the image file, or "<image>" for an image given in memory
    stages: Mapping[str, torch.Tensor]  # "C1" … "C5": (C, H, W) float32
    topk: list[tuple[int, str, float]]  # (class index, label, probability), descending
    timings: list[Timing]  # (layer name, module type, milliseconds), in execution order
    input: torch.Tensor  # (1, 3, H, W): exactly what the model saw, normalised
    view: Image.Image  # RGB W×H: the image as the model saw it, before normalisation
    preprocessing: str  # how ``input`` was made from the image, in words
    logits: torch.Tensor  # (classes,)
    device: str  # where it ran, e.g. "CPU (2 threads)"
    notice: str | None = None  # set when something had to change, e.g. a fall-back to the CPU
    trained: bool = field(default=True, repr=False)  # False for random weights

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
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (or ``"cuda:1"``).
        timings: time every layer (``result.timings``); off, the list is empty.

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
    ) -> None:
        self.device = resolve_device(device)
        if isinstance(model, str):
            model = build_model(model, weights, progress=progress)
        elif not hasattr(model, "forward_from") or not hasattr(model, "stages"):
            raise TypeError("model must be a name or a network built by models.build_model")
        elif model.training:
            raise ValueError("the model is in training mode: call model.eval() first")
        self.model = model.to(self.device)
        self.arch: str = model.arch
        self.weights_info = getattr(model, "weights_info", None)
        weights_entry = imagenet_weights(self.arch)
        self.categories: list[str] = list(weights_entry.meta["categories"])
        self.preprocessing = Preprocessing.for_weights(weights_entry)
        self.timings = timings
        self.notice: str | None = None
        self._timer = LayerTimer(model)
        self._lock = threading.Lock()
        # The latest result's stage outputs on the device, so Grad-CAM needs no copy back.
        self._latest: tuple[AnalysisResult, dict[str, torch.Tensor]] | None = None

    def analyze(
        self, image: str | os.PathLike[str] | Image.Image, *, source: str | None = None
    ) -> AnalysisResult:
        """Run the network on ``image`` (a path, read with ``load_image``, or a PIL image).

        ``source`` names an image given in memory in the result (default ``"<image>"``).

        Raises:
            ImageLoadError: the file is not a readable image.
        """
        if isinstance(image, Image.Image):
            picture, source = to_rgb(image), source or "<image>"
        else:
            picture, source = load_image(image), os.fspath(image)
        x, view = self.preprocessing(picture)
        return self.analyze_input(x, view, source=source)

    def analyze_input(
        self, x: torch.Tensor, view: Image.Image, *, source: str = "<input>"
    ) -> AnalysisResult:
        """Run the network on an input already made: ``x`` ``(1, 3, H, W)`` normalised, and
        ``view``, its RGB pixels before normalisation (``preprocessing(image)`` gives both)."""
        if x.ndim != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"expected an input of shape (1, 3, H, W), got {tuple(x.shape)}")
        with self._lock:
            logits, stages, timings = self._on_device(self._forward, x)
            result = self._result(
                source=source, x=x, view=view, logits=logits, stages=stages, timings=timings
            )
            self._latest = (result, stages) if self.device.type != "cpu" else None
        return result

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
            activations, gradients = self._on_device(self._gradients, result, list(stages), target)
        maps = {}
        for stage in stages:
            cam, weights = grad_cam(activations[stage], gradients[stage], result.size)
            maps[stage] = GradCam(
                stage=stage,
                target=target,
                map=cam.to(device="cpu", dtype=torch.float32).numpy(),
                channel_weights=weights.cpu(),
            )
        return maps

    def label(self, index: int) -> str:
        """The class name of ``index``."""
        return self.categories[self._checked_target(index)]

    def describe_device(self) -> str:
        """Where the network runs, in words."""
        return describe_device(self.device)

    def _forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[Timing]]:
        stages: dict[str, torch.Tensor] = {}
        with self._captured(stages), self._timed() as timings, torch.inference_mode():
            logits = self.model(x.to(self.device))
        return logits, stages, timings

    def _gradients(
        self, result: AnalysisResult, stages: list[str], target: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        first = min(stages, key=stage_index)
        if self._latest is not None and self._latest[0] is result:
            activation = self._latest[1][first]
        else:
            activation = result.stages[first].to(self.device).unsqueeze(0)
        return stage_gradients(self.model, stages, activation, target)

    @contextmanager
    def _captured(self, stages: dict[str, torch.Tensor]) -> Iterator[None]:
        def capture(stage: str, output: torch.Tensor) -> None:
            # Cloned, as later in-place operations of other networks could overwrite an output;
            # outside inference mode, so that the copy can start a Grad-CAM pass later.
            with torch.inference_mode(False):
                stages[stage] = output.clone()

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
    def _timed(self) -> Iterator[list[Timing]]:
        if not self.timings:
            yield []
            return
        with self._timer.timing(self.device) as timings:
            yield timings

    def _on_device(self, work, *args):
        """``work(*args)`` on the device; if the accelerator fails, again on the CPU."""
        try:
            return work(*args)
        except (RuntimeError, torch.OutOfMemoryError) as error:
            if self.device.type == "cpu" or not is_device_failure(error):
                raise
            failed = describe_device(self.device)
            reason = "ran out of memory" if isinstance(error, torch.OutOfMemoryError) else "failed"
        self._latest = None
        self.model.to("cpu")
        self.device = torch.device("cpu")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.notice = f"{failed} {reason}; running on the CPU from now on"
        return work(*args)

    def _result(
        self,
        *,
        source: str,
        x: torch.Tensor,
        view: Image.Image,
        logits: torch.Tensor,
        stages: dict[str, torch.Tensor],
        timings: list[Timing],
    ) -> AnalysisResult:
        logits = logits[0].float().cpu()
        probabilities = torch.softmax(logits, dim=0)
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
            stages=MappingProxyType({s: stages[s][0].float().cpu() for s in STAGE_NAMES}),
            topk=topk,
            timings=timings,
            input=x,
            view=view,
            preprocessing=self.preprocessing.describe(),
            logits=logits,
            device=describe_device(self.device),
            notice=self.notice,
            trained=info.trained if info is not None else True,
        )

    def _checked_target(self, target: int) -> int:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
            raise TypeError(f"target must be a class index, not {type(target).__name__}")
        if not 0 <= target < len(self.categories):
            raise ValueError(
                f"target {target} is not a class index: 0 to {len(self.categories) - 1}"
            )
        return int(target)

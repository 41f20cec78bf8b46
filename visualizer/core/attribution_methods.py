"""Captum's attribution methods on one of ``models``' networks: what each pixel (or each place of
a layer) did for one class, and a map of it to show.

Every method is Captum's own call (never re-implemented); this module only chooses defaults,
reduces the result to a map, and keeps the caller's network as it was. Methods and the
conventional reduction of their result over the input channels to an ``(H, W)`` map:

==================== ================================= ==========================================
method               Captum                            map (then min–max scaled to [0, 1])
==================== ================================= ==========================================
gradcam              LayerGradCam(relu_attributions)   upsampled bilinearly to the input size
guided-gradcam       GuidedGradCam                     max over channels of the absolute value
saliency             Saliency(abs=True)                max over channels (Simonyan et al., 2014)
integrated-gradients IntegratedGradients               sum over channels of the absolute value
occlusion            Occlusion                         sum over channels, negatives set to 0
smoothgrad-saliency  NoiseTunnel(Saliency), smoothgrad max over channels
smoothgrad-ig        NoiseTunnel(IntegratedGradients)  sum over channels of the absolute value
==================== ================================= ==========================================

Slow methods evaluate the network many times; Captum batches those evaluations
(``internal_batch_size``, ``perturbations_per_eval``, ``nt_samples_batch_size``), and on a GPU
the defaults batch more (``GPU_BATCHES``). ``progress`` is told of every pass, and may stop
the method by raising.

Guided backpropagation puts backward hooks on the network's ReLU modules, which in-place ReLUs
break (captum#973); for its pass the ReLUs are made out-of-place and put back after, whatever
happens.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from visualizer.choices import LAYER_METHODS, METHOD_PARAMETERS, METHOD_TITLES, METHODS
from visualizer.core.attribution import min_max

__all__ = [
    "DEFAULTS",
    "LAYER_METHODS",
    "METHODS",
    "METHOD_PARAMETERS",
    "TITLES",
    "Attribution",
    "CancelledError",
    "attribute",
    "defaults",
    "describe_parameters",
    "passes",
    "reduced",
]

# Defaults, under Captum's own parameter names. Sizes are in input pixels, noise in the units of
# the normalised input (one standard deviation of ImageNet's pixels is 1).
DEFAULTS: Mapping[str, Mapping[str, object]] = MappingProxyType(
    {
        "gradcam": {},
        "guided-gradcam": {},
        "saliency": {},
        "integrated-gradients": {"n_steps": 50, "baselines": 0.0, "internal_batch_size": 16},
        "occlusion": {
            "sliding_window_shapes": (32, 32),
            "strides": (16, 16),
            "baselines": 0.0,
            "perturbations_per_eval": 16,
        },
        "smoothgrad-saliency": {"nt_samples": 16, "stdevs": 0.15, "nt_samples_batch_size": 8},
        "smoothgrad-ig": {
            "nt_samples": 8,
            "stdevs": 0.15,
            "n_steps": 20,
            "baselines": 0.0,
            "nt_samples_batch_size": 1,
            "internal_batch_size": 20,
        },
    }
)
# What the defaults batch instead on a GPU, where a larger batch costs little more than one.
GPU_BATCHES: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "integrated-gradients": {"internal_batch_size": 50},
        "occlusion": {"perturbations_per_eval": 64},
        "smoothgrad-saliency": {"nt_samples_batch_size": 16},
        "smoothgrad-ig": {"nt_samples_batch_size": 8, "internal_batch_size": 160},
    }
)
TITLES: Mapping[str, str] = MappingProxyType(METHOD_TITLES)
# Sources, for documentation and figures' metadata.
PAPERS: Mapping[str, str] = MappingProxyType(
    {
        "gradcam": "Selvaraju et al., Grad-CAM, ICCV 2017",
        "guided-gradcam": "Selvaraju et al., Grad-CAM, ICCV 2017",
        "saliency": "Simonyan et al., Deep Inside Convolutional Networks, ICLR 2014 workshop",
        "integrated-gradients": "Sundararajan et al., Axiomatic Attribution, ICML 2017",
        "occlusion": "Zeiler and Fergus, Visualizing and Understanding, ECCV 2014",
        "smoothgrad-saliency": "Smilkov et al., SmoothGrad, 2017",
        "smoothgrad-ig": "Smilkov et al., SmoothGrad, 2017",
    }
)
Progress = Callable[[int, int], None]  # (passes done, passes in all); may raise to stop
NOISE_SEED = 0  # SmoothGrad's noise: the same map for the same input, every time


class CancelledError(Exception):
    """Raised by a ``progress`` callback to stop a method; the network is left as it was."""


def defaults(method: str, device: torch.device | str = "cpu") -> dict[str, object]:
    """The parameters ``method`` runs with unless given, on ``device`` (Captum's names)."""
    if method not in DEFAULTS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    chosen = dict(DEFAULTS[method])
    if torch.device(device).type == "cuda":
        chosen.update(GPU_BATCHES.get(method, {}))
    return chosen


def _checked(method: str, parameters: Mapping[str, object]) -> dict[str, object]:
    """``parameters`` if ``method`` takes them all (``choices.METHOD_PARAMETERS``), window
    sizes and strides given as one number made pairs."""
    offered = METHOD_PARAMETERS[method]
    for name in parameters:
        if name not in offered:
            takes = f"it takes {', '.join(offered)}" if offered else "it takes none"
            raise TypeError(f"{method} takes no parameter {name!r}: {takes}")
    checked = dict(parameters)
    for name in ("sliding_window_shapes", "strides"):
        if isinstance(checked.get(name), int):
            checked[name] = (checked[name], checked[name])
    return checked


def describe_parameters(parameters: Mapping[str, object]) -> str:
    """``parameters`` in words, e.g. ``"n_steps=50, baselines=0.0"`` (``"none"`` if empty)."""
    return ", ".join(f"{name}={value}" for name, value in parameters.items()) or "none"


def passes(method: str, parameters: Mapping[str, object], size: tuple[int, int]) -> int:
    """How many times Captum runs the network for ``method`` with ``parameters`` on one
    input of ``size`` (height, width): the ``total`` given to ``progress``."""
    if method in ("gradcam", "saliency"):
        return 1
    if method == "guided-gradcam":
        return 2  # Grad-CAM's pass and guided backpropagation's
    if method == "integrated-gradients":
        return _batches(int(parameters["n_steps"]), parameters.get("internal_batch_size"))
    if method == "occlusion":
        window, strides = parameters["sliding_window_shapes"], parameters["strides"]
        places = math.prod(
            (side - w) // s + 1 for side, w, s in zip(size, window, strides, strict=True)
        )
        return 1 + _batches(places, parameters.get("perturbations_per_eval", 1))
    samples = int(parameters["nt_samples"])
    per_batch = int(parameters.get("nt_samples_batch_size") or samples)
    batches = [min(per_batch, samples - first) for first in range(0, samples, per_batch)]
    if method == "smoothgrad-saliency":
        return len(batches)
    internal = parameters.get("internal_batch_size")
    steps = int(parameters["n_steps"])
    return sum(
        _batches(steps, None if internal is None else max(1, int(internal) // batch))
        for batch in batches
    )


def _batches(count: int, batch: object) -> int:
    return 1 if batch is None else math.ceil(count / int(batch))


@dataclass(frozen=True, eq=False)
class Attribution:
    """One method's attribution of one class for one input.

    Attributes:
        method: one of ``METHODS``.
        target: the class index explained.
        layer: the module attributed at (a stage ``"C5"`` or a module name), or None.
        parameters: what was passed to Captum, defaults included.
        raw: the tensor Captum returned, on the CPU (``(1, C, H, W)`` at the input, or
            ``(1, 1, h, w)`` at a layer for Grad-CAM).
        map: ``(H, W)`` float32 in [0, 1] at the model input's size (see the module's table).
    """

    method: str
    target: int
    layer: str | None
    parameters: Mapping[str, object] = field(repr=False)
    raw: torch.Tensor = field(repr=False)
    map: np.ndarray = field(repr=False)


def attribute(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: int,
    *,
    layer: nn.Module | None = None,
    layer_name: str | None = None,
    progress: Progress | None = None,
    **parameters: object,
) -> Attribution:
    """Captum's ``method`` for class ``target`` on input ``x`` ``(1, C, H, W)``, on ``x``'s
    device; ``layer`` (the module) for the layer methods. ``progress(done, total)`` is called
    after each pass of the network (``passes``); an exception it raises (``CancelledError``) stops
    the method and comes out of this call, Captum's hooks and the ReLUs put back.

    Raises:
        ValueError: an unknown method, a layer for a method that takes none, or none for one
            that needs it.
        TypeError: a parameter Captum's method does not take (Captum's own message).
    """
    chosen = {**defaults(method, x.device), **_checked(method, parameters)}
    if (layer is not None) != (method in LAYER_METHODS):
        needs = "needs a layer" if method in LAYER_METHODS else "takes no layer"
        raise ValueError(f"{method} {needs}")
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        _counted(model, passes(method, chosen, tuple(x.shape[-2:])), progress),
    ):
        inputs = x.detach().clone().requires_grad_()
        raw = _captum(
            model, inputs, method=method, target=target, layer=layer, parameters=dict(chosen)
        ).detach()
    return Attribution(
        method=method,
        target=target,
        layer=layer_name,
        parameters=MappingProxyType(dict(chosen)),
        raw=raw.to("cpu", torch.float32),
        map=reduced(method, raw, tuple(x.shape[-2:])).to("cpu", torch.float32).numpy(),
    )


def reduced(method: str, raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The ``(H, W)`` map of ``method``'s ``raw`` result (see the module's table)."""
    if method == "gradcam":
        values = F.interpolate(raw, size, mode="bilinear", align_corners=False)[0, 0]
    elif method in ("saliency", "smoothgrad-saliency", "guided-gradcam"):
        values = raw[0].abs().amax(dim=0)
    elif method == "occlusion":
        values = raw[0].sum(dim=0).clamp(min=0)
    else:
        values = raw[0].abs().sum(dim=0)
    return min_max(values)


def _captum(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    method: str,
    target: int,
    layer: nn.Module | None,
    parameters: dict[str, object],
) -> torch.Tensor:
    from captum.attr import (  # captum is slow to import: loaded at the first attribution
        GuidedGradCam,
        IntegratedGradients,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    if method == "gradcam":
        return LayerGradCam(model, layer).attribute(
            inputs, target=target, relu_attributions=True, **parameters
        )
    if method == "guided-gradcam":
        with out_of_place_relus(model):
            return GuidedGradCam(model, layer).attribute(inputs, target=target, **parameters)
    if method == "saliency":
        return Saliency(model).attribute(inputs, target=target, abs=True, **parameters)
    if method == "integrated-gradients":
        return IntegratedGradients(model).attribute(inputs, target=target, **parameters)
    if method == "occlusion":
        channels = inputs.shape[1]
        window = (channels, *parameters.pop("sliding_window_shapes"))  # type: ignore[misc]
        strides = (channels, *parameters.pop("strides"))  # type: ignore[misc]
        return Occlusion(model).attribute(
            inputs, target=target, sliding_window_shapes=window, strides=strides, **parameters
        )
    inner = Saliency(model) if method == "smoothgrad-saliency" else IntegratedGradients(model)
    extra = {"abs": True} if method == "smoothgrad-saliency" else {}
    with torch.random.fork_rng(devices=_devices(inputs)):
        torch.manual_seed(NOISE_SEED)
        return NoiseTunnel(inner).attribute(
            inputs, nt_type="smoothgrad", target=target, **extra, **parameters
        )


@contextlib.contextmanager
def _counted(model: nn.Module, total: int, progress: Progress | None) -> Iterator[None]:
    """``progress`` told of each pass of ``model`` inside (never more than ``total``)."""
    if progress is None:
        yield
        return
    done = 0

    def count(_module: nn.Module, _inputs: object, _output: object) -> None:
        nonlocal done
        done += 1
        progress(min(done, total), total)

    handle = model.register_forward_hook(count)
    try:
        yield
    finally:
        handle.remove()


def _devices(tensor: torch.Tensor) -> list[int]:
    return [tensor.device.index or 0] if tensor.device.type == "cuda" else []


@contextlib.contextmanager
def out_of_place_relus(model: nn.Module) -> Iterator[None]:
    """The network's in-place ReLUs made out-of-place inside, and put back after."""
    changed = [m for m in model.modules() if isinstance(m, nn.ReLU) and m.inplace]
    for module in changed:
        module.inplace = False
    try:
        with warnings.catch_warnings():
            # Captum says it hooks the ReLUs, and removes the hooks after: as intended here.
            warnings.filterwarnings("ignore", "Setting backward hooks on ReLU", UserWarning)
            yield
    finally:
        for module in changed:
            module.inplace = True

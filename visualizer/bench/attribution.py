"""P10: each attribution method through fmviz (``Analyzer.attribute``) against Captum's own call
on the same network, input, class and parameters.

fmviz's call adds what it does around Captum's: the defaults, the input copied to the device
and made to require gradients, the ReLUs made out-of-place for guided backpropagation, the
seeded noise of SmoothGrad, the map reduced and min–max scaled, the result copied to the CPU.
The reference is what a user of Captum writes: the method's object made and its
``attribute`` called with the same parameters, on a copy of the input that requires
gradients (and, for Guided Grad-CAM, out-of-place ReLUs: in-place ones break its hooks,
captum#973).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from visualizer.core.analysis import AnalysisResult, Analyzer

# On a CPU, only the methods of one or two passes of the network are benchmarked unless asked
# for: the others take 20–170 passes each (seconds to a minute a call on two cores), and fmviz's
# share of a call is largest, so hardest to keep within the target, where Captum's is smallest.
CPU_METHODS = ("gradcam", "guided-gradcam", "saliency")
TARGET = 1.05
WHAT = (
    "each attribution method through analyzer.attribute() vs Captum's own call on the same "
    "network, input, class and parameters"
)


def default_methods(device: torch.device) -> tuple[str, ...]:
    """The methods ``fmviz bench`` measures unless ``--methods`` names others: every one on an
    accelerator, ``CPU_METHODS`` on a CPU."""
    from visualizer.core.attribution_methods import METHODS  # noqa: PLC0415

    return CPU_METHODS if device.type == "cpu" else METHODS


def attribution_cases(
    analyzer: Analyzer,
    result: AnalysisResult,
    methods: Sequence[str],
    parameters: Mapping[str, Mapping[str, object]],
) -> tuple[dict[str, Callable[[], object]], dict[str, dict[str, object]]]:
    """The timed cases of P10, ``"attribute <method>"`` and ``"Captum <method>"`` for each of
    ``methods``, and the parameters each method runs with (its defaults on the analyzer's
    device, then ``parameters[method]``), the same for both sides.

    Grad-CAM and Guided Grad-CAM attribute at C5.
    """
    from visualizer.core.attribution_methods import defaults  # noqa: PLC0415

    x = result.input.to(analyzer.device)
    target = result.topk[0][0]
    cases: dict[str, Callable[[], object]] = {}
    used: dict[str, dict[str, object]] = {}
    for method in methods:
        given = dict(parameters.get(method, {}))
        used[method] = {**defaults(method, analyzer.device), **given}

        def ours(method: str = method, given: dict[str, object] = given) -> object:
            return analyzer.attribute(result, method, **given)

        cases[f"attribute {method}"] = ours
        cases[f"Captum {method}"] = captum_call(
            analyzer.model,
            x,
            method,
            target=target,
            layer=analyzer.model.stages["C5"],
            parameters=used[method],
        )
    return cases, used


def captum_call(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    *,
    target: int,
    layer: nn.Module,
    parameters: Mapping[str, object],
) -> Callable[[], torch.Tensor]:
    """Captum's own call of ``method`` on ``model`` for input ``x`` ``(1, C, H, W)`` (on the
    model's device) and class ``target``, with ``parameters`` (Captum's names); ``layer`` for
    Grad-CAM and Guided Grad-CAM. Returns Captum's result."""
    from captum.attr import (
        GuidedGradCam,
        IntegratedGradients,
        LayerGradCam,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    from visualizer.core.attribution_methods import out_of_place_relus  # noqa: PLC0415

    chosen = dict(parameters)
    if method == "occlusion":  # the window covers every channel, as fmviz's does
        channels = x.shape[1]
        window = chosen.pop("sliding_window_shapes")
        strides = chosen.pop("strides")
        chosen["sliding_window_shapes"] = (channels, *window)
        chosen["strides"] = (channels, *strides) if isinstance(strides, tuple) else strides

    def run() -> torch.Tensor:
        inputs = x.detach().clone().requires_grad_()
        if method == "gradcam":
            return LayerGradCam(model, layer).attribute(
                inputs, target=target, relu_attributions=True, **chosen
            )
        if method == "guided-gradcam":
            with out_of_place_relus(model):
                return GuidedGradCam(model, layer).attribute(inputs, target=target, **chosen)
        if method == "saliency":
            return Saliency(model).attribute(inputs, target=target, abs=True, **chosen)
        if method == "integrated-gradients":
            return IntegratedGradients(model).attribute(inputs, target=target, **chosen)
        if method == "occlusion":
            return Occlusion(model).attribute(inputs, target=target, **chosen)
        if method == "smoothgrad-saliency":
            return NoiseTunnel(Saliency(model)).attribute(
                inputs, nt_type="smoothgrad", target=target, abs=True, **chosen
            )
        if method == "smoothgrad-ig":
            return NoiseTunnel(IntegratedGradients(model)).attribute(
                inputs, nt_type="smoothgrad", target=target, **chosen
            )
        raise ValueError(f"unknown method {method!r}")

    return run


def method_ratios(medians_ms: Mapping[str, float], methods: Sequence[str]) -> dict[str, float]:
    """Each method's median through fmviz ÷ Captum's."""
    return {
        method: medians_ms[f"attribute {method}"] / medians_ms[f"Captum {method}"]
        for method in methods
    }

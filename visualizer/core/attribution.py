"""Grad-CAM as Captum's ``LayerGradCam(relu_attributions=True)`` computes it, many stages at once.

Captum runs a forward and a backward pass for every stage it is asked about. Here the stage
activations that the analysis already captured are reused: the network is run again only from
the earliest stage asked for, and one ``torch.autograd.grad`` call gives the gradients of the
target logit with respect to every stage asked for. The arithmetic after that is Captum's,
operation for operation, so the maps agree with it to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from models.stages import stage_index


@dataclass(frozen=True, eq=False)
class GradCam:
    """One stage's Grad-CAM for one class."""

    stage: str
    target: int
    map: np.ndarray  # (H, W) float32 in [0, 1], at the model input's size
    channel_weights: torch.Tensor  # (C,) mean gradient of each channel: Grad-CAM's weights


def stage_gradients(
    model: nn.Module, stages: Sequence[str], start: torch.Tensor, target: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The outputs of ``stages`` and the gradients of logit ``target`` with respect to them.

    ``start`` is the output ``(1, C, H, W)`` of the earliest of ``stages``, on the model's
    device; the network runs on from there (``model.forward_from``), and autograd gives every
    gradient at once. No module backward hook is used: in-place ReLUs break them.
    """
    ordered = sorted(set(stages), key=stage_index)
    first = ordered[0]
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, output, stage=stage: outputs.__setitem__(stage, output)
        )
        for stage, module in model.stages.items()
        if stage in ordered[1:]
    ]
    try:
        # Out of any inference mode or no_grad a caller may have entered.
        with torch.inference_mode(False), torch.enable_grad():
            # A tensor made inside inference mode (e.g. moved to the GPU there) cannot take
            # part in autograd; a copy made out here can.
            begin = start.clone() if start.is_inference() else start.detach()
            outputs[first] = begin.requires_grad_()
            logits = model.forward_from(first, outputs[first])
            gradients = torch.autograd.grad(logits[:, target].sum(), [outputs[s] for s in ordered])
    finally:
        for handle in handles:
            handle.remove()
    return (
        {stage: outputs[stage].detach() for stage in ordered},
        dict(zip(ordered, gradients, strict=True)),
    )


def grad_cam(
    activation: torch.Tensor, gradient: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The min–max scaled map ``(H, W)`` at ``size`` and the channel weights ``(C,)``.

    Captum's arithmetic: weights are the spatial mean of the gradient; the map is the ReLU of
    the weighted sum of the channels, upsampled bilinearly (``align_corners=False``).
    """
    weights = torch.mean(gradient, dim=(2, 3), keepdim=True)
    cam = F.relu(torch.sum(weights * activation, dim=1, keepdim=True))
    cam = F.interpolate(cam, size, mode="bilinear", align_corners=False)[0, 0]
    return min_max(cam), weights.flatten()


def min_max(values: torch.Tensor) -> torch.Tensor:
    """``values`` scaled to [0, 1]; all zeros where they are all equal."""
    low, high = values.min(), values.max()
    if high <= low:
        return torch.zeros_like(values)
    return (values - low) / (high - low)

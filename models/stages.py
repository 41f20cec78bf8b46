"""The five resolution stages C1–C5 that fmviz taps in every network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
from torch import nn

STAGE_NAMES: tuple[str, ...] = ("C1", "C2", "C3", "C4", "C5")


def stage_map(modules: Sequence[nn.Module]) -> Mapping[str, nn.Module]:
    """Read-only mapping of C1–C5 to the modules whose outputs are those stages."""
    if len(modules) != len(STAGE_NAMES):
        raise ValueError(f"expected {len(STAGE_NAMES)} stage modules, got {len(modules)}")
    return MappingProxyType(dict(zip(STAGE_NAMES, modules, strict=True)))


def stage_index(stage: str) -> int:
    """Position of ``stage`` in C1–C5; ``ValueError`` naming the choices for anything else."""
    try:
        return STAGE_NAMES.index(stage)
    except ValueError:
        raise ValueError(
            f"unknown stage {stage!r}: choose one of {', '.join(STAGE_NAMES)}"
        ) from None


def stage_module_names(model: nn.Module) -> dict[str, str]:
    """Qualified module name of each stage, e.g. ``{"C1": "features.3", ...}``."""
    names = {id(module): name for name, module in model.named_modules()}
    return {stage: names[id(module)] for stage, module in model.stages.items()}


def stage_shapes(
    model: nn.Module, height: int = 224, width: int = 224
) -> dict[str, tuple[int, int, int]]:
    """Output shape (C, H, W) of each stage for one input of the given size.

    Runs the model on the meta device, so no memory is allocated and no arithmetic is done.
    """
    shapes: dict[str, tuple[int, int, int]] = {}
    meta_model = meta_copy(model)
    handles = [
        module.register_forward_hook(_shape_recorder(shapes, stage))
        for stage, module in meta_model.stages.items()
    ]
    try:
        with torch.no_grad():
            meta_model(torch.empty(1, model.in_channels, height, width, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def _shape_recorder(shapes: dict[str, tuple[int, int, int]], stage: str):
    def record(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        _, channels, height, width = output.shape
        shapes[stage] = (channels, height, width)

    return record


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s architecture on the meta device (shapes only, no memory), in eval
    mode; its weights are not copied."""
    with torch.device("meta"):
        copy = type(model)(num_classes=model.num_classes, in_channels=model.in_channels)
    return copy.eval()

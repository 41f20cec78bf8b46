"""Any module of a network as a feature map: which modules give one, and their outputs.

A *feature layer* is a module whose output is one feature map ``(1, C, H, W)``: a
convolution, a batch norm, a ReLU, a pooling layer, a residual block, a stage. Modules called
more than once in a pass (ResNet's ReLU shared by the three convolutions of a block) are left
out, as their output is not one map; so are those whose output is not 4-D (the classifier).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from models.stages import STAGE_NAMES, meta_copy, stage_module_names


@dataclass(frozen=True)
class FeatureLayer:
    """One module whose output is a feature map.

    Attributes:
        name: the module's qualified name, e.g. ``"layer3.4.conv2"`` or ``"features.10"``
            (torchvision's names).
        module_type: its class name, e.g. ``"Conv2d"``, ``"Bottleneck"``.
        shape: its output ``(C, H, W)`` for the network's input size.
        stage: the stage ``"C1"`` … ``"C5"`` it belongs to (the first stage whose module has
            not finished when it does), or None after C5 (the average pooling).
    """

    name: str
    module_type: str
    shape: tuple[int, int, int]
    stage: str | None


def feature_layers(model: nn.Module, height: int, width: int) -> tuple[FeatureLayer, ...]:
    """The feature layers of ``model`` (one of ``models``' networks) for an input of
    ``height`` × ``width`` pixels, in the order their outputs are made.

    Runs a copy of the architecture on the meta device: no memory, no arithmetic.
    """
    copy = meta_copy(model)
    finished: list[tuple[str, nn.Module, object]] = []
    handles = [
        module.register_forward_hook(
            lambda m, _i, output, name=name: finished.append((name, m, output))
        )
        for name, module in copy.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            copy(torch.empty(1, model.in_channels, height, width, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    calls: dict[str, int] = {}
    for name, _, _ in finished:
        calls[name] = calls.get(name, 0) + 1
    stage_of = {name: stage for stage, name in stage_module_names(copy).items()}
    stages_done = 0
    layers = []
    for name, module, output in finished:
        stage = STAGE_NAMES[stages_done] if stages_done < len(STAGE_NAMES) else None
        if name in stage_of:
            stages_done = STAGE_NAMES.index(stage_of[name]) + 1
        if calls[name] == 1 and isinstance(output, torch.Tensor) and output.ndim == 4:
            channels, rows, columns = output.shape[1:]
            layers.append(
                FeatureLayer(name, type(module).__name__, (channels, rows, columns), stage)
            )
    return tuple(layers)


@contextmanager
def captured_layers(
    modules: dict[str, nn.Module], outputs: dict[str, torch.Tensor]
) -> Iterator[None]:
    """Inside, each of ``modules``' outputs (by the name given) copied to ``outputs`` as a
    ``(C, H, W)`` float32 CPU tensor, from the first image of the batch. Copied when made, as
    a later in-place operation (a ReLU) could change it; the hooks go when the block ends."""

    def capture(name: str, output: torch.Tensor) -> None:
        with torch.inference_mode(False):
            outputs[name] = output[0].detach().to("cpu", torch.float32, copy=True)

    handles = [
        module.register_forward_hook(lambda _m, _i, output, name=name: capture(name, output))
        for name, module in modules.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def unknown_layer(name: str, known: Sequence[FeatureLayer]) -> ValueError:
    """The error for a layer name that is no stage and no feature layer, with examples."""
    names = [layer.name for layer in known]
    middle = names[len(names) // 2]  # ResNet101: a convolution deep in layer3
    block = middle.rsplit(".", 1)[0]
    chosen = [names[0], *([block] if "." in block and block in names else []), middle]
    examples = ", ".join(repr(name) for name in chosen)
    return ValueError(
        f"unknown layer {name!r}: a stage (C1–C5) or a module whose output is a feature map, "
        f"e.g. {examples} (fmviz info --layers lists them)"
    )

"""``fmviz info``: each network's parameters, weights and stages.

The parameters and the stage table come from the architecture alone, built on the meta device
(no memory, no arithmetic, no weights), so they print offline and in a fraction of a second.
ImageNet weights are only looked for in torch hub's cache, never downloaded: a missing file is
said on the weights line, and is no failure. A checkpoint file (``--weights PATH``) is loaded
and checked, as every command does with it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from visualizer.choices import MODELS
from visualizer.cli.options import add_weights_option, error, size

if TYPE_CHECKING:
    from torch import nn


def add_parser(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser("info", help="print the networks' parameters, weights and stages")
    info.add_argument("--model", choices=MODELS, help="one network (default: both)")
    add_weights_option(info)
    info.add_argument(
        "--size",
        type=size,
        default=(224, 224),
        metavar="HxW",
        help="input size for the stage shapes (default 224x224)",
    )
    info.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print each network's block; exit status 1 when a checkpoint file could not be used."""
    from models import WeightsError, stage_module_names, stage_shapes  # noqa: PLC0415

    height, width = args.size
    status = 0
    for name in [args.model] if args.model else MODELS:
        try:
            model, weights = _model_and_weights(name, args.weights)
        except WeightsError as failure:
            error(str(failure))
            status = 1
            continue
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name}: {parameters:,} parameters")
        print(f"  weights: {weights}")
        print(f"  {'stage':<6}{'module':<13}output for a {height}×{width} input")
        modules = stage_module_names(model)
        for stage, (channels, h, w) in stage_shapes(model, height, width).items():
            print(f"  {stage:<6}{modules[stage]:<13}{channels}×{h}×{w}")
    return status


def _model_and_weights(name: str, weights: str) -> tuple[nn.Module, str]:
    """``name``'s network and the words for its weights.

    For ``"imagenet"`` and ``"random"`` the network is built on the meta device: its shapes and
    parameter count are the architecture's, and no weights are read or made. A checkpoint file
    is loaded, so a file that cannot be used is a ``WeightsError``.
    """
    import torch  # noqa: PLC0415

    from models import build_model  # noqa: PLC0415
    from models.weights import (  # noqa: PLC0415
        IMAGENET_WEIGHTS,
        PATH_SHOWN,
        imagenet_checkpoint_path,
        shown,
    )

    choice = weights.lower()
    if choice not in ("imagenet", "random"):
        model = build_model(name, weights, progress=False)
        return model, str(model.weights_info)
    with torch.device("meta"):
        model = build_model(name, "random", progress=False)
    if choice == "random":
        return model, str(model.weights_info)
    path = imagenet_checkpoint_path(name)  # looked for, never downloaded
    if path.is_file():
        version = IMAGENET_WEIGHTS[name].split(".")[1]
        return model, f"ImageNet ({version}), cached at {shown(path, PATH_SHOWN)}"
    return model, (
        f"ImageNet not available ({shown(path.name, PATH_SHOWN)} is not in "
        f"{shown(path.parent, PATH_SHOWN)}; put it there or use --weights random)"
    )

"""``fmviz info``: each network's parameters, weights, classes, input and stages.

The parameters and the stage table come from the architecture alone, built on the meta device
(no memory, no arithmetic, no weights), so they print offline and in a fraction of a second.
ImageNet weights are only looked for in torch hub's cache, never downloaded: a missing file is
said on the weights line, and is no failure. A checkpoint file (``--weights PATH``) is loaded
and checked, as every command does with it: its head gives the number of classes (any), its
first convolution the input channels (3 or 1), and the labels and preprocessing stored beside
its weights are used. ``--labels``, ``--mean``, ``--std``, ``--resize`` and ``--crop`` are
checked against the network as ``fmviz`` and ``fmviz export`` check them, with the same errors.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from visualizer.choices import MODELS
from visualizer.cli.options import (
    add_network_options,
    add_weights_option,
    checkpoint_architecture,
    engine_errors,
    error,
    network_spec,
    size,
)

if TYPE_CHECKING:
    from torch import nn

    from visualizer.core import Preprocessing
    from visualizer.core.labels import Labels
    from visualizer.networks import NetworkSpec


def add_parser(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser("info", help="print the networks' parameters, weights and stages")
    info.add_argument(
        "--model",
        choices=MODELS,
        help="one network (default: both, or the one a --weights file fits)",
    )
    add_weights_option(info)
    info.add_argument(
        "--size",
        type=size,
        default=(224, 224),
        metavar="HxW",
        help="input size for the stage shapes (default 224x224)",
    )
    info.add_argument(
        "--layers",
        action="store_true",
        help="also list every layer whose output is a feature map (the names --layers, "
        "Grad-CAM and the window's layer tree take), with its type, shape and stage",
    )
    add_network_options(info)
    info.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print each network's block; exit status 1 when a checkpoint file, the labels or the
    preprocessing could not be used (one ``error:`` line each)."""
    from models import stage_module_names, stage_shapes  # noqa: PLC0415

    height, width = args.size
    status = 0
    fitting = None if args.model else checkpoint_architecture(args.weights)
    for name in [args.model or fitting] if args.model or fitting else MODELS:
        try:
            model, weights = _model_and_weights(name, args.weights)
            setup = network_setup(model, network_spec(args, model=name))
        except engine_errors() as failure:
            error(str(failure))
            status = 1
            continue
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name}: {parameters:,} parameters")
        print(f"  weights: {weights}")
        for line in setup.lines():
            print(f"  {line}")
        print(f"  {'stage':<6}{'module':<13}output for a {height}×{width} input")
        modules = stage_module_names(model)
        for stage, (channels, h, w) in stage_shapes(model, height, width).items():
            print(f"  {stage:<6}{modules[stage]:<13}{channels}×{h}×{w}")
        if args.layers:
            _print_layers(model, height, width)
    return status


def _print_layers(model: nn.Module, height: int, width: int) -> None:
    from visualizer.core.layers import feature_layers  # noqa: PLC0415

    layers = feature_layers(model, height, width)
    wide = max(len(layer.name) for layer in layers) + 2
    print(f"  {len(layers)} feature layers, in the order they run:")
    print(f"  {'layer':<{wide}}{'type':<20}{'output':<14}stage")
    for layer in layers:
        shape = "×".join(map(str, layer.shape))
        print(f"  {layer.name:<{wide}}{layer.module_type:<20}{shape:<14}{layer.stage or '-'}")


@dataclass(frozen=True)
class NetworkSetup:
    """What a network takes in and gives out: its classes and their names, its input."""

    classes: int  # the head's outputs
    labels: Labels  # names and where they come from
    channels: int  # input channels: 3 (RGB) or 1 (grey-scale)
    preprocessing: Preprocessing

    def lines(self) -> list[str]:
        """``classes: …``, ``input: …`` and ``preprocessing: …``, as ``fmviz info`` prints
        them."""
        scores = "one output, sigmoid probability" if self.classes == 1 else "softmax"
        examples = ", ".join(self.labels.names[:3]) + (", …" if self.classes > 3 else "")
        colour = "RGB" if self.channels == 3 else "grey-scale"
        return [
            f"classes: {self.classes} ({scores}); labels: {self.labels.source} ({examples})",
            f"input: {self.channels} {'channel' if self.channels == 1 else 'channels'} "
            f"({colour}), {self.preprocessing.crop}×{self.preprocessing.crop}",
            f"preprocessing: {self.preprocessing.describe()}",
        ]


def network_setup(model: nn.Module, spec: NetworkSpec) -> NetworkSetup:
    """The classes, labels, input channels and preprocessing of ``model`` (built on the meta
    device or loaded) with ``spec``'s labels, mean, std, resize and crop, resolved as the
    engine's ``Analyzer`` resolves them: those given, else those stored in the checkpoint,
    else ImageNet's (its labels only for 1000 classes, else ``class 0`` …).

    Raises:
        LabelsError: the labels cannot be read, or their count is not the network's classes.
        PreprocessingError: values that do not fit the network (e.g. 3 means for 1 channel).
    """
    from visualizer.core.network_setup import network_setup as setup  # noqa: PLC0415

    labels, preprocessing = setup(
        model, labels=spec.labels, mean=spec.mean, std=spec.std, resize=spec.resize, crop=spec.crop
    )
    return NetworkSetup(model.num_classes, labels, model.in_channels, preprocessing)


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
        unwrapped = model.weights_info.unwrapped
        return model, str(model.weights_info) + (f" ({unwrapped})" if unwrapped else "")
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

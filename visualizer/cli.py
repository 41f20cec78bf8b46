"""The ``fmviz`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

MODEL_CHOICES = ("vgg16", "resnet101")
COMMANDS = ("info",)
TOP_LEVEL_OPTIONS = ("-h", "--help", "--version")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fmviz``; returns the exit status (0 done, 1 failed, 2 bad usage)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] not in COMMANDS + TOP_LEVEL_OPTIONS:
        words.insert(0, "info")  # the default command
    args = _parser().parse_args(words)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    from visualizer import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="fmviz", description="Look inside VGG16 and ResNet101, stage by stage."
    )
    parser.add_argument("--version", action="version", version=f"fmviz {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser(
        "info", help="build the networks and print their C1–C5 stages (the default)"
    )
    info.add_argument("--model", choices=MODEL_CHOICES, help="one network (default: both)")
    info.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|random|PATH",
        help="ImageNet (torch hub cache or download), untrained, or a checkpoint file",
    )
    info.add_argument(
        "--size",
        type=_size,
        default=(224, 224),
        metavar="HxW",
        help="input size for the stage shapes (default 224x224)",
    )
    info.set_defaults(run=_info)
    return parser


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. 224x224") from None
    if not (32 <= height <= 4096 and 32 <= width <= 4096):
        raise argparse.ArgumentTypeError(f"{text}: each side must be 32 to 4096 pixels")
    return height, width


def _info(args: argparse.Namespace) -> int:
    from models import WeightsError, build_model, stage_module_names, stage_shapes  # noqa: PLC0415

    height, width = args.size
    status = 0
    for name in [args.model] if args.model else MODEL_CHOICES:
        try:
            model = build_model(name, args.weights)
        except WeightsError as error:
            print(f"error: {error}", file=sys.stderr)
            status = 1
            continue
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name}: {parameters:,} parameters, weights {model.weights_info}")
        print(f"  {'stage':<6}{'module':<13}output for a {height}×{width} input")
        modules = stage_module_names(model)
        for stage, (channels, h, w) in stage_shapes(model, height, width).items():
            print(f"  {stage:<6}{modules[stage]:<13}{channels}×{h}×{w}")
    return status

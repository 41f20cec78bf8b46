"""``fmviz info``: each network's stages, parameters and weights."""

from __future__ import annotations

import argparse

from visualizer.choices import MODELS
from visualizer.cli.options import add_weights_option, error, size


def add_parser(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser("info", help="build the networks and print their C1–C5 stages")
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
    from models import WeightsError, build_model, stage_module_names, stage_shapes  # noqa: PLC0415

    height, width = args.size
    status = 0
    for name in [args.model] if args.model else MODELS:
        try:
            model = build_model(name, args.weights)
        except WeightsError as failure:
            error(str(failure))
            status = 1
            continue
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name}: {parameters:,} parameters, weights {model.weights_info}")
        print(f"  {'stage':<6}{'module':<13}output for a {height}×{width} input")
        modules = stage_module_names(model)
        for stage, (channels, h, w) in stage_shapes(model, height, width).items():
            print(f"  {stage:<6}{modules[stage]:<13}{channels}×{h}×{w}")
    return status

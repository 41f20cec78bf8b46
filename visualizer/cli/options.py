"""Options and argument types shared by the commands, and the one way they report errors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from visualizer.choices import DEVICES, MODELS, STAGES

DEFAULT_MODEL = "resnet101"


def error(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|random|PATH",
        help="ImageNet (torch hub cache or download), untrained, or a checkpoint file",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model`` (default resnet101), ``--weights`` and ``--device``."""
    parser.add_argument(
        "--model", choices=MODELS, default=DEFAULT_MODEL, help="network (default resnet101)"
    )
    add_weights_option(parser)
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="default: CUDA, MPS, else CPU"
    )


def size(text: str) -> tuple[int, int]:
    """``HxW`` as ``(height, width)``, each 32 to 4096 pixels."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. 224x224") from None
    if not (32 <= height <= 4096 and 32 <= width <= 4096):
        raise argparse.ArgumentTypeError(f"{text}: each side must be 32 to 4096 pixels")
    return height, width


def stage(text: str) -> str:
    """One of C1–C5, any case."""
    chosen = text.strip().upper()
    if chosen not in STAGES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a stage: choose from {', '.join(STAGES)}"
        )
    return chosen


def stages(text: str) -> tuple[str, ...]:
    """``all`` or a comma-separated list of stages, in network order."""
    if text.strip().lower() == "all":
        return STAGES
    chosen = {stage(part) for part in text.split(",") if part.strip()}
    if not chosen:
        raise argparse.ArgumentTypeError("name at least one stage, or all")
    return tuple(name for name in STAGES if name in chosen)


def class_index(text: str) -> int:
    """An ImageNet class index, 0–999."""
    try:
        index = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class index") from None
    if not 0 <= index <= 999:
        raise argparse.ArgumentTypeError(f"{index} is not an ImageNet class index (0–999)")
    return index


def positive(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def screenshot_path(text: str) -> str:
    """A file name in a folder that exists."""
    folder = Path(text).parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} does not exist")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder; give a file name")
    return text

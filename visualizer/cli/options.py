"""Options and argument types shared by the commands, and the one way they report errors.

A network is named the same way in every command (``add_network_options``): ``--model``,
``--weights``, and the options of a network of one's own: ``--labels FILE``, ``--mean R,G,B``,
``--std R,G,B`` (one value each for a one-channel network), ``--resize N`` and ``--crop N``.
``network_spec`` turns them into a ``visualizer.networks.NetworkSpec``. Where two networks are
compared, the other one takes the same options with ``compare-`` in front
(``add_compare_options``, ``compare_spec``).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from visualizer.choices import DEVICES, METHOD_PARAMETERS, METHODS, MODELS, STAGES
from visualizer.networks import NetworkSpec, parse_size, parse_values

if TYPE_CHECKING:
    from visualizer.core import Analyzer

T = TypeVar("T")
DEFAULT_MODEL = "resnet101"
# The options of a network of one's own, by their ``dest`` without a prefix.
NETWORK_OPTIONS = ("labels", "mean", "std", "resize", "crop")
COMPARE_PREFIX = "compare-"


def error(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def add_weights_option(parser: argparse.ArgumentParser, *, remembered: bool = False) -> None:
    """``--weights``; ``remembered``: its default is None, the last network used (the window)."""
    parser.add_argument(
        "--weights",
        default=None if remembered else "imagenet",
        metavar="imagenet|random|PATH",
        help="ImageNet (torch hub cache or download), untrained, or a checkpoint file"
        + (" (default: the last network used, else imagenet)" if remembered else ""),
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model`` (default resnet101), ``--weights``, ``--device`` and the options of a
    network of one's own (``add_network_options``)."""
    parser.add_argument(
        "--model",
        choices=MODELS,
        help="network (default: a checkpoint's own architecture, else resnet101)",
    )
    add_weights_option(parser)
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="default: CUDA, MPS, else CPU"
    )
    add_network_options(parser)


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
    """A class index, 0 or more: whether the network has that class is known only once it is
    loaded (``target_problem``)."""
    try:
        index = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class index") from None
    if index < 0:
        raise argparse.ArgumentTypeError(f"{index} is not a class index (0 or more)")
    return index


def target_problem(target: int | None, classes: int) -> str | None:
    """Why ``--target`` does not fit a network of ``classes`` classes, in one line, or None.

    Examples::

        target_problem(7, 5)  # "--target 7: the network has 5 classes (0–4)"
    """
    if target is None or target < classes:
        return None
    if classes == 1:
        return f"--target {target}: the network has 1 class (0)"
    return f"--target {target}: the network has {classes} classes (0–{classes - 1})"


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse ``type``: its ``ValueError`` becomes the option's error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as failure:
            raise argparse.ArgumentTypeError(str(failure)) from None

    convert.__name__ = parse.__name__
    return convert


values = argument_type(parse_values)  # --mean / --std: R,G,B or one value
pixels = argument_type(parse_size)  # --resize / --crop: a size in pixels


def add_network_options(
    parser: argparse.ArgumentParser,
    prefix: str = "",
    *,
    group: argparse._ArgumentGroup | None = None,
) -> None:
    """``--labels``, ``--mean``, ``--std``, ``--resize`` and ``--crop``, each with ``prefix``
    in front (``"compare-"``: ``--compare-labels`` …, held as ``args.compare_labels`` …), in
    ``group`` of the help (default: a group of their own).

    All default to None: the checkpoint's own values, else the architecture's ImageNet ones.
    """
    whose = "the compared network's " if prefix else ""
    if group is None:
        group = parser.add_argument_group(
            "a network of your own (default: the checkpoint's values, else ImageNet's)"
        )
    group.add_argument(
        f"--{prefix}labels",
        metavar="FILE",
        help=f"{whose}class names: one a line, a JSON list or object, or CSV index,name",
    )
    group.add_argument(
        f"--{prefix}mean",
        type=values,
        metavar="R,G,B",
        help=f"{whose}normalisation mean (one value for a grey-scale network)",
    )
    group.add_argument(
        f"--{prefix}std",
        type=values,
        metavar="R,G,B",
        help=f"{whose}normalisation standard deviation (one value for a grey-scale network)",
    )
    group.add_argument(
        f"--{prefix}resize",
        type=pixels,
        metavar="N",
        help=f"{whose}resize: the shorter side to N pixels",
    )
    group.add_argument(
        f"--{prefix}crop", type=pixels, metavar="N", help=f"{whose}centre crop: N×N pixels"
    )


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    """The other side of a comparison: ``--compare-model``, ``--compare-weights`` and
    ``--compare-labels`` … (``add_network_options`` with ``compare-``); any implies
    ``--compare``."""
    group = parser.add_argument_group(
        "the compared network (any of these implies --compare)",
        "Without them, --compare pairs --model's network with the other architecture, ImageNet "
        "weights (random ones with --weights random).",
    )
    group.add_argument(
        "--compare-model", choices=MODELS, help="its architecture (default: that of --model)"
    )
    group.add_argument(
        "--compare-weights",
        metavar="imagenet|random|PATH",
        help="its weights (default: imagenet, or random with --weights random)",
    )
    add_network_options(parser, COMPARE_PREFIX, group=group)


def checkpoint_architecture(weights: str | None) -> str | None:
    """The architecture a checkpoint file's weights fit (``models.weights.architecture_of``);
    None for named weights, a missing file, or one that fits neither (loading it says why)."""
    if not weights or weights in ("imagenet", "random") or not Path(weights).is_file():
        return None
    from models.weights import architecture_of  # noqa: PLC0415 - imports torch

    return architecture_of(weights)


def network_spec(args: argparse.Namespace, *, model: str | None = None) -> NetworkSpec:
    """The network ``args`` name: ``--model`` (else ``model``, else the architecture of the
    ``--weights`` file, else resnet101), ``--weights``, ``--labels``, ``--mean``, ``--std``,
    ``--resize`` and ``--crop``."""

    return NetworkSpec(
        args.model or model or checkpoint_architecture(args.weights) or DEFAULT_MODEL,
        args.weights,
        **{name: getattr(args, name, None) for name in NETWORK_OPTIONS},
    )


def compare_asked(args: argparse.Namespace) -> bool:
    """True when any ``--compare-…`` option names the compared network."""
    names = ("model", "weights", *NETWORK_OPTIONS)
    return any(getattr(args, f"compare_{name}", None) is not None for name in names)


def compare_spec(args: argparse.Namespace, main: NetworkSpec) -> NetworkSpec | None:
    """The compared network the ``--compare-…`` options name, or None when none is given
    (``visualizer.networks.compare_pair`` then picks the other architecture).

    ``--compare-model`` defaults to ``main``'s architecture; ``--compare-weights`` to
    ``main``'s weights where they are ``random``, else ``imagenet`` (a checkpoint fits one
    network only).
    """
    if not compare_asked(args):
        return None

    weights = args.compare_weights or ("random" if main.weights == "random" else "imagenet")
    return NetworkSpec(
        args.compare_model or checkpoint_architecture(weights) or main.model,
        weights,
        **{name: getattr(args, f"compare_{name}", None) for name in NETWORK_OPTIONS},
    )


def build_analyzer(spec: NetworkSpec, device: str, **settings: object) -> Analyzer:
    """The engine's analyzer of ``spec`` on ``device`` (imports torch); only the network
    options given are passed, and ``settings`` (``timings``, ``warm_up`` …) as they are.

    Raises:
        Any of ``engine_errors()``: the weights, device, labels or preprocessing cannot be
            used.
    """
    from visualizer import core  # noqa: PLC0415 - looked up here: tests replace it

    options = {key: value for key, value in spec.analyzer_options().items() if value is not None}
    return core.Analyzer(spec.model, spec.weights, device, **options, **settings)


def engine_errors() -> tuple[type[Exception], ...]:
    """The engine's errors that are the user's to fix (a checkpoint, a device, labels,
    preprocessing): each is one ``error: …`` line and exit status 1 in every command.
    Imports torch."""
    from models import WeightsError  # noqa: PLC0415
    from visualizer.core import DeviceError, LabelsError, PreprocessingError  # noqa: PLC0415

    return (WeightsError, DeviceError, LabelsError, PreprocessingError)


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


# --- attribution methods (fmviz export --methods, fmviz bench --methods) -----------------------

# The values of the parameters of ``choices.METHOD_PARAMETERS``: "count" a
# whole number ≥ 1, "number" any finite number, "positive" a number > 0, "pair" HxW (or H,W,
# or one number for both) in input pixels, a tuple of words: one of them. Captum's other
# parameters are fmviz's to set (relu_attributions, abs, nt_type) or change what Captum
# returns (return_convergence_delta, attr_dim_summation, attribute_to_layer_input).
PARAMETER_KINDS: dict[str, str | tuple[str, ...]] = {
    "n_steps": "count",
    "baselines": "number",
    "method": (
        "gausslegendre",
        "riemann_right",
        "riemann_left",
        "riemann_middle",
        "riemann_trapezoid",
    ),
    "internal_batch_size": "count",
    "sliding_window_shapes": "pair",
    "strides": "pair",
    "perturbations_per_eval": "count",
    "nt_samples": "count",
    "nt_samples_batch_size": "count",
    "stdevs": "positive",
    "interpolate_mode": ("nearest", "bilinear", "bicubic", "area"),
}


def methods(text: str) -> tuple[str, ...]:
    """``all`` or a comma-separated list of ``METHODS``, in the order given, each once."""
    if text.strip().lower() == "all":
        return METHODS
    chosen: list[str] = []
    for part in (part.strip().lower() for part in text.split(",")):
        if not part:
            continue
        if part not in METHODS:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not a method: choose from {', '.join(METHODS)}, or all"
            )
        if part not in chosen:
            chosen.append(part)
    if not chosen:
        raise argparse.ArgumentTypeError("name at least one method, or all")
    return tuple(chosen)


def layer_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of layers: stages (any case) or module names (``layer3.4``,
    ``features.10``), each once. Whether the network has them is known once it is loaded."""
    chosen: list[str] = []
    for part in (part.strip() for part in text.split(",")):
        name = part.upper() if part.upper() in STAGES else part
        if name and name not in chosen:
            chosen.append(name)
    if not chosen:
        raise argparse.ArgumentTypeError("name at least one layer, e.g. C5 or layer3.4")
    return tuple(chosen)


def parameter(text: str) -> tuple[str, object]:
    """``NAME=VALUE``: one of ``PARAMETER_KINDS``, its value converted as the kind says.

    Examples::

        parameter("n_steps=8")  # ("n_steps", 8)
        parameter("sliding_window_shapes=16x16")  # ("sliding_window_shapes", (16, 16))
    """
    name, equals, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not equals or not name or not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE, e.g. n_steps=16")
    if name not in PARAMETER_KINDS:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a parameter fmviz passes on: choose from {', '.join(PARAMETER_KINDS)}"
        )
    try:
        return name, _parameter_value(PARAMETER_KINDS[name], value)
    except ValueError as failure:
        raise argparse.ArgumentTypeError(f"{text}: {failure}") from None


def _parameter_value(kind: str | tuple[str, ...], text: str) -> object:
    """``text`` as a value of ``kind`` (see ``PARAMETER_KINDS``).

    Raises:
        ValueError: a one-line reason.
    """
    if isinstance(kind, tuple):
        if text not in kind:
            raise ValueError(f"choose from {', '.join(kind)}")
        return text
    if kind == "pair":
        parts = [part.strip() for part in re.split(r"[x,]", text.lower())]
        if len(parts) not in (1, 2) or not all(part.isdigit() and int(part) > 0 for part in parts):
            raise ValueError("give a size in pixels, HxW, H,W or one number for both")
        height, width = (int(parts[0]), int(parts[-1]))
        return (height, width)
    if kind == "count":
        if not text.isdigit() or int(text) < 1:
            raise ValueError("give a whole number of at least 1")
        return int(text)
    try:
        number = float(text)
    except ValueError:
        raise ValueError("give a number") from None
    if not math.isfinite(number) or (kind == "positive" and number <= 0):
        raise ValueError("give a finite number" + (" above 0" if kind == "positive" else ""))
    return number


def method_parameters(
    chosen: Sequence[str], given: Sequence[tuple[str, object]]
) -> dict[str, dict[str, object]]:
    """Each method of ``chosen`` with the parameters of ``given`` (``--parameter``) it takes;
    a parameter given twice: the last one counts.

    Raises:
        ValueError: a parameter that no method of ``chosen`` takes (the message names those
            that do).
    """
    taken: dict[str, dict[str, object]] = {method: {} for method in chosen}
    for name, value in given:
        takers = [method for method in chosen if name in METHOD_PARAMETERS[method]]
        if not takers:
            others = [method for method in METHODS if name in METHOD_PARAMETERS[method]]
            raise ValueError(
                f"--parameter {name}: no method asked for takes it "
                f"({', '.join(chosen) or 'none asked'}); {' and '.join(others)} "
                f"{'does' if len(others) == 1 else 'do'}"
            )
        for method in takers:
            taken[method][name] = value
    return taken


def add_method_options(parser: argparse.ArgumentParser, *, default_help: str) -> None:
    """``--methods`` (``methods``) and ``--parameter NAME=VALUE`` (repeatable), for the
    attribution methods; ``default_help`` says what no ``--methods`` means."""
    parser.add_argument(
        "--methods",
        type=methods,
        metavar="all|M1,M2,...",
        help=f"attribution methods, from {', '.join(METHODS)} ({default_help})",
    )
    parser.add_argument(
        "--parameter",
        type=parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=(
            "a Captum parameter, under Captum's name, for every method asked that takes it "
            "(repeatable): n_steps, internal_batch_size, baselines, method (integrated "
            "gradients); sliding_window_shapes and strides (HxW pixels), "
            "perturbations_per_eval (occlusion); nt_samples, nt_samples_batch_size, stdevs "
            "(SmoothGrad); interpolate_mode (Guided Grad-CAM); e.g. --parameter n_steps=16"
        ),
    )

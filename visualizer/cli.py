"""The ``fmviz`` command line: the desktop app, and ``info``, ``export`` and ``bench``.

Exit status: 0 everything done; 1 something failed (one ``error: …`` line each on stderr, the
rest still done); 2 bad usage. A user's mistake never ends in a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from visualizer.choices import COLORMAPS as COLORMAP_CHOICES
from visualizer.choices import DEVICES as DEVICE_CHOICES
from visualizer.choices import MODELS as MODEL_CHOICES
from visualizer.choices import STAGES as STAGE_CHOICES
from visualizer.cli_progress import Progress

DEFAULT_MODEL = "resnet101"
COMMANDS = ("info", "export", "bench")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fmviz``; returns the exit status (0 done, 1 failed, 2 bad usage)."""
    words = list(sys.argv[1:] if argv is None else argv)
    # `fmviz [IMAGE ...] [options]` opens the window; `fmviz COMMAND ...` runs a command.
    parser = _parser() if words and words[0] in COMMANDS else _app_parser()
    args = parser.parse_args(words)
    if getattr(args, "compare", False) and args.weights not in ("imagenet", "random"):
        parser.error("--compare builds both networks: use --weights imagenet or random with it")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `fmviz bench | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:
        if os.environ.get("FMVIZ_DEBUG"):
            raise
        # A last resort: what the commands do not expect is still one line, not a traceback.
        reason = " ".join(str(error).split())[:300]
        _error(f"unexpected {type(error).__name__}: {reason} (FMVIZ_DEBUG=1 shows where)")
        return 1


def _app_parser() -> argparse.ArgumentParser:
    from visualizer import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="fmviz",
        usage="fmviz [IMAGE ...] [--compare] [options]\n       fmviz {info,export,bench} ...",
        description=(
            "Look inside VGG16 and ResNet101, stage by stage: opens the window with the images "
            "given (else the bundled samples)."
        ),
        epilog=(
            "commands (fmviz COMMAND -h for their options):\n"
            "  info     build the networks and print their C1–C5 stages\n"
            "  export   write stage grids, Grad-CAM overlays and timings of images to a folder\n"
            "  bench    time every layer, and fmviz against torchvision and Captum"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fmviz {__version__}")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    parser.add_argument(
        "--model", choices=MODEL_CHOICES, help="network (default: the last used, else resnet101)"
    )
    _weights_option(parser)
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, help="default: the last used, else auto"
    )
    parser.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        help="open in compare mode, VGG16 and ResNet101 side by side, or not (default: as the "
        "window was last closed, unless --model, a weights file or --screenshot is given)",
    )
    parser.add_argument(
        "--screenshot",
        type=_screenshot_path,
        metavar="PATH",
        help="save a PNG of the window once the first view is complete, then exit",
    )
    parser.set_defaults(run=_app)
    return parser


def _parser() -> argparse.ArgumentParser:
    from visualizer import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="fmviz", description="Look inside VGG16 and ResNet101, stage by stage."
    )
    parser.add_argument("--version", action="version", version=f"fmviz {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    info = commands.add_parser("info", help="build the networks and print their C1–C5 stages")
    info.add_argument("--model", choices=MODEL_CHOICES, help="one network (default: both)")
    _weights_option(info)
    info.add_argument(
        "--size",
        type=_size,
        default=(224, 224),
        metavar="HxW",
        help="input size for the stage shapes (default 224x224)",
    )
    info.set_defaults(run=_info)

    export = commands.add_parser(
        "export",
        help="write stage grids, Grad-CAM overlays and timings of images to a folder",
        description=(
            "For each IMAGE write <stem>_<model>_<stage>.png (tile grid of every channel), "
            "<stem>_<model>_gradcam_<stage>.png (Grad-CAM over the image) and "
            "<stem>_<model>_timings.csv (per-layer milliseconds)."
        ),
    )
    export.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    _model_options(export)
    export.add_argument(
        "--stages",
        type=_stages,
        default=STAGE_CHOICES,
        metavar="all|C1,C3,...",
        help="stages to write grids of (default: all)",
    )
    export.add_argument(
        "--cam-stage",
        type=_stage,
        default="C5",
        metavar="STAGE",
        help="stage of the Grad-CAM overlay (default C5)",
    )
    export.add_argument(
        "--target",
        type=_class_index,
        metavar="INDEX",
        help="ImageNet class index 0–999 for Grad-CAM (default: the top-1 class)",
    )
    export.add_argument(
        "--colormap", choices=COLORMAP_CHOICES, default="viridis", help="grid colormap"
    )
    export.add_argument(
        "--scale",
        choices=("channel", "stage"),
        default="channel",
        help="min–max per channel (default) or one min–max across the stage",
    )
    export.add_argument(
        "--order",
        choices=("index", "mean", "gradcam"),
        default="index",
        help="tile order: channel index (default), mean activation, Grad-CAM weight",
    )
    export.add_argument(
        "--compare",
        action="store_true",
        help=(
            "export both networks, and their comparison: <stem>_compare_<stage>.png per stage "
            "(both networks' Grad-CAMs of one class: --target, else the top-1 of --model) and "
            "<stem>_compare_timings.csv"
        ),
    )
    export.set_defaults(run=_export)

    bench = commands.add_parser(
        "bench",
        help="time every layer, and fmviz against torchvision and Captum (random weights)",
    )
    bench.add_argument("--model", choices=MODEL_CHOICES, default=DEFAULT_MODEL)
    bench.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    bench.add_argument(
        "--runs", type=_positive, metavar="N", help="timed runs (default 10; 3 with --startup)"
    )
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument(
        "--channels-last",
        action="store_true",
        help="hold weights and activations channels-last (fmviz and torchvision alike)",
    )
    bench.add_argument(
        "--startup",
        action="store_true",
        help="launch the app RUNS times (default 3) instead: time to the window, to its first "
        "view, and its event-loop stalls (P5–P7), against python -c 'import torch' and a "
        "torchvision script",
    )
    bench.set_defaults(run=_bench)
    return parser


def _weights_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|random|PATH",
        help="ImageNet (torch hub cache or download), untrained, or a checkpoint file",
    )


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", choices=MODEL_CHOICES, default=DEFAULT_MODEL, help="network (default resnet101)"
    )
    _weights_option(parser)
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto", help="default: CUDA, MPS, else CPU"
    )


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. 224x224") from None
    if not (32 <= height <= 4096 and 32 <= width <= 4096):
        raise argparse.ArgumentTypeError(f"{text}: each side must be 32 to 4096 pixels")
    return height, width


def _stage(text: str) -> str:
    stage = text.strip().upper()
    if stage not in STAGE_CHOICES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a stage: choose from {', '.join(STAGE_CHOICES)}"
        )
    return stage


def _stages(text: str) -> tuple[str, ...]:
    if text.strip().lower() == "all":
        return STAGE_CHOICES
    chosen = {_stage(part) for part in text.split(",") if part.strip()}
    if not chosen:
        raise argparse.ArgumentTypeError("name at least one stage, or all")
    return tuple(stage for stage in STAGE_CHOICES if stage in chosen)


def _class_index(text: str) -> int:
    try:
        index = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class index") from None
    if not 0 <= index <= 999:
        raise argparse.ArgumentTypeError(f"{index} is not an ImageNet class index (0–999)")
    return index


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _screenshot_path(text: str) -> str:
    folder = Path(text).parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {folder} does not exist")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder; give a file name")
    return text


def _app(args: argparse.Namespace) -> int:
    from visualizer.ui.app import run  # noqa: PLC0415

    return run(
        args.images,
        model=args.model,
        weights=args.weights,
        device=args.device,
        screenshot=args.screenshot,
        compare=args.compare,
    )


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _info(args: argparse.Namespace) -> int:
    from models import WeightsError, build_model, stage_module_names, stage_shapes  # noqa: PLC0415

    height, width = args.size
    status = 0
    for name in [args.model] if args.model else MODEL_CHOICES:
        try:
            model = build_model(name, args.weights)
        except WeightsError as error:
            _error(str(error))
            status = 1
            continue
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{name}: {parameters:,} parameters, weights {model.weights_info}")
        print(f"  {'stage':<6}{'module':<13}output for a {height}×{width} input")
        modules = stage_module_names(model)
        for stage, (channels, h, w) in stage_shapes(model, height, width).items():
            print(f"  {stage:<6}{modules[stage]:<13}{channels}×{h}×{w}")
    return status


def _export(args: argparse.Namespace) -> int:
    from visualizer.cli_export import export_images  # noqa: PLC0415

    return export_images(args, error=_error)


def _bench(args: argparse.Namespace) -> int:
    from models import WeightsError  # noqa: PLC0415
    from visualizer.core.bench import run_bench  # noqa: PLC0415
    from visualizer.core.device import DeviceError  # noqa: PLC0415

    if args.startup:
        return _bench_startup(args)
    runs = args.runs or 10
    progress = Progress(2 + runs, label=f"bench {args.model}")
    try:
        report = run_bench(
            args.model,
            args.device,
            runs,
            progress=progress.update,
            channels_last=args.channels_last,
        )
    except (DeviceError, WeightsError, RuntimeError) as error:
        progress.close()
        _error(str(error))
        return 1
    progress.close()
    results = report.as_json()
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    total = sum(ms for _, _, ms in report.layers)
    print(f"{report.model} on {report.device}: medians of {report.runs} runs, 224×224, batch 1")
    print(f"{'layer':<28}{'type':<20}{'ms':>9}{'share':>8}")
    for name, kind, ms in report.layers:
        print(f"{name:<28}{kind:<20}{ms:>9.3f}{ms / total:>8.1%}")
    print(f"{'all layers':<48}{total:>9.3f}")
    print()
    _print_targets(results)
    print(f"     {report.photo_ratio:6.3f}× P1 counting the photo's preprocessing too")
    if report.memory is not None:
        memory = report.memory
        print(
            f"     P9: {memory.fmviz_mib:.0f} MiB against {memory.torchvision_mib:.0f} MiB "
            f"({memory.measure})"
        )
    return 0


def _bench_startup(args: argparse.Namespace) -> int:
    from visualizer.bench_startup import run_startup_bench  # noqa: PLC0415
    from visualizer.core.bench import KEYS, STARTUP_KEYS, target_entries  # noqa: PLC0415

    runs = args.runs or 3
    progress = Progress(runs, label=f"bench --startup {args.model}")
    try:
        report = run_startup_bench(args.model, args.device, runs, progress=progress.update)
    except RuntimeError as error:
        progress.close()
        _error(str(error))
        return 1
    progress.close()
    elsewhere = {key: "measured by fmviz bench" for key in KEYS if key not in STARTUP_KEYS}
    results = {
        "model": report.model,
        "device": report.device,
        "runs": report.runs,
        **target_entries(report.ratios, elsewhere),
        "medians_ms": {key: round(ms, 1) for key, ms in report.medians_ms.items()},
    }
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    print(f"{report.model}, launched {report.runs} times (medians, ms):")
    for name, ms in report.medians_ms.items():
        print(f"  {name:<20}{ms:>9.0f}")
    print()
    _print_targets(results)
    return 0


def _print_targets(results: dict) -> None:
    """One line per target measured: value, target, verdict, what."""
    for key, entry in results.items():
        if not key.startswith("P") or not isinstance(entry, dict) or entry["ratio"] is None:
            continue
        unit = entry["unit"]
        value = f"{entry['ratio']:6.3f}×" if unit == "×" else f"{entry['ratio']:6.1f} ms"
        target = f"{entry['target']:g}{'×' if unit == '×' else ' ms'}"
        verdict = {True: "ok", False: "over target", None: entry.get("note", "not judged")}
        print(f"{key:<4} {value} (target ≤ {target}, {verdict[entry['ok']]}): {entry['what']}")

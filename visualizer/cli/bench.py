"""``fmviz bench``: every layer's time, and fmviz against torchvision and Captum."""

from __future__ import annotations

import argparse
import json

from visualizer.choices import DEVICES, MODELS
from visualizer.cli.options import (
    DEFAULT_MODEL,
    METHODS,
    add_method_options,
    error,
    method_parameters,
    positive,
)
from visualizer.cli.progress import Progress


def add_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="time every layer, and fmviz against torchvision and Captum (random weights)",
    )
    bench.add_argument("--model", choices=MODELS, default=DEFAULT_MODEL)
    bench.add_argument("--device", choices=DEVICES, default="auto")
    bench.add_argument(
        "--runs", type=positive, metavar="N", help="timed runs (default 10; 3 with --startup)"
    )
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.add_argument(
        "--channels-last",
        action="store_true",
        help="hold weights and activations channels-last (fmviz and torchvision alike)",
    )
    add_method_options(
        bench,
        default_help=(
            "P10; default: all on a GPU, gradcam, guided-gradcam and saliency on a CPU, where "
            "each of the others takes seconds to a minute a call; any given are timed RUNS "
            "times on each side, with their defaults unless --parameter says otherwise"
        ),
    )
    bench.add_argument(
        "--startup",
        action="store_true",
        help="launch the app RUNS times (default 3) instead: time to the window, to its first "
        "view, and its event-loop stalls (P5–P7), against python -c 'import torch' and a "
        "torchvision script",
    )
    bench.set_defaults(run=run, usage_error=bench.error)


def run(args: argparse.Namespace) -> int:
    from models import WeightsError  # noqa: PLC0415
    from visualizer.bench.engine import run_bench  # noqa: PLC0415
    from visualizer.core.device import DeviceError  # noqa: PLC0415

    if args.startup:
        return _bench_startup(args)
    try:  # --parameter is checked against the methods given, else against them all
        parameters = method_parameters(args.methods or METHODS, args.parameter)
    except ValueError as failure:
        args.usage_error(str(failure))
    runs = args.runs or 10
    progress = Progress(2 + runs, label=f"bench {args.model}")
    try:
        report = run_bench(
            args.model,
            args.device,
            runs,
            progress=progress.update,
            channels_last=args.channels_last,
            methods=args.methods,
            parameters=parameters,
        )
    except (DeviceError, WeightsError, RuntimeError) as failure:
        progress.close()
        error(str(failure))
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
    from visualizer.bench.engine import KEYS, STARTUP_KEYS, target_entries  # noqa: PLC0415
    from visualizer.bench.startup import run_startup_bench  # noqa: PLC0415

    runs = args.runs or 3
    progress = Progress(runs, label=f"bench --startup {args.model}")
    try:
        report = run_startup_bench(args.model, args.device, runs, progress=progress.update)
    except RuntimeError as failure:  # DeviceError too: the device asked for is not here
        progress.close()
        error(str(failure))
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
    """One line per target measured: value, target, verdict, what; P10 one line per method."""
    for key, entry in results.items():
        if not key.startswith("P") or not isinstance(entry, dict) or entry["ratio"] is None:
            continue
        unit = entry["unit"]
        target = f"{entry['target']:g}{'×' if unit == '×' else ' ms'}"
        verdict = {True: "ok", False: "over target", None: entry.get("note", "not judged")}
        lines = [(entry["ratio"], entry["ok"], entry["what"])]
        if "methods" in entry:  # P10: each method
            lines = [
                (
                    method["ratio"],
                    method["ok"],
                    f"{name}: {method['fmviz_ms']:.1f} ms through fmviz, "
                    f"{method['captum_ms']:.1f} ms through Captum",
                )
                for name, method in entry["methods"].items()
            ]
        for ratio, ok, what in lines:
            value = f"{ratio:6.3f}×" if unit == "×" else f"{ratio:6.1f} ms"
            print(f"{key:<4} {value} (target ≤ {target}, {verdict[ok]}): {what}")

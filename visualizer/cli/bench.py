"""``fmviz bench``: every layer's time, and fmviz against torchvision and Captum; with
``--index``, ``fmviz index`` against a torchvision loop, its memory and its Ray backend."""

from __future__ import annotations

import argparse
import json
import os
import statistics

from visualizer.choices import DEVICES, MODELS
from visualizer.cli.options import (
    DEFAULT_MODEL,
    METHODS,
    add_method_options,
    error,
    method_parameters,
    pixels,
    positive,
)
from visualizer.cli.progress import Progress


def add_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="time every layer, and fmviz against torchvision and Captum (random weights)",
    )
    bench.add_argument(
        "--model",
        choices=MODELS,
        help=f"network (default {DEFAULT_MODEL}; with --index both, P12 and P13 {DEFAULT_MODEL})",
    )
    bench.add_argument("--device", choices=DEVICES, default="auto")
    bench.add_argument(
        "--runs",
        type=positive,
        metavar="N",
        help="timed runs (default 10; 3 with --startup; with --index 3 on a GPU, 1 on a CPU)",
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
    _add_index_options(bench)
    _add_live_options(bench)
    bench.set_defaults(run=run, usage_error=bench.error)


def _add_index_options(bench: argparse.ArgumentParser) -> None:
    index = bench.add_argument_group(
        "--index: fmviz index on generated JPEGs (P11–P13)",
        "fmviz index's images/s against a bare torchvision DataLoader loop with the same "
        "settings (P11, per network), its peak memory on all the images against a tenth of "
        "them (P12) and --backend ray against the local backend (P13), each a fresh process; "
        "and the per-image costs of reading and of the network. The defaults take about two "
        "minutes on a GPU; on a small CPU use fewer --images (the expected time of each phase "
        "is printed on stderr).",
    )
    index.add_argument(
        "--index", action="store_true", help="benchmark fmviz index instead (P11–P13)"
    )
    index.add_argument(
        "--images", type=positive, metavar="N", help="images to generate (default 2000)"
    )
    index.add_argument(
        "--batch-size", type=positive, metavar="N", help="images a pass, both sides (default 32)"
    )
    index.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"DataLoader workers, both sides (default {default_workers()} here: the cores, "
        "at most 8; 0: the main process)",
    )
    index.add_argument(
        "--weights",
        metavar="imagenet|random|PATH",
        help="the networks' weights (default random)",
    )
    index.add_argument(
        "--resize",
        type=pixels,
        metavar="N",
        help="resize the shorter side to N (default: the network's)",
    )
    index.add_argument(
        "--crop",
        type=pixels,
        metavar="N",
        help="centre crop N×N, the input (default: the network's, 224)",
    )
    index.add_argument("--no-ray", action="store_true", help="skip P13 (Ray's start-up is slow)")


INDEX_OPTIONS = ("images", "batch_size", "workers", "weights", "resize", "crop", "no_ray")


def default_workers() -> int:
    """``--workers`` of ``fmviz bench --index``: this machine's cores, at most 8."""
    return min(8, os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    from models import WeightsError  # noqa: PLC0415
    from visualizer.bench.engine import run_bench  # noqa: PLC0415
    from visualizer.core.device import DeviceError  # noqa: PLC0415

    if args.live:
        return _bench_live(args)
    live_given = [name for name in LIVE_OPTIONS if getattr(args, name) not in (None, False)]
    if live_given:
        args.usage_error(f"--{live_given[0]} needs --live")
    if args.index:
        return _bench_index(args)
    given = [name for name in INDEX_OPTIONS if getattr(args, name) not in (None, False)]
    if given:
        args.usage_error(f"--{given[0].replace('_', '-')} needs --index")
    args.model = args.model or DEFAULT_MODEL
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
    """One line per target measured: value, target, verdict, what; P10 one line per method,
    P11 one per network."""
    for key, entry in results.items():
        if not key.startswith("P") or not isinstance(entry, dict) or entry.get("ratio") is None:
            continue
        unit = entry["unit"]
        compare = entry.get("compare", "≤")
        target = f"{entry['target']:g}{'×' if unit == '×' else ' ms'}"
        missed = "under target" if compare == "≥" else "over target"
        verdict = {True: "ok", False: missed, None: entry.get("note", "not judged")}
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
        if "networks" in entry:  # P11: each network
            lines = [
                (
                    network["ratio"],
                    network["ok"],
                    f"{name}: {network['fmviz_images_per_s']:.1f} images/s through fmviz "
                    f"index, {network['torchvision_images_per_s']:.1f} through torchvision",
                )
                for name, network in entry["networks"].items()
            ]
        for ratio, ok, what in lines:
            value = f"{ratio:6.3f}×" if unit == "×" else f"{ratio:6.1f} ms"
            print(f"{key:<4} {value} (target {compare} {target}, {verdict[ok]}): {what}")


def _not_measured(results: dict) -> None:
    """A line for each target of ``results`` that was not measured, with the reason."""
    for key, entry in results.items():
        if key.startswith("P") and isinstance(entry, dict) and entry.get("ratio") is None:
            print(f"{key:<4} not measured: {entry.get('note', '')}")


def _hours(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def _bench_index(args: argparse.Namespace) -> int:
    """``fmviz bench --index``: P11 for each network, P12 and P13 for one (see
    ``visualizer.bench.index``)."""
    for option, name in (
        ("startup", "--startup"),
        ("channels_last", "--channels-last"),
        ("methods", "--methods"),
        ("parameter", "--parameter"),
    ):
        if getattr(args, option):
            args.usage_error(f"--index and {name} measure different things: give one")
    workers = default_workers() if args.workers is None else args.workers
    if workers < 0:
        args.usage_error("--workers: must be 0 or more")
    from visualizer.bench.index import DEFAULT_IMAGES, run_index_bench  # noqa: PLC0415
    from visualizer.cli.options import checkpoint_architecture, engine_errors  # noqa: PLC0415

    weights = args.weights or "random"
    chosen = args.model or checkpoint_architecture(weights)
    # ResNet101 first: its figures come first, and it is the network of P12 and P13.
    networks = [chosen] if chosen else sorted(MODELS, key=lambda name: name != DEFAULT_MODEL)
    progress = Progress(0, label="bench --index")
    try:
        report = run_index_bench(
            networks,
            args.device,
            weights=weights,
            images=args.images or DEFAULT_IMAGES,
            batch_size=args.batch_size or 32,
            workers=workers,
            runs=args.runs,
            resize=args.resize,
            crop=args.crop,
            memory_network=chosen or DEFAULT_MODEL,
            ray=not args.no_ray,
            progress=progress.update,
            note=progress.message,
        )
    except (*engine_errors(), RuntimeError) as failure:
        progress.close()
        error(str(failure))
        return 1
    progress.close()
    results = report.as_json()
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    _print_index(results)
    return 0


def _print_index(results: dict) -> None:
    """The text report of ``fmviz bench --index``: settings, per-image costs, throughput,
    the commands' figures, phases, then one line per target."""
    ms = 1e3
    workers = results["workers"]
    print(
        f"fmviz index on {results['device']}: {results['images']} generated images "
        f"({results['image_size']}), batch {results['batch_size']}, {workers} "
        f"worker{'' if workers == 1 else 's'}, top {results['top']} of "
        f"{'–'.join(results['stages'][::4])}, {results['weights']} weights"
    )
    for name, preprocessing in results["preprocessing"].items():
        print(f"{name}: {preprocessing}")
    print()
    batch = next(iter(results["per_image_s"].values()))["batch_size"]
    print(f"{'ms per image':<14}{'read and preprocess':>24}{f'network (batch of {batch})':>28}")
    print(f"{'':<14}{'fmviz':>12}{'torchvision':>12}{'fmviz':>14}{'torchvision':>14}")
    for name, cost in results["per_image_s"].items():
        print(
            f"{name:<14}{cost['read'] * ms:>12.2f}{cost['read_torchvision'] * ms:>12.2f}"
            f"{cost['network'] * ms:>14.2f}{cost['network_torchvision'] * ms:>14.2f}"
        )
    print("(reading: one process; network: to C5 with the top-K vs torchvision's whole forward)")
    estimate = results["imagenet_estimate_h"]
    hours = "; ".join(
        f"{name} ≈ {_hours(value)} from these costs, {_hours(measured)} at the rate measured"
        for name, value in estimate["from_costs"].items()
        if (measured := estimate["at_measured_rate"].get(name)) is not None
    )
    workers = results["workers"]
    print(
        f"ImageNet ({estimate['images']:,} images, {workers} worker{'' if workers == 1 else 's'}"
        f"): {hours}"
    )
    print()
    p11 = results["P11"]["networks"]
    print(
        f"{'images/s':<14}{'fmviz index':>14}{'torchvision':>14}{'fmviz loop alone':>20}"
        f"   (medians of {results['runs']})"
    )
    for name, network in p11.items():
        loops = network["fmviz_loop_s"]
        loop = f"{results['images'] / statistics.median(loops):>20.1f}" if loops else ""
        print(
            f"{name:<14}{network['fmviz_images_per_s']:>14.1f}"
            f"{network['torchvision_images_per_s']:>14.1f}{loop}"
        )
    commands = results["commands"]
    if commands:
        print()
        print(f"fmviz index {results['P12'].get('network', '')} in a fresh process:")
        for run in commands.values():
            indexed = run["indexing_s"]
            said = f" (indexing {indexed:.1f} s)" if indexed is not None else ""
            print(
                f"  {run['backend']:<6}{run['images']:>6} images: {run['wall_s']:7.1f} s{said}, "
                f"largest process {run['largest_process_peak_mib']:.0f} MiB, all "
                f"{run['processes']} processes {run['tree_peak_mib']:.0f} MiB"
                + (f"; failed: {run['error']}" if run.get("error") else "")
            )
        if "tree_measure" in results["P12"]:
            print(
                f"  (largest process: {results['P12']['measure']}; processes: "
                f"{results['P12']['tree_measure']})"
            )
    print()
    expected = results["expected_s"]
    phases = ", ".join(
        f"{name} {seconds:.0f} s"
        + (f" (its passes expected ≈ {expected[name]:.0f})" if name in expected else "")
        for name, seconds in results["phases_s"].items()
    )
    print(f"phases: {phases}")
    print()
    _print_targets(results)
    _not_measured(results)


# --- fmviz bench --live ---------------------------------------------------------------------

LIVE_OPTIONS = ("video", "frames", "stage", "record")


def _add_live_options(bench: argparse.ArgumentParser) -> None:
    from visualizer.cli.options import stage  # noqa: PLC0415

    live = bench.add_argument_group(
        "--live: the live view's loop on a video (P14)",
        "a video played as a camera (frames at its own rate) and its newest frame analysed "
        "as the window does (analysis, Grad-CAM at C5, the stage grid), one after another: "
        "captured and analysed frames per second, frames dropped, the analysis's time and its "
        "share of each frame's; again with frames as fast as they decode (P14's figure), and "
        "the decoding alone. --model, --device, --weights (default random) and --json apply.",
    )
    live.add_argument("--live", action="store_true", help="benchmark the live view instead (P14)")
    live.add_argument(
        "--video",
        metavar="FILE",
        help="the video to play (default: generated moving shapes, 640×480, 30 fps, 10 s, "
        "played again from the start as needed)",
    )
    live.add_argument(
        "--frames",
        type=positive,
        metavar="N",
        help="analysed frames to measure in each run (default 60 on a CPU, 300 on a GPU)",
    )
    live.add_argument(
        "--stage", type=stage, metavar="C1–C5", help="the grid's stage (default C1, the window's)"
    )
    live.add_argument(
        "--record",
        action="store_true",
        help="also record each analysed frame to a temporary video, to time the recording",
    )


def _bench_live(args: argparse.Namespace) -> int:
    """``fmviz bench --live``: the live view's loop (see ``visualizer.bench.live``)."""
    for option, name in (
        ("index", "--index"),
        ("startup", "--startup"),
        ("channels_last", "--channels-last"),
        ("methods", "--methods"),
        ("parameter", "--parameter"),
        ("runs", "--runs"),
    ):
        if getattr(args, option):
            args.usage_error(f"--live and {name} measure different things: give one")
    given = [name for name in INDEX_OPTIONS if name != "weights" and getattr(args, name)
             not in (None, False)]  # fmt: skip
    if given:
        args.usage_error(f"--{given[0].replace('_', '-')} needs --index")
    from visualizer.bench.live import DEFAULT_STAGE, report_lines, run_live_bench  # noqa: PLC0415
    from visualizer.cli.options import checkpoint_architecture, engine_errors  # noqa: PLC0415
    from visualizer.core.live import LiveSourceError, RecordingError  # noqa: PLC0415

    weights = args.weights or "random"
    model = args.model or checkpoint_architecture(weights) or DEFAULT_MODEL
    progress = Progress(2, label=f"bench --live {model}")  # its steps known once it runs
    try:
        report = run_live_bench(
            model,
            args.device,
            weights=weights,
            video=args.video,
            frames=args.frames,
            stage=args.stage or DEFAULT_STAGE,
            record=args.record,
            progress=progress.update,
            note=progress.message,
        )
    except (*engine_errors(), LiveSourceError, RecordingError, RuntimeError) as failure:
        progress.close()
        error(str(failure))
        return 1
    progress.close()
    results = report.as_json()
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return 0
    for line in report_lines(results):
        print(line)
    return 0

"""``fmviz [IMAGE ...]``: open the window."""

from __future__ import annotations

import argparse
from pathlib import Path

from visualizer.choices import DEVICES, MODELS
from visualizer.cli.options import (
    add_compare_options,
    add_network_options,
    add_weights_option,
    checkpoint_architecture,
    compare_spec,
    error,
    network_spec,
    screenshot_path,
)


def parser() -> argparse.ArgumentParser:
    """The parser of ``fmviz [IMAGE ...] [options]``; its epilog lists the commands."""
    from visualizer import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="fmviz",
        usage="fmviz [IMAGE ...] [--compare] [options]\n"
        "       fmviz --live [CAMERA|FILE] [--record VIDEO] [options]\n"
        "       fmviz {info,export,bench,index} ...",
        description=(
            "Look inside VGG16 and ResNet101, stage by stage: opens the window with the images "
            "given (else the bundled samples)."
        ),
        epilog=(
            "commands (fmviz COMMAND -h for their options):\n"
            "  info     the networks' C1–C5 stages and parameters, and their weights\n"
            "  export   write stage grids, Grad-CAM overlays and timings of images to a folder\n"
            "  bench    time every layer, and fmviz against torchvision and Captum\n"
            "  index    find the dataset images that excite each channel most (an atlas)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fmviz {__version__}")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files or folders")
    parser.add_argument(
        "--model", choices=MODELS, help="network (default: the last used, else resnet101)"
    )
    add_weights_option(parser, remembered=True)
    parser.add_argument(
        "--device",
        choices=DEVICES,
        help="default: the last used, else auto (with --screenshot: auto)",
    )
    add_network_options(parser)
    parser.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        help="open in compare mode, two networks side by side (default VGG16 and ResNet101; "
        "--compare-… name the other), or not (default: as the window was last closed, unless "
        "--model, a network of your own or --screenshot is given; on with --compare-…)",
    )
    add_compare_options(parser)
    parser.add_argument(
        "--index",
        metavar="DIR",
        help="open a dataset index made by fmviz index (made with the same network, weights "
        "and preprocessing); with --screenshot, the screenshot shows the Channel tab with the "
        "grid's first channel and its top dataset images",
    )
    parser.add_argument(
        "--live",
        nargs="?",
        const="",
        metavar="CAMERA|FILE",
        help="analyse a camera or a video file as it plays: a video file, a camera's number "
        "(0: the first) or part of its name; alone, the first camera",
    )
    parser.add_argument(
        "--record",
        metavar="VIDEO",
        help="with --live: write the live view (input, map, grid) to VIDEO (.mp4, .mkv, .mov, "
        ".avi or .webm) and each analysed frame's top-5 to a CSV file beside it",
    )
    parser.add_argument(
        "--screenshot",
        type=screenshot_path,
        metavar="PATH",
        help="save a PNG of the window once the first view is complete, then exit",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Open the window and run until it closes; the exit status.

    The compared network (``--compare-…``) defaults to ``--model``'s architecture, resnet101
    when no ``--model`` is given (the window's last network is known only to the window).
    """
    from visualizer.ui.platform_check import prepare  # noqa: PLC0415 (no Qt in it)

    if args.model is None:  # a checkpoint's own architecture, else the last used
        args.model = checkpoint_architecture(args.weights)
    main = network_spec(argparse.Namespace(**{**vars(args), "weights": args.weights or "imagenet"}))
    other = compare_spec(args, main)
    compare = args.compare
    if other is not None:
        if compare is False:
            error("--no-compare: the --compare-… options name a network to compare with")
            return 2
        compare = True

    live = _live_source(args)
    if isinstance(live, int):
        return live

    # Before Qt loads: where its platform plugin cannot start, Qt aborts the process.
    problem = prepare(screenshot=bool(args.screenshot))
    if problem:
        error(problem)
        return 1
    from visualizer.ui.app import run as run_app  # noqa: PLC0415

    return run_app(
        args.images,
        model=args.model,
        weights=args.weights,
        device=args.device,
        screenshot=args.screenshot,
        compare=compare,
        labels=args.labels,
        mean=args.mean,
        std=args.std,
        resize=args.resize,
        crop=args.crop,
        other=other,
        index=args.index,
        live=live,
        record=args.record,
    )


def _live_source(args: argparse.Namespace) -> str | int | None:
    """``--live``'s source checked before the window opens: the file or camera named, ``""``
    for the first camera, None without ``--live``; or an exit status (2: bad usage, 1: no
    such file or camera), the reason said in one line."""
    if args.live is None:
        if args.record:
            error("--record: records the live view, so needs --live")
            return 2
        return None
    if args.compare:
        error("--live: shows one network; compare two on images, or snapshots of the frames")
        return 2
    if args.record:
        from visualizer.core.live.recorder import CODECS  # noqa: PLC0415 (no PyAV import)

        if Path(args.record).suffix.lower() not in CODECS:
            error(f"--record {args.record}: a video file ending {', '.join(CODECS)}")
            return 2
        if args.live and Path(args.live).resolve() == Path(args.record).resolve():
            error(f"--record {args.record}: the video played; record to another file")
            return 2
    from visualizer.core.live.sources import (  # noqa: PLC0415
        LiveSourceError,
        VideoSource,
        find_source,
    )

    try:  # said here, not in a window that would show nothing
        found = find_source(args.live or None)
        if isinstance(found, str):  # a file: is it a video? (a camera opens once, later)
            VideoSource(found).close()
    except LiveSourceError as failure:
        error(str(failure))
        return 1
    return args.live

"""``fmviz index``: every channel's top images over a dataset, into a folder of Parquet."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from visualizer.choices import STAGES
from visualizer.cli.options import (
    add_model_options,
    build_analyzer,
    engine_errors,
    error,
    layer_names,
    network_spec,
    positive,
)
from visualizer.cli.progress import Progress

INTERRUPTED = 130
BACKEND_CHOICES = ("local", "ray")  # visualizer.core.atlas.BACKENDS, without importing torch


def add_parser(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser(
        "index",
        help="find the dataset images that excite each channel most (a dataset atlas)",
        description=(
            "Run every image of SOURCE (folders, image files, or .txt/.lst files listing "
            "paths) through the network and keep, for every channel of every stage, the K "
            "images whose spatial maximum activation is largest, with the position of the "
            "maximum and its receptive field as a box in the source image's own pixels; and, "
            "per channel, the mean and standard deviation of that maximum and the fraction of "
            "images where it is above 0. DIR gets topk.parquet, channels.parquet and "
            "index.json (network, weights SHA-256, preprocessing, images counted and refused). "
            "An interrupted run continues with --resume. A file that is not an image is one "
            "error line; the rest is indexed. The window opens DIR with File → Open index…."
        ),
    )
    index.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="folders of images (subfolders too), image files, or text files of paths",
    )
    index.add_argument("--out", required=True, type=Path, metavar="DIR", help="index folder")
    add_model_options(index)
    index.add_argument(
        "--stages",
        type=layer_names,
        default=STAGES,
        metavar="all|C1,C3,...",
        help="stages, or any layers by module name (fmviz info --layers), default all five",
    )
    index.add_argument(
        "--top", type=positive, default=9, metavar="K", help="images per channel (default 9)"
    )
    index.add_argument(
        "--batch-size", type=positive, default=32, metavar="N", help="images a pass (default 32)"
    )
    index.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="processes reading images (default 2; 0: the main one); Ray: reading tasks",
    )
    index.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="local",
        help="local (default) or ray: Ray Data on a cluster (pip install 'fmviz[ray]')",
    )
    index.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster to join (host:port, or auto); default: a local Ray instance",
    )
    index.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run whose progress DIR holds (same settings)",
    )
    index.add_argument(
        "--save-every",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often the progress is saved for --resume (default 30)",
    )
    index.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Index ``args.sources`` into ``args.out``: 0 all images indexed, 1 some refused or the
    run failed, 2 bad usage, 130 interrupted (progress saved: ``--resume`` continues)."""
    if args.stages in {("ALL",), ("all",)}:
        args.stages = STAGES
    if args.workers < 0:
        error("--workers: must be 0 or more")
        return 2
    if args.address and args.backend != "ray":
        error("--address needs --backend ray")
        return 2
    from visualizer.core.atlas import build_index  # noqa: PLC0415 - imports torch

    try:
        # With Ray the network runs on the cluster's workers: here it only gives the shapes,
        # receptive fields and weights' hash, on the CPU (not on a GPU that a worker needs).
        device = "cpu" if args.backend == "ray" else args.device
        analyzer = build_analyzer(network_spec(args), device, timings=False, warm_up=False)
    except engine_errors() as failure:
        error(str(failure))
        return 1
    progress = Progress(0, label="images")
    started = time.monotonic()
    first: list[int] = []

    def show(done: int, total: int) -> None:
        if not first:
            first.append(done)
        elapsed = time.monotonic() - started
        rate = (done - first[0]) / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else None
        label = f"images · {rate:.1f}/s" + (f" · {_duration(left)} left" if left else "")
        progress.update(done, total, label)

    def refused(source: str, reason: str) -> None:
        progress.message(f"error: {source}: {reason}")

    try:
        report = build_index(
            args.sources,
            args.out,
            analyzer,
            layers=args.stages,
            top=args.top,
            batch_size=args.batch_size,
            workers=args.workers,
            backend=args.backend,
            address=args.address,
            resume=args.resume,
            save_every=args.save_every,
            progress=show,
            refusal=refused,
            device=args.device,
        )
    except KeyboardInterrupt:
        progress.close()
        print(
            f"interrupted: the progress is in {args.out}; add --resume to continue",
            file=sys.stderr,
            flush=True,
        )
        return INTERRUPTED
    except Exception as failure:
        progress.close()
        status = _reported(failure, args)
        if status is None:
            raise
        return status
    progress.close()
    if analyzer.notice:
        print(f"note: {analyzer.notice}", flush=True)
    rate = (report.images - report.resumed_from) / report.seconds if report.seconds else 0.0
    resumed = f", {report.resumed_from} from the interrupted run" if report.resumed_from else ""
    if args.resume and not report.resumed_from:
        print("note: no progress was saved in the folder: indexed from the start", flush=True)
    print(
        f"indexed {report.images} images{resumed} ({len(report.refused)} refused) in "
        f"{report.seconds:.1f} s ({rate:.1f} images/s) to {report.folder}",
        flush=True,
    )
    return 1 if report.refused else 0


def _reported(failure: Exception, args: argparse.Namespace) -> int | None:
    """Say what went wrong in one ``error:`` line and give the exit status; None for a failure
    the command does not expect."""
    from visualizer.core.atlas import IndexFileError, SourceError  # noqa: PLC0415
    from visualizer.core.atlas.ray_backend import RayClusterError, RayMissingError  # noqa: PLC0415

    if isinstance(failure, SourceError | IndexFileError | RayMissingError | RayClusterError):
        error(str(failure))
        return 1
    if isinstance(failure, ConnectionError):  # no Ray cluster there (an OSError: first)
        where = f"at {args.address}" if args.address else "(a local instance)"
        error(f"Ray {where}: {' '.join(str(failure).split())[:300]}")
        return 1
    if isinstance(failure, ValueError):  # a layer the network does not have
        error(str(failure))
        return 2
    if isinstance(failure, OSError):
        error(f"{failure.filename or args.out}: {failure.strerror or failure}")
        return 1
    return None


def _duration(seconds: float) -> str:
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}" if hours else f"{minute}:{second:02d}"

"""``fmviz export``: every image through every network asked for, into one folder."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from visualizer.choices import COLORMAPS, MODELS, STAGES
from visualizer.cli.options import add_model_options, class_index, error, stage, stages
from visualizer.cli.progress import Progress

if TYPE_CHECKING:
    from visualizer.core import AnalysisResult, Analyzer
    from visualizer.core.export import ExportOptions


def add_parser(commands: argparse._SubParsersAction) -> None:
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
    add_model_options(export)
    export.add_argument(
        "--stages",
        type=stages,
        default=STAGES,
        metavar="all|C1,C3,...",
        help="stages to write grids of (default: all)",
    )
    export.add_argument(
        "--cam-stage",
        type=stage,
        default="C5",
        metavar="STAGE",
        help="stage of the Grad-CAM overlay (default C5)",
    )
    export.add_argument(
        "--target",
        type=class_index,
        metavar="INDEX",
        help="ImageNet class index 0–999 for Grad-CAM (default: the top-1 class)",
    )
    export.add_argument("--colormap", choices=COLORMAPS, default="viridis", help="grid colormap")
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
    export.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export ``args.images`` to ``args.out``; 0 when all are done, 1 when any failed."""
    # The engine imports torch: loaded here, not when the command line starts.
    from models import WeightsError  # noqa: PLC0415
    from models.weights import PATH_SHOWN, shown  # noqa: PLC0415
    from visualizer.core import Analyzer, DeviceError  # noqa: PLC0415
    from visualizer.core.export import ExportOptions  # noqa: PLC0415

    out: Path = args.out
    problem = _unwritable(out)
    if problem:
        error(f"{shown(out, PATH_SHOWN)}: {problem}")
        return 1
    names = list(MODELS) if args.compare else [args.model]
    lead = names.index(args.model)  # in a comparison, its top-1 is the class both explain
    try:
        analyzers = [Analyzer(name, args.weights, args.device) for name in names]
    except (WeightsError, DeviceError) as failure:
        error(str(failure))
        return 1
    options = ExportOptions(
        stages=args.stages,
        cam_stage=args.cam_stage,
        target=args.target,
        colormap=args.colormap,
        scale=args.scale,
        order=args.order,
    )
    inputs = _distinct(args.images)
    stems = _unique_stems(inputs)
    progress = Progress(len(inputs), label="")
    failures = written = 0
    try:
        for done, (path, stem) in enumerate(zip(inputs, stems, strict=True)):
            progress.update(done, label=shown(path, PATH_SHOWN))
            outcome = _export_one(path, stem, analyzers, out, options, lead=lead)
            if isinstance(outcome, str):
                failures += 1
                progress.message(f"error: {outcome}")
            else:
                written += outcome
        progress.update(len(inputs))
    finally:
        progress.close()
    for analyzer in analyzers:
        if analyzer.notice:
            print(f"note: {analyzer.notice}", flush=True)
    done_count = len(inputs) - failures
    summary = f"exported {done_count} of {len(inputs)} images ({written} files)"
    print(f"{summary} to {shown(out, PATH_SHOWN)}", flush=True)
    return 1 if failures else 0


def _export_one(
    path: str,
    stem: str,
    analyzers: list[Analyzer],
    out: Path,
    options: ExportOptions,
    *,
    lead: int = 0,
) -> int | str:
    """The number of files written for ``path``, or why it failed (``"<file>: <reason>"``).

    With two networks, their comparison is written too: its Grad-CAMs explain one class
    (``options.target``, else the top-1 of ``analyzers[lead]``).
    """
    from models.weights import PATH_SHOWN, shown  # noqa: PLC0415
    from visualizer.core import ImageLoadError, load_image  # noqa: PLC0415

    name = shown(path, PATH_SHOWN)
    try:
        image = load_image(path)
        results = [analyzer.analyze(image, source=path) for analyzer in analyzers]
        try:
            return _write(analyzers, results, out, stem, options, lead=lead)
        except OSError as failure:
            reason = shown(failure.strerror or str(failure), PATH_SHOWN)
            what = Path(failure.filename).name if failure.filename else None
            where = (
                f"{what} to {shown(out, PATH_SHOWN)}" if what else f"to {shown(out, PATH_SHOWN)}"
            )
            return f"{name}: cannot write {where} ({reason})"
    except ImageLoadError as failure:
        return str(failure)
    except Exception as failure:  # noqa: BLE001 - one image's surprise must not stop the batch
        reason = shown(f"{type(failure).__name__}: {failure}", PATH_SHOWN)
        return f"{name}: failed unexpectedly ({reason})"


def _write(
    analyzers: list[Analyzer],
    results: list[AnalysisResult],
    out: Path,
    stem: str,
    options: ExportOptions,
    *,
    lead: int,
) -> int:
    """Write every file of one image; the number written.

    Each network's own files explain its own top-1 class unless ``--target`` names one, as
    without ``--compare``; the comparison explains one class for both.
    """
    from visualizer.core.comparison import export_comparison, shared_target  # noqa: PLC0415
    from visualizer.core.export import export_result  # noqa: PLC0415

    written = sum(
        len(export_result(analyzer, result, out, stem, options))
        for analyzer, result in zip(analyzers, results, strict=True)
    )
    if len(analyzers) == 1:
        return written
    shared = dataclasses.replace(options, target=shared_target(results, options.target, lead))
    return written + len(export_comparison(analyzers, results, out, stem, shared))


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (created if missing), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        return "exists and is not a folder"
    except NotADirectoryError:
        return "is not a folder"
    except OSError as failure:
        return f"cannot write there ({failure.strerror or failure})"
    return None


def _distinct(paths: list[str]) -> list[str]:
    """``paths`` without repeats: the same file named twice, however spelt, is one input."""
    seen: set[str] = set()
    distinct = []
    for path in paths:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            distinct.append(path)
    return distinct


def _unique_stems(paths: list[str]) -> list[str]:
    """File stems, cut to fit, with ``-2``, ``-3`` … added where an input's stem is taken
    already."""
    from visualizer.core.export import fitting_stem  # noqa: PLC0415

    stems = [fitting_stem(Path(path).stem) or "image" for path in paths]
    taken = set(stems)
    unique = []
    for index, stem in enumerate(stems):
        name = stem
        if stem in stems[:index]:
            count = 2
            while f"{stem}-{count}" in taken:
                count += 1
            name = f"{stem}-{count}"
            taken.add(name)
        unique.append(name)
    return unique

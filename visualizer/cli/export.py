"""``fmviz export``: every image through every network asked for, into one folder."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from visualizer.choices import COLORMAPS, STAGES
from visualizer.cli.options import (
    add_compare_options,
    add_method_options,
    add_model_options,
    build_analyzer,
    class_index,
    compare_spec,
    engine_errors,
    error,
    layer_names,
    method_parameters,
    network_spec,
    positive,
    stage,
    stages,
    target_problem,
)
from visualizer.cli.progress import Progress

if TYPE_CHECKING:
    from visualizer.core import AnalysisResult, Analyzer
    from visualizer.core.export import ExportOptions, WriteBatch
    from visualizer.networks import NetworkSpec

INTERRUPTED = 130  # the exit status of a command ended by Ctrl+C (128 + SIGINT)
DEFAULT_FAITHFULNESS_STEPS = 32  # faithfulness.DEFAULT_STEPS, without importing torch


def add_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="write stage grids, Grad-CAM overlays and timings of images to a folder",
        description=(
            "For each IMAGE write <stem>_<model>_<stage>.png (tile grid of every channel), "
            "<stem>_<model>_gradcam_<stage>.png (Grad-CAM over the image) and "
            "<stem>_<model>_timings.csv (per-layer milliseconds). A FOLDER gives the images "
            "in it and its subfolders, as the window takes a dropped folder. An image's files "
            "are all written or none is. A network of your own: --weights FILE (any number of "
            "classes, 3 or 1 input channels) with --labels, --mean, --std, --resize, --crop. "
            "Attribution methods beside Grad-CAM, and any layer's grid: --methods, --layers."
        ),
    )
    export.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE|FOLDER",
        help="image files, or folders of them (subfolders too; hidden files left out)",
    )
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
        help="class index for Grad-CAM, 0 to the network's classes - 1 (default: the top-1)",
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
            "export two networks, and their comparison: <stem>_compare_<stage>.png per stage "
            "and <stem>_compare_timings.csv. The other network: the other architecture, or "
            "what --compare-model, --compare-weights … name; when both have the same "
            "architecture, each network's files are named <stem>_<model>-<weights>_… . "
            "Networks with the same classes explain one class (--target, else the top-1 of "
            "--model's network); otherwise each its own (--model's: --target, else its top-1; "
            "the other: its top-1)"
        ),
    )
    add_compare_options(export)
    export.add_argument(
        "--annotate",
        action="store_true",
        help=(
            "also write <stem>_<model>_<stage>_annotated.png and "
            "<stem>_<model>_gradcam_<stage>_annotated.png: the same pictures with a title, "
            "the class, a colour bar with its values, channel numbers, and a warning for "
            "untrained weights (and one beside each method's and each layer's picture)"
        ),
    )
    methods = export.add_argument_group(
        "attribution methods and layers",
        "Each method's map over the image: <stem>_<model>_<method>.png, or "
        "<stem>_<model>_<method>_<layer>.png for gradcam and guided-gradcam, at each of "
        "--layers (else at --cam-stage; gradcam there is the usual Grad-CAM file). Each PNG's "
        "text says the method, the parameters given to Captum, the layer, the class, and "
        "how faithful the map is: deletion_auc and insertion_auc (RISE, Petsiuk et al. 2018). "
        "With two maps or more, <stem>_<model>_methods.png shows them side by side with their "
        "deletion and insertion curves. On a CPU the slow methods (integrated-gradients, "
        "occlusion, smoothgrad-*) take seconds to minutes an image: see --parameter.",
    )
    add_method_options(methods, default_help="default: none")
    methods.add_argument(
        "--layers",
        type=layer_names,
        metavar="L1,L2,...",
        help=(
            "layers, by stage (C3) or module name (layer3.4, features.10; fmviz info --layers "
            "lists them): write each one's channel grid, <stem>_<model>_<layer>.png, and attribute "
            "gradcam and guided-gradcam there"
        ),
    )
    methods.add_argument(
        "--faithfulness-steps",
        type=positive,
        default=DEFAULT_FAITHFULNESS_STEPS,
        metavar="N",
        help=(
            "points on each deletion and insertion curve after the first, each 1/N of the "
            f"pixels (default {DEFAULT_FAITHFULNESS_STEPS}; each map costs 2N + 2 inputs "
            "through the network, 16 a pass)"
        ),
    )
    export.set_defaults(run=run, usage_error=export.error)


def run(args: argparse.Namespace) -> int:
    """Export ``args.images`` to ``args.out``: 0 when all are done, 1 when any failed, 130
    when interrupted (Ctrl+C)."""
    # The engine imports torch: loaded here, not when the command line starts.
    from models.weights import PATH_SHOWN, shown  # noqa: PLC0415
    from visualizer.core.export import ExportOptions  # noqa: PLC0415

    lineup = _lineup(args)
    parameters = _method_usage(args, lineup)  # exits 2 on a bad combination
    out = _OutputFolder(args.out)
    problem = out.unwritable()
    if problem:
        error(f"{shown(out.path, PATH_SHOWN)}: {problem}")
        return 1
    try:
        analyzers = [build_analyzer(spec, args.device) for spec in lineup.specs]
    except engine_errors() as failure:
        error(str(failure))
        return 1
    _check_layers(args, analyzers[0])  # exits 2 on a layer the network does not have
    # --target is the lead's class (and the other's too when they share their classes).
    problem = target_problem(args.target, analyzers[lineup.lead].num_classes)
    if problem:
        error(problem)
        return 1
    options = ExportOptions(
        stages=args.stages,
        cam_stage=args.cam_stage,
        target=args.target,
        colormap=args.colormap,
        scale=args.scale,
        order=args.order,
        annotate=args.annotate,
        methods=args.methods or (),
        layers=args.layers or (),
        parameters=parameters,
        faithfulness_steps=args.faithfulness_steps,
    )
    tally = _Tally()
    try:
        _export_all(args.images, analyzers, out, options, tally, lineup=lineup)
    except KeyboardInterrupt:
        out.tidy()
        print(
            f"interrupted: {tally.exported} of {tally.images} images exported "
            f"({tally.files} files) to {shown(out.path, PATH_SHOWN)}",
            file=sys.stderr,
            flush=True,
        )
        return INTERRUPTED
    out.tidy()
    for analyzer in analyzers:
        if analyzer.notice:
            print(f"note: {analyzer.notice}", flush=True)
    summary = f"exported {tally.exported} of {tally.images} images ({tally.files} files)"
    print(f"{summary} to {shown(out.path, PATH_SHOWN)}", flush=True)
    return 1 if tally.failures else 0


def _method_usage(args: argparse.Namespace, lineup: _Lineup) -> dict[str, dict[str, object]]:
    """The Captum parameters of each method asked (``--methods``, ``--parameter``); a bad
    combination is a usage error (exit status 2, argparse's message)."""
    if (args.methods or args.layers) and len(lineup.specs) > 1:
        args.usage_error("--methods and --layers export one network: not with --compare")
    if args.parameter and not args.methods:
        args.usage_error("--parameter sets a method's parameter: name the methods (--methods)")
    try:
        return method_parameters(args.methods or (), args.parameter)
    except ValueError as failure:
        args.usage_error(str(failure))
        raise  # (usage_error exits)


def _check_layers(args: argparse.Namespace, analyzer: Analyzer) -> None:
    """A usage error (exit status 2) for a layer of ``--layers`` that ``analyzer``'s network
    does not have: neither a stage nor a module whose output is a feature map."""
    from visualizer.core.layers import unknown_layer  # noqa: PLC0415

    known = analyzer.feature_layers()
    names = {layer.name for layer in known}
    for name in args.layers or ():
        if name not in STAGES and name not in names:
            args.usage_error(f"argument --layers: {unknown_layer(name, known)}")


@dataclass(frozen=True)
class _Lineup:
    """The networks an export runs, in order (a comparison's left side first)."""

    specs: tuple[NetworkSpec, ...]
    lead: int  # --model's network: the one whose class a shared comparison explains
    names: tuple[str, ...]  # each network's name in file names
    labels: tuple[str, ...]  # each network's name in pictures


def _lineup(args: argparse.Namespace) -> _Lineup:
    """``--model``'s network alone, named by its architecture in file names (DESIGN §4); with
    ``--compare`` (or any ``--compare-…`` option) both sides of the comparison
    (``visualizer.networks.compare_pair``), named by ``network_names`` (``"vgg16"``, or
    ``"resnet101-imagenet"`` and ``"resnet101-ft5"`` for one architecture twice)."""
    from visualizer.networks import compare_pair, network_labels, network_names  # noqa: PLC0415

    main = network_spec(args)
    other = compare_spec(args, main)
    if not args.compare and other is None:
        return _Lineup((main,), 0, (main.model,), (main.label,))
    sides, lead = compare_pair(main, other)
    return _Lineup(tuple(sides), lead, tuple(network_names(sides)), network_labels(sides))


def _export_all(
    paths: list[str],
    analyzers: list[Analyzer],
    out: _OutputFolder,
    options: ExportOptions,
    tally: _Tally,
    *,
    lineup: _Lineup,
) -> None:
    """Export every image of ``paths`` (files and folders), counting in ``tally`` as it goes,
    so that an interruption (``KeyboardInterrupt``, which goes on) leaves it true; the
    progress bar is gone by then."""
    from models.weights import PATH_SHOWN, shown  # noqa: PLC0415

    inputs = _inputs(paths)
    images = [entry for entry in inputs if isinstance(entry, str)]
    stems = iter(_unique_stems(images))
    tally.images = len(images)
    progress = Progress(len(images), label="")
    try:
        for entry in inputs:
            if isinstance(entry, _Problem):
                if entry.kind == "error":
                    tally.failures += 1
                progress.message(f"{entry.kind}: {entry.message}")
                continue
            progress.update(tally.done, label=shown(entry, PATH_SHOWN))
            name = shown(entry, PATH_SHOWN)

            def step(what: str, done: int, total: int, name: str = name) -> None:
                progress.update(tally.done, label=f"{name}: {what} {done}/{total}")

            outcome = _export_one(
                entry,
                next(stems),
                analyzers,
                out,
                options,
                lineup=lineup,
                note=progress.message,
                step=step,
            )
            tally.done += 1
            if isinstance(outcome, str):
                tally.failures += 1
                progress.message(f"error: {outcome}")
            else:
                tally.exported += 1
                tally.files += outcome
        progress.update(tally.done)
    finally:
        progress.close()


@dataclass
class _Tally:
    """What an export has done so far: images found, tried, all written, failed; files."""

    images: int = 0
    done: int = 0
    exported: int = 0
    failures: int = 0
    files: int = 0


@dataclass(frozen=True)
class _Problem:
    """What to say about an input, in its place among the images: ``"<input>: <reason>"``,
    an ``error`` (a folder without images, which counts as a failure) or a ``note``."""

    message: str
    kind: str = "error"


def _inputs(paths: list[str]) -> list[str | _Problem]:
    """The images to export for ``paths``, in order: a file as it is (reading it says whether
    it is an image), a folder as the window takes a dropped one (``folders.image_files``:
    its images and its subfolders', sorted, hidden ones left out, at most
    ``MAX_FOLDER_FILES``); a folder without images is a `_Problem`. Each file once."""
    from models.weights import PATH_SHOWN, shown  # noqa: PLC0415

    entries: list[str | _Problem] = []
    for path in paths:
        if not os.path.isdir(path):
            entries.append(path)
            continue
        from visualizer import folders  # noqa: PLC0415 - the window's own listing

        found, problems = folders.image_files([path])
        if problems:
            entries.append(_Problem(f"{shown(path, PATH_SHOWN)}: no images in this folder"))
        elif len(found) >= folders.MAX_FOLDER_FILES:
            message = f"{shown(path, PATH_SHOWN)}: only its first {len(found)} images are taken"
            # (the window's limit, MAX_FOLDER_FILES: a folder holding exactly that many is
            # taken whole, and the note is said all the same)
            entries.append(_Problem(message, "note"))
        entries.extend(found)
    seen: set[str] = set()
    distinct: list[str | _Problem] = []
    for entry in entries:
        key = entry if isinstance(entry, _Problem) else os.path.realpath(entry)
        if key not in seen:  # the same file named twice, however spelt, is one input
            seen.add(key)
            distinct.append(entry)
    return distinct


def _export_one(
    path: str,
    stem: str,
    analyzers: list[Analyzer],
    out: _OutputFolder,
    options: ExportOptions,
    *,
    lineup: _Lineup,
    note: Callable[[str], None] = print,
    step: Callable[[str, int, int], None] | None = None,
) -> int | str:
    """The number of files written for ``path``, or why it failed (``"<file>: <reason>"``);
    what reading the image skipped or found malformed is told through ``note``, a line each.

    With two networks, their comparison is written too (see ``_write``). All of the image's
    files are written or none is (``KeyboardInterrupt`` included, which goes on).
    ``step(what, done, total)`` hears of the attribution methods' passes of the network.
    """
    from models.weights import PATH_SHOWN, shown  # noqa: PLC0415
    from visualizer.core import ImageLoadError, load_image_with_notes  # noqa: PLC0415
    from visualizer.core.export import WriteBatch  # noqa: PLC0415

    name = shown(path, PATH_SHOWN)
    folder = shown(out.path, PATH_SHOWN)
    try:
        image, notes = load_image_with_notes(path)
        for text in notes:
            note(f"note: {text}")
        layers = [name for name in options.layers if name not in STAGES]
        # (asked for only when there are some: a plain export calls analyze as it always has)
        more = {"layers": layers} if layers else {}
        results = [analyzer.analyze(image, source=path, **more) for analyzer in analyzers]
        try:
            out.make()
            with WriteBatch() as batch:
                _write(
                    analyzers,
                    results,
                    out.path,
                    stem,
                    options,
                    batch=batch,
                    lineup=lineup,
                    step=step,
                )
            return len(batch.committed)
        except OSError as failure:
            reason = shown(failure.strerror or str(failure), PATH_SHOWN)
            what = Path(failure.filename).name if failure.filename else None
            where = f"{what} to {folder}" if what else f"to {folder}"
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
    batch: WriteBatch,
    lineup: _Lineup,
    step: Callable[[str, int, int], None] | None = None,
) -> None:
    """Every file of one image, into ``batch``; each network's own under its name in
    ``lineup.names`` (``step``: ``export_result``'s ``progress``).

    Each network's own files explain its own top-1 class unless ``--target`` names one, as
    without ``--compare``; ``--target`` is the lead's class, and the other's only when both
    have the same classes. The comparison explains one class for both when they have the same
    classes (``--target``, else the lead's top-1), else each its own (``comparison``).
    """
    from visualizer.core.comparison import export_comparison  # noqa: PLC0415
    from visualizer.core.export import export_result  # noqa: PLC0415

    lead = lineup.lead
    shared = all(a.categories == analyzers[lead].categories for a in analyzers)
    sides = zip(analyzers, results, lineup.names, strict=True)
    for index, (analyzer, result, name) in enumerate(sides):
        own = options if shared or index == lead else dataclasses.replace(options, target=None)
        export_result(analyzer, result, out, stem, own, batch=batch, name=name, progress=step)
    if len(analyzers) > 1:
        export_comparison(
            analyzers,
            results,
            out,
            stem,
            options,
            lead=lead,
            batch=batch,
            names=lineup.names,
            labels=lineup.labels,
        )


class _OutputFolder:
    """``--out``: made only when a first file is about to be written, and taken away again
    (with the folders made above it) when nothing was written into it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._made: list[Path] = []  # the folders this run made, outermost first

    def unwritable(self) -> str | None:
        """Why files cannot be written into the folder, or None. To find out, the missing
        folders are made and a file is tried in the last; what was made is taken away."""
        try:
            self.make()
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except FileExistsError:
            return "exists and is not a folder"
        except NotADirectoryError:
            return "is not a folder"
        except OSError as failure:
            return f"cannot write there ({failure.strerror or failure})"
        finally:
            self.tidy()
        return None

    def make(self) -> None:
        """Make the folder and those missing above it."""
        missing = []
        folder = self.path
        while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        finally:  # those made, even when a deeper one could not be
            self._made.extend(made for made in reversed(missing) if made.is_dir())

    def tidy(self) -> None:
        """Take away the folders made here that are still empty, innermost first."""
        while self._made:
            try:
                self._made.pop().rmdir()
            except OSError:
                self._made.clear()  # not empty (or gone): keep it and those above it


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

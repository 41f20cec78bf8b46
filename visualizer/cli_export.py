"""``fmviz export``: every image through every network asked for, into one folder."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from models import MODEL_NAMES, WeightsError
from models.weights import PATH_SHOWN, shown
from visualizer.cli_progress import Progress
from visualizer.core import Analyzer, DeviceError, ImageLoadError, load_image
from visualizer.core.export import ExportOptions, export_result


def export_images(args: argparse.Namespace, *, error: Callable[[str], None]) -> int:
    """Export ``args.images`` to ``args.out``; 0 when all are done, 1 when any failed."""
    out: Path = args.out
    problem = _unwritable(out)
    if problem:
        error(f"{shown(out, PATH_SHOWN)}: {problem}")
        return 1
    try:
        analyzers = [
            Analyzer(name, args.weights, args.device)
            for name in (MODEL_NAMES if args.compare else [args.model])
        ]
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
    inputs = list(dict.fromkeys(args.images))  # the same argument twice is one input
    stems = _unique_stems(inputs)
    progress = Progress(len(inputs), label="")
    failures = written = 0
    for done, (path, stem) in enumerate(zip(inputs, stems, strict=True)):
        name = shown(path, PATH_SHOWN)
        progress.update(done, label=name)
        try:
            image = load_image(path)
            for analyzer in analyzers:
                result = analyzer.analyze(image, source=os.fspath(path))
                written += len(export_result(analyzer, result, out, stem, options))
        except ImageLoadError as failure:
            failures += 1
            progress.message(f"error: {failure}")
        except OSError as failure:
            failures += 1
            reason = failure.strerror or str(failure)
            progress.message(f"error: {name}: cannot write to {shown(out, PATH_SHOWN)} ({reason})")
    progress.close()
    for analyzer in analyzers:
        if analyzer.notice:
            print(f"note: {analyzer.notice}", flush=True)
    done_count = len(inputs) - failures
    print(f"exported {done_count} of {len(inputs)} images ({written} files) to {out}", flush=True)
    return 1 if failures else 0


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


def _unique_stems(paths: list[str]) -> list[str]:
    """File stems, with ``-2``, ``-3`` … added where two inputs share one."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = Path(path).stem or "image"
        count = seen.get(stem, 0) + 1
        seen[stem] = count
        stems.append(stem if count == 1 else f"{stem}-{count}")
    return stems

"""Writing results to files: tile grids and Grad-CAM overlays as PNG, timings as CSV.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees half a file and a failure leaves nothing behind. PNGs carry their provenance
as text chunks and are compressed at zlib level 1 (grids are palette images, one byte a pixel).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin

from models import STAGE_NAMES
from visualizer import __version__
from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.attribution import GradCam
from visualizer.core.render import ORDERS, SCALES, Grid, overlay, render_grid
from visualizer.core.timing import Timing

# Output names add up to 25 bytes to an image's stem ("_resnet101_gradcam_C5.png"), and their
# temporary names 15 more (".", ".1a2b3c4d.part"): longer stems are cut (fitting_stem), so that
# every name fits the 255 bytes a file system allows in one.
MAX_STEM_BYTES = 200
PNG_COMPRESS_LEVEL = 1  # zlib's fastest: 2× faster than the default for 5–10 % more bytes
GRADCAM_METHOD = (
    "Grad-CAM: Captum LayerGradCam (relu_attributions=True), bilinear upsampling "
    "(align_corners=False), min–max scaled to [0, 1]"
)


@dataclass(frozen=True)
class ExportOptions:
    """What ``export_result`` writes, and how it looks."""

    stages: Sequence[str] = STAGE_NAMES
    cam_stage: str | None = "C5"  # None: no Grad-CAM overlay
    target: int | None = None  # None: the top-1 class
    colormap: str = "viridis"
    cam_colormap: str = "turbo"
    opacity: float = 0.5
    scale: str = "channel"
    order: str = "index"


def fitting_stem(stem: str) -> str:
    """``stem`` cut, between characters, to at most MAX_STEM_BYTES bytes as a file name."""
    while len(os.fsencode(stem)) > MAX_STEM_BYTES:
        stem = stem[: -max(1, (len(os.fsencode(stem)) - MAX_STEM_BYTES) // 4)]
    return stem


def output_names(stem: str, model: str, options: ExportOptions) -> list[str]:
    """The file names ``export_result`` writes for an image named ``stem`` (cut to fit)."""
    stem = fitting_stem(stem)
    names = [f"{stem}_{model}_{stage}.png" for stage in options.stages]
    if options.cam_stage is not None:
        names.append(f"{stem}_{model}_gradcam_{options.cam_stage}.png")
    names.append(f"{stem}_{model}_timings.csv")
    return names


def export_result(
    analyzer: Analyzer,
    result: AnalysisResult,
    folder: str | os.PathLike[str],
    stem: str,
    options: ExportOptions = ExportOptions(),
    *,
    cams: Mapping[str, GradCam] | None = None,
) -> list[Path]:
    """Write the grids, the Grad-CAM overlay and the timings of ``result`` into ``folder``.

    ``cams``: Grad-CAMs of ``options.target`` already computed for the stages the options
    need (None: computed here). Returns the paths written, in the order of ``output_names``.
    Raises ``OSError`` when the folder cannot be written; files already written stay, none is
    left half-written.
    """
    folder = Path(folder)
    names = iter(output_names(stem, result.model, options))
    if cams is None:
        wanted = {options.cam_stage} if options.cam_stage else set()
        if options.order == "gradcam":
            wanted |= set(options.stages)
        cams = analyzer.gradcams(result, sorted(wanted), options.target) if wanted else {}
    written = []
    for stage in options.stages:
        grid = stage_grid(result, stage, options, cams)
        written.append(save_grid(folder / next(names), result, stage, grid))
    if options.cam_stage is not None:
        cam = cams[options.cam_stage]
        label = analyzer.categories[cam.target]
        written.append(save_overlay(folder / next(names), result, cam, label, options))
    written.append(save_timings(folder / next(names), result.timings))
    return written


def stage_grid(
    result: AnalysisResult, stage: str, options: ExportOptions, cams: Mapping[str, GradCam]
) -> Grid:
    """The tile grid of ``stage`` as ``options`` ask; ordered by Grad-CAM weight, from ``cams``
    (which then must hold ``stage``)."""
    weights = cams[stage].channel_weights if options.order == "gradcam" else None
    return render_grid(
        result.stages[stage],
        colormap=options.colormap,
        scale=options.scale,
        order=options.order,
        weights=weights,
    )


def save_grid(path: str | os.PathLike[str], result: AnalysisResult, stage: str, grid: Grid) -> Path:
    """Write a stage grid of ``result`` as ``fmviz export`` does (palette PNG, metadata)."""
    return save_png(path, grid.to_image(), grid_metadata(result, stage, grid))


def save_overlay(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    cam: GradCam,
    label: str,
    options: ExportOptions = ExportOptions(),
) -> Path:
    """Write the Grad-CAM ``cam`` (of class ``label``) over the input, as ``fmviz export`` does.

    ``options`` gives the colormap and opacity.
    """
    picture = overlay(result.view, cam.map, opacity=options.opacity, colormap=options.cam_colormap)
    metadata = {
        **result_metadata(result),
        "stage": cam.stage,
        "method": GRADCAM_METHOD,
        "target": f"{cam.target} {label}",
        "colormap": options.cam_colormap,
        "opacity": f"{options.opacity:g}",
        "normalisation": "min–max to [0, 1]",
    }
    return save_png(path, Image.fromarray(picture, "RGB"), metadata)


def result_metadata(result: AnalysisResult) -> dict[str, str]:
    """Where a picture comes from: program, model, weights, image, preprocessing, device."""
    return {
        "software": f"fmviz {__version__}",
        "model": result.model,
        "weights": result.weights,
        "source": result.source,
        "preprocessing": result.preprocessing,
        "device": result.device,
    }


def grid_metadata(result: AnalysisResult, stage: str, grid: Grid) -> dict[str, str]:
    """PNG text chunks of a stage grid."""
    layout = grid.layout
    channels, height, width = result.stages[stage].shape
    return {
        **result_metadata(result),
        "stage": stage,
        "channels": str(channels)
        if len(layout.order) == channels
        else f"{len(layout.order)} of {channels}",
        "layout": (
            f"{layout.rows} rows × {layout.columns} columns of {height}×{width} tiles, "
            f"{layout.gutter}-pixel gutter, row by row"
        ),
        "normalisation": SCALES[grid.scale],
        "colormap": grid.colormap,
        "channel order": ORDERS.get(grid.order, "as listed")
        + _order_list(layout.order, grid.order),
    }


def save_png(path: str | os.PathLike[str], image: Image.Image, metadata: Mapping[str, str]) -> Path:
    """Write ``image`` as a PNG with ``metadata`` as text chunks, atomically."""
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        # Latin-1 as tEXt, anything else as UTF-8 iTXt.
        info.add_text(key, _escaped(value))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return write_atomically(path, buffer.getbuffer())


def _escaped(text: str) -> str:
    """``text`` with every character that is not printable escaped as Python writes it.

    A file name may hold newlines, terminal escapes or (held as surrogates) bytes that are not
    UTF-8: in a PNG text chunk they read back as one line, ``\\n``, ``\\x1b``, ``\\udce9``.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def save_timings(path: str | os.PathLike[str], timings: Sequence[Timing]) -> Path:
    """Write per-layer timings as CSV (``layer,type,milliseconds``), atomically."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["layer", "type", "milliseconds"])
    writer.writerows((name, kind, f"{ms:.4f}") for name, kind, ms in timings)
    return write_atomically(path, text.getvalue().encode())


def write_atomically(path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Raises:
        OSError: naming ``path`` (not the temporary file, which is gone).
    """
    path = Path(path)
    temporary: Path | None = None
    try:
        temporary, handle = _new_temporary(path)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise type(error)(error.errno, error.strerror or str(error), str(path)) from None
    except BaseException:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise
    return path


def _new_temporary(path: Path) -> tuple[Path, int]:
    """A new hidden file beside ``path``, created with the usual permissions (umask applies)."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def _order_list(order: tuple[int, ...], by: str) -> str:
    if by == "index" and order == tuple(range(len(order))):
        return ""
    return ": " + " ".join(str(channel) for channel in order)

"""Writing results to files: tile grids and Grad-CAM overlays as PNG (raw, and annotated
figures on request), timings as CSV.

All of an export's files or none. Each file is written to a temporary name in the same folder
(`WriteBatch`); only when every one is written are they renamed into place, one after the
other. A failure while writing (a full disk, an interruption) removes the temporaries: the
folder is as it was, and files the export would have replaced keep their old content. A
failure while renaming (rare: a folder or a locked file in the way) takes back the files
already renamed and puts the old ones back (kept meanwhile under a second name, a hard link;
where the file system has no hard links, a replaced file is removed rather than restored). A
reader never sees half a file. PNGs carry their provenance as text chunks and are compressed
at zlib level 1 (grids are palette images, one byte a pixel).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from PIL import Image, PngImagePlugin

from models import STAGE_NAMES
from visualizer import __version__
from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.attribution import GradCam
from visualizer.core.figure import figure_info, grid_figure, overlay_figure
from visualizer.core.render import ORDERS, SCALES, Grid, overlay, render_grid
from visualizer.core.timing import Timing

# Output names add up to 35 bytes to an image's stem ("_resnet101_gradcam_C5_annotated.png"),
# and their temporary names 15 more (".", ".1a2b3c4d.part"): longer stems are cut
# (fitting_stem), so that every name fits the 255 bytes a file system allows in one.
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
    # Also write each picture as an annotated figure (figure.py): title, colour bar, channel
    # numbers, "untrained weights"; the raw files stay as they are.
    annotate: bool = False


def fitting_stem(stem: str) -> str:
    """``stem`` cut, between characters, to at most MAX_STEM_BYTES bytes as a file name."""
    while len(os.fsencode(stem)) > MAX_STEM_BYTES:
        stem = stem[: -max(1, (len(os.fsencode(stem)) - MAX_STEM_BYTES) // 4)]
    return stem


def output_names(stem: str, model: str, options: ExportOptions) -> list[str]:
    """The file names ``export_result`` writes for an image named ``stem`` (cut to fit)."""
    stem = fitting_stem(stem)
    pictures = [f"{stem}_{model}_{stage}" for stage in options.stages]
    if options.cam_stage is not None:
        pictures.append(f"{stem}_{model}_gradcam_{options.cam_stage}")
    names = []
    for picture in pictures:
        names.append(f"{picture}.png")
        if options.annotate:
            names.append(f"{picture}_annotated.png")
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
    batch: WriteBatch | None = None,
    name: str | None = None,
) -> list[Path]:
    """Write the grids, the Grad-CAM overlay and the timings of ``result`` into ``folder``;
    with ``options.annotate``, an annotated figure beside each grid and the overlay.

    ``cams``: Grad-CAMs of ``options.target`` already computed for the stages the options
    need (None: computed here). ``name``: the network's name in the file names (default:
    ``result.model``, as DESIGN §4 names them; a comparison of one architecture twice tells
    its two networks apart with ``visualizer.networks.network_names``). The folder must exist.
    Class labels are ``analyzer.categories`` (a labels file's, the checkpoint's, ImageNet's).

    All the files or none: each is written under a temporary name and all are renamed into
    place at the end (`WriteBatch`); a failure leaves the folder as it was, old files
    included. With ``batch``, the files join it instead, to be put in place (or taken away)
    with the caller's other files when the caller's batch ends.

    Returns:
        The paths, in the order of ``output_names``.

    Raises:
        OSError: a file could not be written (the error names it); nothing of the call is left.
    """
    folder = Path(folder)
    names = iter(output_names(stem, name or result.model, options))
    if cams is None:
        wanted = {options.cam_stage} if options.cam_stage else set()
        if options.order == "gradcam":
            wanted |= set(options.stages)
        cams = analyzer.gradcams(result, sorted(wanted), options.target) if wanted else {}
    written = []
    with writing_into(batch) as files:
        for stage in options.stages:
            grid = stage_grid(result, stage, options, cams)
            written.append(save_grid(folder / next(names), result, stage, grid, batch=files))
            if options.annotate:
                ordered_by = None
                if options.order == "gradcam":
                    ordered_by = (cams[stage].target, analyzer.categories[cams[stage].target])
                path = folder / next(names)
                written.append(
                    save_grid_figure(path, result, stage, grid, order_class=ordered_by, batch=files)
                )
        if options.cam_stage is not None:
            cam = cams[options.cam_stage]
            label = analyzer.categories[cam.target]
            path = folder / next(names)
            written.append(save_overlay(path, result, cam, label, options, batch=files))
            if options.annotate:
                path = folder / next(names)
                written.append(save_overlay_figure(path, result, cam, label, options, batch=files))
        written.append(save_timings(folder / next(names), result.timings, batch=files))
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


def save_grid(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    stage: str,
    grid: Grid,
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write a stage grid of ``result`` as ``fmviz export`` does (palette PNG, metadata).

    ``batch``: as for ``save_png``."""
    return save_png(path, grid.to_image(), grid_metadata(result, stage, grid), batch=batch)


def save_grid_figure(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    stage: str,
    grid: Grid,
    *,
    order_class: tuple[int, str] | None = None,
    batch: WriteBatch | None = None,
) -> Path:
    """Write the annotated figure of a stage grid (``figure.grid_figure``) as an RGB PNG.

    Its text chunks are the grid's (``grid_metadata``) and the figure's: ``title``,
    ``caption``, ``placement`` and, only when the network is untrained, ``warning``.
    ``order_class``: as for ``grid_figure``; ``batch``: as for ``save_png``.
    """
    figure = grid_figure(result, stage, grid, order_class=order_class)
    metadata = {**grid_metadata(result, stage, grid), **figure_info(figure).metadata()}
    return save_png(path, figure, metadata, batch=batch)


def save_overlay(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    cam: GradCam,
    label: str,
    options: ExportOptions = ExportOptions(),
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write the Grad-CAM ``cam`` (of class ``label``) over the input, as ``fmviz export`` does.

    ``options`` gives the colormap and opacity; ``batch``: as for ``save_png``.
    """
    picture = overlay(result.view, cam.map, opacity=options.opacity, colormap=options.cam_colormap)
    metadata = overlay_metadata(result, cam, label, options)
    return save_png(path, Image.fromarray(picture, "RGB"), metadata, batch=batch)


def save_overlay_figure(
    path: str | os.PathLike[str],
    result: AnalysisResult,
    cam: GradCam,
    label: str,
    options: ExportOptions = ExportOptions(),
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write the annotated figure of a Grad-CAM overlay (``figure.overlay_figure``) as a PNG.

    Its text chunks are the overlay's (``overlay_metadata``) and the figure's, as for
    ``save_grid_figure``.
    """
    figure = overlay_figure(
        result, cam, label, colormap=options.cam_colormap, opacity=options.opacity
    )
    metadata = {**overlay_metadata(result, cam, label, options), **figure_info(figure).metadata()}
    return save_png(path, figure, metadata, batch=batch)


def overlay_metadata(
    result: AnalysisResult, cam: GradCam, label: str, options: ExportOptions
) -> dict[str, str]:
    """PNG text chunks of a Grad-CAM overlay: ``result_metadata``'s, the stage, the method,
    ``target`` (``"<index> <label>"``, the label as the network's labels name it), the
    colormap, the opacity and the normalisation."""
    return {
        **result_metadata(result),
        "stage": cam.stage,
        "method": GRADCAM_METHOD,
        "target": f"{cam.target} {label}",
        "colormap": options.cam_colormap,
        "opacity": f"{options.opacity:g}",
        "normalisation": "min–max to [0, 1]",
    }


def result_metadata(result: AnalysisResult) -> dict[str, str]:
    """Where a picture comes from: program, model, weights, image, preprocessing, device, and
    the network's classes.

    ``preprocessing`` is what made the input (the network's own mean, std and sizes where it
    has them); ``input`` its ``channels×height×width``; ``classes`` the number of classes;
    ``labels`` where their names come from (``result.labels_source``); ``scores`` how a logit
    becomes a probability (``softmax`` over the classes, or the ``sigmoid`` of a one-output
    head).
    """
    channels, height, width = result.input.shape[-3:]
    return {
        "software": f"fmviz {__version__}",
        "model": result.model,
        "weights": result.weights,
        "source": result.source,
        "preprocessing": str(result.preprocessing),
        "input": f"{channels}×{height}×{width}",
        "classes": str(result.classes),
        "labels": result.labels_source,
        "scores": score_words(result),
        "device": result.device,
    }


def score_words(result: AnalysisResult) -> str:
    """How ``result``'s probabilities are made from its logits, in words."""
    if result.scores == "sigmoid":
        return "sigmoid of the one output (a binary classifier's probability)"
    return f"softmax over the {result.classes} classes"


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


def save_png(
    path: str | os.PathLike[str],
    image: Image.Image,
    metadata: Mapping[str, str],
    *,
    batch: WriteBatch | None = None,
) -> Path:
    """Write ``image`` as a PNG with ``metadata`` as text chunks, atomically; with ``batch``,
    as one of its files (in place when the batch is committed)."""
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        # Latin-1 as tEXt, anything else as UTF-8 iTXt.
        info.add_text(key, _escaped(value))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return _write(path, buffer.getbuffer(), batch)


def _escaped(text: str) -> str:
    """``text`` with every character that is not printable escaped as Python writes it.

    A file name may hold newlines, terminal escapes or (held as surrogates) bytes that are not
    UTF-8: in a PNG text chunk they read back as one line, ``\\n``, ``\\x1b``, ``\\udce9``.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def save_timings(
    path: str | os.PathLike[str], timings: Sequence[Timing], *, batch: WriteBatch | None = None
) -> Path:
    """Write per-layer timings as CSV (``layer,type,milliseconds``), atomically; ``batch``: as
    for ``save_png``."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["layer", "type", "milliseconds"])
    writer.writerows((name, kind, f"{ms:.4f}") for name, kind, ms in timings)
    return _write(path, text.getvalue().encode(), batch)


def write_atomically(path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Raises:
        OSError: naming ``path`` (not the temporary file, which is gone); an old file at
            ``path`` is then unchanged.
    """
    with WriteBatch() as batch:
        batch.write(path, data)
    return Path(path)


class WriteBatch:
    """Files that appear together or not at all.

    ``write`` puts each file's bytes in a new hidden temporary beside its place; ``commit``
    renames them all into place, in the order written; ``discard`` removes the temporaries.
    As a context manager, a batch commits when its block ends normally and discards when it
    ends by an exception (``KeyboardInterrupt`` included), which then goes on.

    If a rename fails, the files renamed before it are taken back: each file they replaced is
    restored from a hard link made before the rename (``.<name>.<hex>.old``; none where the
    file system cannot link, and then the new file is removed, the old one lost) and each new
    one removed. The error names the file whose rename failed.

    Examples::

        with WriteBatch() as batch:
            save_png(folder / "a.png", picture, {}, batch=batch)
            save_timings(folder / "a.csv", timings, batch=batch)
        batch.committed  # both paths, now in place
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []  # (temporary, final place)
        self.committed: list[Path] = []  # the files put in place, after commit

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def write(self, path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
        """Write ``data`` to a temporary for ``path``; ``path`` is what ``commit`` will make.

        Raises:
            OSError: naming ``path``; the temporary is gone (the batch's others stay, for the
                caller to discard).
        """
        path = Path(path)
        temporary: Path | None = None
        try:
            temporary, handle = _new_temporary(path)
            with os.fdopen(handle, "wb") as file:
                file.write(data)
        except BaseException as error:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise _naming(error, path) from None
            raise
        self._pending.append((temporary, path))
        return path

    def commit(self) -> list[Path]:
        """Rename every file written into place; the paths, in order.

        Raises:
            OSError: a rename failed (naming its file); the folder is then as it was.
        """
        pending, self._pending = self._pending, []
        done: list[tuple[Path, Path | None]] = []  # (place, hard link to the file it replaced)
        path = None
        try:
            for temporary, path in pending:
                backup = _hard_link(path)
                try:
                    os.replace(temporary, path)
                except BaseException:
                    if backup is not None:
                        backup.unlink(missing_ok=True)
                    raise
                done.append((path, backup))
        except BaseException as error:
            _take_back(done)
            for temporary, _ in pending:  # those renamed are gone already
                temporary.unlink(missing_ok=True)
            if isinstance(error, OSError) and path is not None:
                raise _naming(error, path) from None
            raise
        for _, backup in done:
            if backup is not None:
                backup.unlink(missing_ok=True)
        self.committed.extend(place for place, _ in done)
        return [place for place, _ in done]

    def discard(self) -> None:
        """Remove every temporary written; nothing of the batch is left."""
        pending, self._pending = self._pending, []
        for temporary, _ in pending:
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def writing_into(batch: WriteBatch | None) -> Iterator[WriteBatch]:
    """``batch``, left to its owner to commit; or, when None, a batch of its own, committed
    when the block ends normally and discarded otherwise."""
    if batch is not None:
        yield batch
        return
    with WriteBatch() as own:
        yield own


def _write(
    path: str | os.PathLike[str], data: bytes | memoryview, batch: WriteBatch | None
) -> Path:
    return batch.write(path, data) if batch is not None else write_atomically(path, data)


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` as the same kind of error, naming ``path`` (not a temporary)."""
    return type(error)(error.errno, error.strerror or str(error), str(path))


def _hard_link(path: Path) -> Path | None:
    """A second name (``.<name>.<hex>.old``) for the file at ``path``, so that it can be put
    back after ``path`` is replaced; None when there is no file or no way to link it."""
    if not path.is_file():
        return None
    backup = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
    try:
        os.link(path, backup)
    except OSError:
        return None
    return backup


def _take_back(done: list[tuple[Path, Path | None]]) -> None:
    """Undo renames: the old file back where one was, else the new file removed."""
    for place, backup in reversed(done):
        try:
            if backup is not None:
                os.replace(backup, place)
            else:
                place.unlink(missing_ok=True)
        except OSError:
            continue  # as much as can be undone


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

"""Two networks on one image, side by side: one PNG (stage grids, Grad-CAMs, top-k) and one
CSV (shape, time and parameters of each stage of both networks).

The two may be the two architectures, or one architecture with two sets of weights (ImageNet
against a fine-tuned checkpoint, epoch 5 against epoch 50). Networks with the same class list
(both ImageNet's 1000, say) answer the same question: their Grad-CAMs explain one class, the
one asked for or the lead network's top-1. Networks with different class lists cannot: each
explains its own class (the lead the one asked for, else its top-1; the other its top-1), and
the PNG says so in a line.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from models import STAGE_NAMES
from visualizer import __version__
from visualizer.choices import MODEL_LABELS
from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.attribution import GradCam
from visualizer.core.export import (
    GRADCAM_METHOD,
    ExportOptions,
    WriteBatch,
    save_png,
    stage_grid,
    write_atomically,
    writing_into,
)
from visualizer.core.figure import (
    ALERT,
    INK,
    MUTED,
    PAPER,
    class_standing,
    draw_banner,
    fitted,
    font,
    percent,
    untrained_warning,
)
from visualizer.core.render import ORDERS, SCALES, Grid, overlay
from visualizer.core.stage_summary import StageRow, stage_rows
from visualizer.networks import numbered

COLUMN = 880  # pixels: each network's grid fits a COLUMN × COLUMN box
MARGIN, GAP = 28, 36
OVERLAY = 360
LABEL = 36  # the row of a side's label: a red band there when its network is untrained
CAPTION = 64  # the two lines above each Grad-CAM: its class, and that class's probability there


@dataclass(frozen=True, eq=False)
class ComparedSide:
    """One network's half of a comparison: its analysis, the stage's grid and its Grad-CAM.

    ``name``: the network as the comparison names it (``network_labels``: ``"ResNet101 ·
    ImageNet"`` beside ``"ResNet101 · ft5.pth"``); None: its architecture (``"VGG16"``).
    ``class_label``: the label of the class ``cam`` explains, in this network's own labels;
    None: the label the caller gives for the shared class (``save_comparison``).
    """

    result: AnalysisResult
    grid: Grid  # the stage shown
    stage: str
    cam: GradCam  # of the class this side explains (the shared one, or its own)
    rows: tuple[StageRow, ...]  # C1–C5 and the head
    name: str | None = None
    class_label: str | None = None

    @property
    def label(self) -> str:
        """The network's name in the picture and its text: ``name``, else the architecture."""
        return self.name or MODEL_LABELS.get(self.result.model, self.result.model)

    @property
    def total_ms(self) -> float:
        return sum(row.ms for row in self.rows)

    @property
    def parameters(self) -> int:
        return sum(row.parameters for row in self.rows)


def result_labels(results: Sequence[AnalysisResult]) -> tuple[str, ...]:
    """Names for the networks of ``results`` when none are given: the architecture
    (``"VGG16"``), with the weights in words where one architecture is there twice."""
    models = [MODEL_LABELS.get(result.model, result.model) for result in results]
    if len(set(models)) == len(models):
        return tuple(models)
    return numbered([f"{m} · {r.weights}" for m, r in zip(models, results, strict=True)])


def shares_classes(analyzers: Sequence[Analyzer]) -> bool:
    """True when every network has the same class list (``categories``): then one class is
    explained for all."""
    return all(analyzer.categories == analyzers[0].categories for analyzer in analyzers)


def shared_target(results: Sequence[AnalysisResult], target: int | None, lead: int = 0) -> int:
    """The class both Grad-CAMs explain: ``target``, else the top-1 of ``results[lead]``."""
    return results[lead].topk[0][0] if target is None else target


def side_targets(
    analyzers: Sequence[Analyzer],
    results: Sequence[AnalysisResult],
    target: int | None,
    lead: int = 0,
) -> list[int]:
    """The class each network's Grad-CAM explains: all the same (``shared_target``) when the
    networks share their class list; otherwise each its own: ``results[lead]``'s network
    ``target`` (else its top-1), the others their top-1."""
    if shares_classes(analyzers):
        return [shared_target(results, target, lead)] * len(results)
    return [
        target if index == lead and target is not None else result.topk[0][0]
        for index, result in enumerate(results)
    ]


def disagreement(
    results: Sequence[AnalysisResult], labels: Sequence[str] | None = None
) -> str | None:
    """A sentence naming each network's top-1 class when they are not all the same, else None.

    ``labels``: the networks' names (default: ``result_labels``)."""
    if len({result.topk[0][0] for result in results}) < 2:
        return None
    names = labels or result_labels(results)
    tops = [
        f"{name}: {index} {label} ({percent(p)})"
        for name, result in zip(names, results, strict=True)
        for index, label, p in result.topk[:1]
    ]
    return "The top-1 classes differ: " + "; ".join(tops) + "."


def own_classes_note(sides: Sequence[ComparedSide], target_label: str = "") -> str:
    """The line a comparison of networks with different class lists carries: each Grad-CAM
    explains its own network's class, named."""
    explained = "; ".join(
        f"{side.label}: {side.cam.target} {side.class_label or target_label}" for side in sides
    )
    return (
        "The networks have different classes: each Grad-CAM explains its own network's class "
        f"({explained})."
    )


def comparison_names(stem: str, stages: Sequence[str]) -> list[str]:
    """The files ``export_comparison`` writes for an image named ``stem``."""
    return [f"{stem}_compare_{stage}.png" for stage in stages] + [f"{stem}_compare_timings.csv"]


def cam_stages(options: ExportOptions, stages: Sequence[str]) -> list[str]:
    """The stages whose Grad-CAMs a comparison of ``stages`` needs."""
    wanted = {options.cam_stage or STAGE_NAMES[-1]}
    if options.order == "gradcam":  # the tiles are ordered by each stage's Grad-CAM weights
        wanted |= set(stages)
    return sorted(wanted)


def compare(
    analyzers: Sequence[Analyzer],
    results: Sequence[AnalysisResult],
    cams: Sequence[Mapping[str, GradCam]],
    stage: str,
    options: ExportOptions,
    *,
    labels: Sequence[str] | None = None,
) -> list[ComparedSide]:
    """Each network's side of a comparison at ``stage``.

    ``cams``: per network, Grad-CAMs of the class it explains (``side_targets``) at the
    stages of ``cam_stages``. ``labels``: the networks' names in the picture (default: their
    architectures, ``result_labels``). Each side's ``class_label`` is its own analyzer's label
    of its class.
    """
    names = labels or result_labels(results)
    sides = []
    for analyzer, result, maps, name in zip(analyzers, results, cams, names, strict=True):
        grid = stage_grid(result, stage, options, maps)
        cam = maps[options.cam_stage or STAGE_NAMES[-1]]
        rows = stage_rows(analyzer.model, result)
        own = analyzer.categories[cam.target]
        sides.append(ComparedSide(result, grid, stage, cam, rows, name, own))
    return sides


def export_comparison(
    analyzers: Sequence[Analyzer],
    results: Sequence[AnalysisResult],
    folder: str | os.PathLike[str],
    stem: str,
    options: ExportOptions = ExportOptions(),
    *,
    lead: int = 0,
    cams: Sequence[Mapping[str, GradCam]] | None = None,
    batch: WriteBatch | None = None,
    names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """Write a comparison PNG per stage of ``options.stages`` and the timing CSV to ``folder``.

    Networks with the same class list explain one class: ``options.target``, else the top-1
    class of ``results[lead]``. Networks with different ones explain each its own
    (``side_targets``: the lead ``options.target``, else its top-1; the others their top-1),
    and the PNG says so. ``cams`` may give the Grad-CAMs (as for ``compare``), else they are
    computed here, one pass per network. ``names``: the networks' names in the CSV's columns
    (default: their architectures, numbered when the same); ``labels``: in the PNG (default:
    ``result_labels``; ``network_labels`` makes them from the networks' specs).

    All the files or none: each is written under a temporary name and all are renamed into
    place at the end (see ``export.WriteBatch``); a failure leaves the folder as it was. With
    ``batch``, the files join it instead, to be put in place when the caller's batch is.

    Returns:
        The paths, in the order of ``comparison_names``.

    Raises:
        OSError: a file could not be written (naming it); nothing of the call is left.
    """
    folder = Path(folder)
    own = not shares_classes(analyzers)
    targets = side_targets(analyzers, results, options.target, lead)
    if cams is None:
        wanted = cam_stages(options, options.stages)
        cams = [
            a.gradcams(r, wanted, t) for a, r, t in zip(analyzers, results, targets, strict=True)
        ]
    label = analyzers[lead].categories[targets[lead]]
    files_named = comparison_names(stem, options.stages)
    written = []
    with writing_into(batch) as files:
        for stage, name in zip(options.stages, files_named, strict=False):
            sides = compare(analyzers, results, cams, stage, options, labels=labels)
            path = folder / name
            written.append(
                save_comparison(path, sides, label, options, batch=files, own_classes=own)
            )
        rows = [stage_rows(a.model, r) for a, r in zip(analyzers, results, strict=True)]
        path = folder / files_named[-1]
        written.append(save_comparison_timings(path, results, rows, batch=files, names=names))
    return written


def save_comparison(
    path: str | os.PathLike[str],
    sides: Sequence[ComparedSide],
    target_label: str,
    options: ExportOptions = ExportOptions(),
    *,
    batch: WriteBatch | None = None,
    own_classes: bool | None = None,
) -> Path:
    """Write the comparison of ``sides`` as one PNG, with its provenance as text chunks.

    ``target_label``: the label of the shared class (a side's own ``class_label`` wins).
    ``own_classes``: True when the networks have different class lists and each Grad-CAM
    explains its own network's class; None: so when the sides explain different classes or
    their networks have different numbers of classes.

    Besides the provenance: ``title``; ``target``, ``"<index> <label>"`` of the shared class,
    or each side's joined by `` | `` with ``own_classes``; ``classes``, each network's number
    of classes and where their labels come from; ``explained``, whether one class is explained
    for both or each its own; ``<network> class``, that class's probability and rank in each
    network; ``note``, the line saying each explains its own class (``own_classes`` only);
    ``warning``, only when a network is untrained, naming it. ``batch``: as for
    ``export.save_png``.
    """
    first = sides[0]
    own = _own_classes(sides, target_label) if own_classes is None else own_classes
    targets = [f"{side.cam.target} {side.class_label or target_label}" for side in sides]
    metadata = {
        "software": f"fmviz {__version__}",
        "model": " | ".join(side.label for side in sides),
        "weights": " | ".join(side.result.weights for side in sides),
        "source": first.result.source,
        "preprocessing": " | ".join(str(side.result.preprocessing) for side in sides),
        "classes": " | ".join(
            f"{side.result.classes} ({side.result.labels_source})" for side in sides
        ),
        "device": " | ".join(side.result.device for side in sides),
        "stage": first.stage,
        "colormap": first.grid.colormap,
        "normalisation": SCALES[first.grid.scale],
        "channel order": ORDERS.get(first.grid.order, "as listed"),
        "gradcam stage": first.cam.stage,
        "target": " | ".join(targets) if own else targets[0],
        "explained": (
            "each network its own class (different class lists)"
            if own
            else "one class for both networks"
        ),
        "method": GRADCAM_METHOD,
    }
    metadata["title"] = comparison_title(sides, target_label, own_classes=own)
    if own:
        metadata["note"] = own_classes_note(sides, target_label)
    for side in sides:
        metadata[f"{side.label} class"] = _standing(side, side.class_label or target_label)
        order = side.grid.layout.order  # which channel each tile shows, when not in index order
        if order != tuple(range(len(order))):
            metadata[f"{side.label} channels"] = " ".join(map(str, order))
    warnings = [f"{side.label}: {untrained_warning(side.result)}" for side in sides]
    untrained = [
        text for side, text in zip(sides, warnings, strict=True) if not side.result.trained
    ]
    if untrained:
        metadata["warning"] = "; ".join(untrained)
    picture = render_comparison(sides, target_label, options, own_classes=own)
    return save_png(path, picture, metadata, batch=batch)


def _own_classes(sides: Sequence[ComparedSide], target_label: str) -> bool:
    """Whether ``sides`` explain each its own class: different classes or labels, or
    networks with different numbers of classes."""
    explained = {(side.cam.target, side.class_label or target_label) for side in sides}
    return len(explained) > 1 or len({side.result.logits.numel() for side in sides}) > 1


def save_comparison_timings(
    path: str | os.PathLike[str],
    results: Sequence[AnalysisResult],
    rows: Sequence[Sequence[StageRow]],
    *,
    batch: WriteBatch | None = None,
    names: Sequence[str] | None = None,
) -> Path:
    """Write C1–C5 and the head of each network (``rows`` of each of ``results``) as CSV:
    output shape, milliseconds and parameters per network, then a ``total`` row.

    Columns are ``<name>_shape``, ``<name>_ms``, ``<name>_parameters``, with each network's
    name from ``names`` (default: its architecture, ``-1``, ``-2`` added when both are the
    same). ``batch``: as for ``export.save_png``."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    header = ["stage"]
    if names is None:
        models = [result.model for result in results]
        unique = len(set(models)) == len(models)
        names = models if unique else [f"{m}-{n}" for n, m in enumerate(models, 1)]
    for name in names:
        header += [f"{name}_{what}" for what in ("shape", "ms", "parameters")]
    writer.writerow(header)
    for index, row in enumerate(rows[0]):
        cells = [row.stage]
        for own in rows:
            cell = own[index]
            cells += ["x".join(map(str, cell.shape)), f"{cell.ms:.4f}", str(cell.parameters)]
        writer.writerow(cells)
    totals = ["total"]
    for own in rows:
        totals += ["", f"{sum(r.ms for r in own):.4f}"]
        totals.append(str(sum(r.parameters for r in own)))
    writer.writerow(totals)
    data = text.getvalue().encode()
    return batch.write(path, data) if batch is not None else write_atomically(path, data)


def comparison_title(
    sides: Sequence[ComparedSide], target_label: str, *, own_classes: bool = False
) -> str:
    """The comparison's headline: image, stage, and the class both Grad-CAMs explain (with
    ``own_classes``: that each explains its own network's class)."""
    first = sides[0]
    name = Path(first.result.source).name
    cam = first.cam
    if own_classes:
        return f"{name} · stage {first.stage} · Grad-CAM of each network's class at {cam.stage}"
    label = first.class_label or target_label
    return f"{name} · stage {first.stage} · Grad-CAM of {cam.target} {label} at {cam.stage}"


def render_comparison(
    sides: Sequence[ComparedSide],
    target_label: str,
    options: ExportOptions = ExportOptions(),
    *,
    own_classes: bool | None = None,
) -> Image.Image:
    """The comparison as an RGB picture: per network a red "untrained weights" band when it is
    untrained, its label, the stage grid, the class its Grad-CAM explains with that class's
    probability and rank in this network, the Grad-CAM and the top-k; then the per-stage table
    of both. Below the title, a line: that each Grad-CAM explains its own network's class
    (``own_classes``; None: as ``save_comparison`` decides), else, when the top-1 classes
    differ, both of them."""
    first = sides[0]
    own = _own_classes(sides, target_label) if own_classes is None else own_classes
    width = MARGIN * 2 + COLUMN * len(sides) + GAP * (len(sides) - 1)
    table_top = MARGIN + 96 + 70 + COLUMN + 16 + CAPTION + OVERLAY + 28
    height = table_top + 34 * (len(first.rows) + 2) + MARGIN
    canvas = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(canvas)
    title = comparison_title(sides, target_label, own_classes=own)
    draw.text(
        (MARGIN, MARGIN), fitted(title, font(30), width - 2 * MARGIN), fill=INK, font=font(30)
    )
    if own:
        note = own_classes_note(sides, target_label)
    else:
        note = disagreement([side.result for side in sides], [side.label for side in sides])
    if note:
        face = font(22)
        draw.text(
            (MARGIN, MARGIN + 44), fitted(note, face, width - 2 * MARGIN), fill=ALERT, font=face
        )
    for index, side in enumerate(sides):
        left = MARGIN + index * (COLUMN + GAP)
        top = MARGIN + 96
        label = side.class_label or target_label
        _draw_side(canvas, draw, side, label, left=left, top=top, options=options)
    _draw_table(draw, sides, table_top)
    return canvas


def _standing(side: ComparedSide, target_label: str) -> str:
    """The explained class in one network: ``"7 cock: 0.12 %, rank 212 of 1000"``."""
    probability, rank, classes = class_standing(side.result, side.cam.target)
    return f"{side.cam.target} {target_label}: {percent(probability)}, rank {rank} of {classes}"


def _draw_side(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    side: ComparedSide,
    target_label: str,
    *,
    left: int,
    top: int,
    options: ExportOptions,
) -> None:
    channels, height, width = side.result.stages[side.stage].shape
    if side.result.trained:
        draw.text((left, top), fitted(side.label, font(30), COLUMN), fill=INK, font=font(30))
    else:  # the label on a red band that says so
        text = f"{side.label} · untrained weights: random, no learned features"
        draw_banner(draw, (left, top - 2, left + COLUMN - 1, top + LABEL - 2), text, 24)
    shown = len(side.grid.layout.order)
    detail = (
        f"{side.stage}: {shown} of {channels} channels, {height}x{width} each · "
        f"{side.total_ms:.0f} ms · {side.parameters / 1e6:.1f} M parameters"
    )
    draw.text((left, top + 40), detail, fill=MUTED, font=font(20))
    grid = side.grid.to_image().convert("RGB")
    scale = min(COLUMN / grid.width, COLUMN / grid.height)
    size = (max(1, round(grid.width * scale)), max(1, round(grid.height * scale)))
    fit = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
    canvas.paste(grid.resize(size, fit), (left, top + 70))
    probability, rank, classes = class_standing(side.result, side.cam.target)
    what = f"Grad-CAM at {side.cam.stage} of class {side.cam.target} {target_label}"
    where = f"{side.label} gives this class {percent(probability)}: rank {rank} of {classes}"
    caption_top = top + 70 + COLUMN + 16
    draw.text(
        (left, caption_top),
        fitted(what, font(22, bold=True), COLUMN),
        fill=INK,
        font=font(22, bold=True),
    )
    draw.text((left, caption_top + 30), fitted(where, font(20), COLUMN), fill=INK, font=font(20))
    below = top + 70 + COLUMN + 16 + CAPTION
    heat = overlay(
        side.result.view, side.cam.map, opacity=options.opacity, colormap=options.cam_colormap
    )
    picture = Image.fromarray(heat, "RGB").resize((OVERLAY, OVERLAY), Image.Resampling.BILINEAR)
    canvas.paste(picture, (left, below))
    heading = f"Top-{len(side.result.topk)}"
    if side.result.scores == "sigmoid":
        heading += " (sigmoid of the one output)"
    draw.text((left + OVERLAY + 20, below), heading, fill=INK, font=font(22))
    room = COLUMN - OVERLAY - 20
    for rank, (index, label, probability) in enumerate(side.result.topk):
        mark = "> " if index == side.cam.target else "   "
        line = fitted(f"{mark}{probability * 100:5.1f} %  {label} ({index})", font(20), room)
        colour = INK if index == side.cam.target else MUTED
        draw.text((left + OVERLAY + 20, below + 36 + 30 * rank), line, fill=colour, font=font(20))


def _draw_table(draw: ImageDraw.ImageDraw, sides: Sequence[ComparedSide], top: int) -> None:
    header = ["stage"]
    for side in sides:
        header += [f"{side.label} output", "ms", "parameters"]
    rows = [header]
    for index, row in enumerate(sides[0].rows):
        cells = [row.stage]
        for side in sides:
            other = side.rows[index]
            cells += ["x".join(map(str, other.shape)), f"{other.ms:.1f}", f"{other.parameters:,}"]
        rows.append(cells)
    totals = ["total"]
    for side in sides:
        totals += ["", f"{side.total_ms:.1f}", f"{side.parameters:,}"]
    rows.append(totals)
    for number, cells in enumerate(rows):
        face = font(22) if number == 0 else font(20)
        colour = INK if number in (0, len(rows) - 1) else MUTED
        for x, cell in zip(_positions(len(sides)), cells, strict=True):
            draw.text((x, top + 34 * number), cell, fill=colour, font=face)


def _positions(sides: int) -> list[int]:
    """The left edge of each column of the table: stage, then per network shape, ms, params."""
    positions = [MARGIN]
    for index in range(sides):
        start = MARGIN + 100 + index * (COLUMN + GAP)
        positions += [start, start + 300, start + 460]
    return positions

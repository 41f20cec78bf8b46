"""Several attribution methods side by side, for one image and one class: a figure for a paper.

One panel per attribution (``Analyzer.attribute``), after a first panel with the input as the
network saw it. Each panel holds the method's name (and layer), its map over the input, its
deletion and insertion areas (``Analyzer.faithfulness``) and, below, the two curves they are
the areas of, drawn on one scale in every panel so that they compare at a glance. Above the
panels: the image, the network, the class explained with its probability, the weights, and one
colour bar for all the maps; below: what the curves are, and each method's parameters. Drawn
with Pillow; no Qt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from visualizer.core.figure import (
    INK,
    MUTED,
    OVERLAY_WIDTH,
    FigureInfo,
    Font,
    Sheet,
    enlarged,
    font,
    labels_words,
    line_height,
    method_heading,
    model_label,
    percent,
    standing_words,
    untrained_warning,
    wrapped,
)
from visualizer.core.render import colormap_table, overlay

if TYPE_CHECKING:
    from visualizer.core.analysis import AnalysisResult
    from visualizer.core.attribution_methods import Attribution
    from visualizer.core.faithfulness import Faithfulness

PANEL_SIDE = 224  # pixels: a panel's picture is enlarged, by a whole number, towards this
GAP = 16  # pixels between panels
MOST_COLUMNS = 5  # panels in a row, at most (the input's included)
CHART_HEIGHT = 88  # pixels: a panel's deletion and insertion curves
DELETION: tuple[int, int, int] = (200, 55, 45)
INSERTION: tuple[int, int, int] = (40, 95, 190)
FAITHFULNESS_SOURCE = "Petsiuk, Das and Saenko, RISE, BMVC 2018"


@dataclass(frozen=True)
class MethodsFigureInfo(FigureInfo):
    """A ``FigureInfo`` whose ``picture`` box holds every panel; ``panels`` gives each panel's
    heading and the box ``(left, top, width, height)`` of its picture (the input's first,
    headed "Input"), and ``charts`` the box of each attribution's curves, in order."""

    panels: tuple[tuple[str, tuple[int, int, int, int]], ...] = ()
    charts: tuple[tuple[int, int, int, int], ...] = ()
    curve_top: float = 1.0  # the probability at the top of every chart

    def metadata(self) -> dict[str, str]:
        text = super().metadata()
        text["placement"] = "; ".join(
            f"{heading}: {width}×{height} pixels at x={left}, y={top}"
            for heading, (left, top, width, height) in self.panels
        ) + (f"; each source pixel {self.zoom}×{self.zoom} (nearest-neighbour)")
        return text


def methods_figure(
    result: AnalysisResult,
    attributions: Sequence[tuple[Attribution, Faithfulness]],
    label: str,
    *,
    colormap: str = "turbo",
    opacity: float = 0.5,
    columns: int | None = None,
) -> Image.Image:
    """The attributions of one class on ``result``'s input, side by side, as an RGB figure.

    Args:
        attributions: each attribution with its faithfulness, in the order to show them;
            all of one class (``label`` names it), each map ``(H, W)`` at the input's size.
        colormap, opacity: how every map is laid over the input (``render.overlay``).
        columns: panels a row (default: all in one row up to ``MOST_COLUMNS``, then rows of
            about equal length).

    Returns:
        An RGB image; ``figure_info(image)`` is a `MethodsFigureInfo` saying where each
        panel's picture and each chart is.

    Raises:
        ValueError: no attribution, or attributions of different classes.
    """
    if not attributions:
        raise ValueError("a methods figure needs at least one attribution")
    target = attributions[0][0].target
    if any(attribution.target != target for attribution, _ in attributions):
        raise ValueError("the attributions explain different classes")
    width, height = result.view.size
    zoom = max(1, PANEL_SIDE // max(width, height))
    pictures = [enlarged(np.asarray(result.view.convert("RGB")), zoom)] + [
        enlarged(overlay(result.view, a.map, opacity=opacity, colormap=colormap), zoom)
        for a, _ in attributions
    ]
    headings = ["Input"] + [method_heading(a) for a, _ in attributions]
    curve_top = _curve_top([f for _, f in attributions])
    words = _words(
        result,
        attributions,
        label,
        headings=headings,
        curve_top=curve_top,
        colormap=colormap,
        opacity=opacity,
        zoom=zoom,
    )

    count = len(pictures)
    if columns is None:
        columns = math.ceil(count / math.ceil(count / MOST_COLUMNS))
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    grid_width = columns * width * zoom + (columns - 1) * GAP
    sheet = Sheet(max(OVERLAY_WIDTH, grid_width))
    panel = _PanelLayout.of(sheet, headings, (width * zoom, height * zoom))

    if words.warning:
        sheet.banner(words.warning)
    sheet.text(words.title, 26, bold=True)
    sheet.text(words.lines[0], 20, bold=True)
    for line in words.lines[1:]:
        sheet.text(line, 18, fill=MUTED)
    sheet.space(10)
    bar = sheet.colour_bar(colormap_table(colormap)[:, :3], ("0", "1"), words.bar)
    sheet.space(16)
    origin = sheet.block(rows * panel.height + (rows - 1) * GAP, lambda *_: None)
    corners = [
        (
            origin[0] + column * (panel.side[0] + GAP),
            origin[1] + row * (panel.height + GAP),
        )
        for row, column in (divmod(index, columns) for index in range(count))
    ]
    sheet.space(12)
    for note in words.notes:
        sheet.text(note, 15, fill=MUTED)

    figure = sheet.render()
    draw = ImageDraw.Draw(figure)
    for index, corner in enumerate(corners):
        faithfulness = attributions[index - 1][1] if index else None
        panel.draw(
            figure,
            draw,
            corner,
            index=index,
            picture=pictures[index],
            faithfulness=faithfulness,
            curve_top=curve_top,
        )
    figure.info["fmviz"] = MethodsFigureInfo(
        title=words.title,
        caption=(*words.lines, words.bar, *words.notes),
        warning=words.warning,
        picture=(origin[0], origin[1], grid_width, rows * panel.height + (rows - 1) * GAP),
        zoom=zoom,
        band=0,
        bar=bar,
        numbering="none",
        panels=tuple(
            (heading, panel.picture_box(corner))
            for heading, corner in zip(headings, corners, strict=True)
        ),
        charts=tuple(panel.chart_box(corner) for corner in corners[1:]),
        curve_top=curve_top,
    )
    return figure


@dataclass(frozen=True)
class _Words:
    """What a methods figure says."""

    title: str
    lines: tuple[str, ...]  # below the title: the class, then the input and the weights
    bar: str  # below the colour bar
    notes: tuple[str, ...]  # below the panels: what the curves are, the parameters
    warning: str | None


def _words(
    result: AnalysisResult,
    attributions: Sequence[tuple[Attribution, Faithfulness]],
    label: str,
    *,
    headings: Sequence[str],
    curve_top: float,
    colormap: str,
    opacity: float,
    zoom: int,
) -> _Words:
    target = attributions[0][0].target
    width, height = result.view.size
    title = (
        f"{Path(result.source).name} · {model_label(result)} · attributions of class "
        f"{target} {label}"
    )
    lines = [f"Class {target} {label}: {standing_words(result, target)}"]
    top1, label1, p1 = result.topk[0]
    if top1 != target:
        lines.append(f"(not the top-1 class, which is {top1} {label1} at {percent(p1)})")
    lines.append(
        f"{width}×{height} input as the network saw it"
        + (f", shown {zoom}× (nearest-neighbour)" if zoom > 1 else "")
        + f" · weights: {result.weights} · {labels_words(result)}"
    )
    bar = (
        f"Relative attribution: each map min–max scaled to 0–1, colormap {colormap}, over the "
        f"input at {round(opacity * 100)} % opacity"
    )
    steps = len(attributions[0][1].fractions) - 1
    parameters = "; ".join(
        f"{heading}: {_parameters(a)}"
        for heading, (a, _) in zip(headings[1:], attributions, strict=True)
        if a.parameters
    )
    notes = (
        f"Faithfulness ({FAITHFULNESS_SOURCE}), in {steps} steps: the class's probability as "
        "the most attributed pixels are deleted (red; set to the mean colour) and as they are "
        "inserted into an input with all of them deleted (blue), against the fraction of "
        f"pixels, 0 to 1 left to right; every chart 0 to {_number(curve_top)} bottom to top. "
        "AUC: the area under the curve; a faithful map has a low deletion AUC and a high "
        "insertion AUC.",
    ) + ((f"Parameters (Captum's names): {parameters}",) if parameters else ())
    return _Words(title, tuple(lines), bar, notes, untrained_warning(result))


@dataclass(frozen=True)
class _PanelLayout:
    """Where the parts of a panel are, from its top-left corner: the heading's lines, the
    picture (``side``: its width and height), the two areas, the chart."""

    heading_face: Font
    small: Font
    headings: tuple[tuple[str, ...], ...]  # each panel's heading, wrapped
    side: tuple[int, int]
    heading_height: int
    chart_height: int

    @classmethod
    def of(cls, sheet: Sheet, headings: Sequence[str], side: tuple[int, int]) -> _PanelLayout:
        heading_face = font(sheet.px(17), bold=True)
        lines = tuple(tuple(wrapped(text, heading_face, side[0])) for text in headings)
        return cls(
            heading_face=heading_face,
            small=font(sheet.px(14)),
            headings=lines,
            side=side,
            heading_height=max(len(text) for text in lines) * line_height(heading_face),
            chart_height=sheet.px(CHART_HEIGHT),
        )

    @property
    def areas_height(self) -> int:
        return 2 * line_height(self.small) + 12

    @property
    def height(self) -> int:
        return self.heading_height + self.side[1] + self.areas_height + self.chart_height

    def picture_box(self, corner: tuple[int, int]) -> tuple[int, int, int, int]:
        return (corner[0], corner[1] + self.heading_height, *self.side)

    def chart_box(self, corner: tuple[int, int]) -> tuple[int, int, int, int]:
        top = corner[1] + self.heading_height + self.side[1] + self.areas_height
        return (corner[0], top, self.side[0], self.chart_height)

    def draw(
        self,
        figure: Image.Image,
        draw: ImageDraw.ImageDraw,
        corner: tuple[int, int],
        *,
        index: int,
        picture: np.ndarray,
        faithfulness: Faithfulness | None,
        curve_top: float,
    ) -> None:
        """Panel ``index`` (0: the input, with the charts' legend; else an attribution)."""
        left, top = corner
        for number, line in enumerate(self.headings[index]):
            at = (left, top + number * line_height(self.heading_face))
            draw.text(at, line, fill=INK, font=self.heading_face)
        figure.paste(Image.fromarray(picture, "RGB"), self.picture_box(corner)[:2])
        below = top + self.heading_height + self.side[1] + 6
        step = line_height(self.small)
        chart = self.chart_box(corner)
        if faithfulness is None:
            _legend(draw, (left, below), chart, self.small, curve_top)
            return
        areas = (
            (f"deletion AUC {faithfulness.deletion_auc:.3f}", DELETION),
            (f"insertion AUC {faithfulness.insertion_auc:.3f}", INSERTION),
        )
        for number, (text, colour) in enumerate(areas):
            draw.text((left, below + number * step), text, fill=colour, font=self.small)
        _chart(draw, chart, faithfulness, curve_top, self.small)


def _parameters(attribution: Attribution) -> str:
    from visualizer.core.attribution_methods import describe_parameters  # noqa: PLC0415

    return describe_parameters(attribution.parameters)


def _curve_top(faithfulness: Sequence[Faithfulness]) -> float:
    """The probability at the top of every chart: the highest on any curve, rounded up to 1,
    2 or 5 times a power of ten (1 at most; 1 for curves all at 0)."""
    highest = max(
        (float(np.max(np.concatenate([f.deletion, f.insertion]))) for f in faithfulness),
        default=0.0,
    )
    if not math.isfinite(highest) or highest <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(highest))
    for step in (1, 2, 5, 10):
        if highest <= step * power * (1 + 1e-9):
            return min(1.0, step * power)
    return 1.0


def _number(value: float) -> str:
    return f"{value:.3g}"


def _frame(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    left, top, width, height = box
    draw.rectangle((left, top, left + width - 1, top + height - 1), outline=MUTED)


def _chart(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    faithfulness: Faithfulness,
    top_value: float,
    face: Font,
) -> None:
    """The deletion and insertion curves in ``box`` (left, top, width, height): fraction of
    pixels 0–1 left to right, probability 0–``top_value`` bottom to top."""
    left, top, width, height = box
    _frame(draw, box)
    x = left + faithfulness.fractions * (width - 1)
    for values, colour in ((faithfulness.deletion, DELETION), (faithfulness.insertion, INSERTION)):
        share = np.clip(np.asarray(values, dtype=np.float64) / top_value, 0.0, 1.0)
        y = top + (1.0 - share) * (height - 1)
        draw.line(list(zip(x.tolist(), y.tolist(), strict=True)), fill=colour, width=2)
    draw.text((left + 3, top + 2), _number(top_value), fill=MUTED, font=face)


def _legend(
    draw: ImageDraw.ImageDraw,
    at: tuple[int, int],
    box: tuple[int, int, int, int],
    face: Font,
    top_value: float,
) -> None:
    """Under the input: what the colours of the curves are, and the charts' axes."""
    left, top = at
    step = line_height(face)
    for number, (text, colour) in enumerate((("deletion", DELETION), ("insertion", INSERTION))):
        y = top + number * step + step // 2
        draw.line((left, y, left + 18, y), fill=colour, width=2)
        draw.text((left + 24, top + number * step), text, fill=INK, font=face)
    left, top, width, height = box
    _frame(draw, box)
    draw.text((left + 3, top + 2), f"probability {_number(top_value)}", fill=MUTED, font=face)
    draw.text((left + 3, top + height - 3), "0", fill=MUTED, font=face, anchor="ld")
    draw.text(
        (left + width - 3, top + height - 3),
        "fraction of pixels 1",
        fill=MUTED,
        font=face,
        anchor="rd",
    )

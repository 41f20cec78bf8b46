"""Figures that explain themselves: a stage grid or a Grad-CAM overlay with a title, a colour bar
with its values, channel numbers, and a warning when the network is untrained. Drawn with
Pillow; no Qt.

The raw grid and overlay (``render``) stay what scripts read; a figure puts them, enlarged by a
whole number with nearest-neighbour sampling so that every pixel stays exact, below a title
block. ``figure.info["fmviz"]`` holds what was written on it and where the picture sits
(`FigureInfo`), so that a PNG can carry the same words as text chunks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from visualizer.choices import MODEL_LABELS, ORDERS
from visualizer.core.analysis import probabilities_of
from visualizer.core.render import LEVELS, Grid, GridLayout, colormap_table, overlay

if TYPE_CHECKING:
    from visualizer.core.analysis import AnalysisResult
    from visualizer.core.attribution import GradCam
    from visualizer.core.attribution_methods import Attribution
    from visualizer.core.faithfulness import Faithfulness

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Colour = tuple[int, int, int]

INK: Colour = (20, 20, 20)
MUTED: Colour = (90, 90, 90)
PAPER: Colour = (255, 255, 255)
ALERT: Colour = (160, 40, 30)  # the untrained-weights band, white text on it
MARGIN = 24  # pixels around everything
TEXT_WIDTH = 960  # the text column is at least this wide (wider when the picture is)
OVERLAY_WIDTH = 720  # the same for an overlay figure
BANNER_HEIGHT = 44
BAR_WIDTH, BAR_HEIGHT = 512, 20
MIN_NUMBERED_TILE = 32  # pixels: tiles are enlarged towards this, to hold their numbers
LARGEST_GRID = 2400  # pixels: a grid is enlarged only while it stays this wide or less
OVERLAY_SIDE = 448  # pixels: an overlay is enlarged, by a whole number, towards this size
# Tried in turn: DejaVu (most Linux desktops, and matplotlib), Liberation, Arial, Helvetica.
FONT_FILES = {
    False: ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "Helvetica.ttc"),
    True: ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf", "arialbd.ttf"),
}
UNTRAINED = "untrained weights"


@functools.cache
def _font_file(bold: bool) -> str | None:
    """The first of ``FONT_FILES`` that this machine has (Pillow searches the system's font
    folders), or None."""
    for name in FONT_FILES[bold]:
        try:
            return str(ImageFont.truetype(name, 12).path)
        except OSError:
            continue
    return None


@functools.cache
def font(size: int, *, bold: bool = False) -> Font:
    """A TrueType font of ``size`` pixels: one the system has, else Pillow's own (Pillow ≥ 10.1
    carries a scalable default), so no font file is required."""
    path = _font_file(bold)
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


@dataclass(frozen=True)
class FigureInfo:
    """What a figure says, and where its parts are in the figure's pixels.

    ``picture`` is the box ``(left, top, width, height)`` of the grid or overlay, enlarged
    ``zoom`` times (each source pixel a ``zoom × zoom`` block). A grid's rows of tiles are
    ``band`` pixels apart, the band above each row holding its tiles' channel numbers: source
    pixel ``(y, x)`` of a grid is at ``(top + band · (y // (tile_height + gutter) + 1) +
    zoom · y, left + zoom · x)``. ``bar`` is the colour bar's box.
    """

    title: str
    caption: tuple[str, ...]  # the lines below the title, in order
    warning: str | None  # set when the network is untrained
    picture: tuple[int, int, int, int]
    zoom: int
    band: int
    bar: tuple[int, int, int, int]
    numbering: str  # "tiles", "rows and columns" or "none" (overlays: "none")

    def metadata(self) -> dict[str, str]:
        """PNG text chunks: ``title``, ``caption`` (its lines joined by `` | ``),
        ``placement`` and, only when the network is untrained, ``warning``."""
        left, top, width, height = self.picture
        placement = (
            f"{width}×{height} pixels at x={left}, y={top}; each source pixel "
            f"{self.zoom}×{self.zoom} (nearest-neighbour)"
        )
        if self.band:
            placement += f"; a {self.band}-pixel band of channel numbers above each row of tiles"
        text = {"title": self.title, "caption": " | ".join(self.caption), "placement": placement}
        if self.warning:
            text["warning"] = self.warning
        return text


def figure_info(figure: Image.Image) -> FigureInfo:
    """The `FigureInfo` of a figure made by ``grid_figure`` or ``overlay_figure``.

    Raises:
        KeyError: ``figure`` was made otherwise.
    """
    return figure.info["fmviz"]


def class_standing(result: AnalysisResult, index: int) -> tuple[float, int, int]:
    """Class ``index``'s probability (the softmax of ``result.logits``; for a one-output head,
    ``result.scores == "sigmoid"``, the sigmoid of that output), its rank (1 for the top-1)
    and the number of classes."""
    logits = result.logits.detach().double().cpu()  # a tiny probability stays above 0
    probability = float(probabilities_of(logits, result.scores)[index])
    rank = 1 + int((logits > logits[index]).sum())
    return probability, rank, logits.numel()


def percent(probability: float) -> str:
    """``0.8312`` → ``"83.1 %"``; below 0.1 %, two significant digits (``"0.0042 %"``,
    ``"3.1e-12 %"``)."""
    value = probability * 100
    return f"{value:.1f} %" if value >= 0.1 else f"{value:.2g} %"


def standing_words(result: AnalysisResult, index: int) -> str:
    """Class ``index``'s probability and rank in words: ``"probability 83.1 %, rank 1 of
    1000"``; for a one-output head ``"probability 83.1 % (sigmoid of the one output)"``."""
    probability, rank, classes = class_standing(result, index)
    if result.scores == "sigmoid":
        return f"probability {percent(probability)} (sigmoid of the one output)"
    return f"probability {percent(probability)}, rank {rank} of {classes}"


def untrained_warning(result: AnalysisResult) -> str | None:
    """What a picture of ``result`` must say when its network is untrained, else None."""
    if result.trained:
        return None
    return f"{UNTRAINED}: random, so these maps show no learned features"


def activation(result: AnalysisResult, name: str) -> torch.Tensor:
    """The ``(C, H, W)`` output of stage or layer ``name`` in ``result``: ``result.stages``,
    else ``result.layers`` (``Analyzer.analyze(image, layers=[...])``).

    Raises:
        KeyError: ``result`` holds no output of that name.
    """
    if name in result.stages:
        return result.stages[name]
    layers = getattr(result, "layers", {})
    if name not in layers:
        raise KeyError(f"{name!r}: neither a stage nor a layer analysed (analyze(layers=...))")
    return layers[name]


def grid_figure(
    result: AnalysisResult,
    stage: str,
    grid: Grid,
    *,
    order_class: tuple[int, str] | None = None,
) -> Image.Image:
    """The stage grid ``grid`` of ``result`` as an annotated RGB figure (``stage``: a stage,
    or a layer of ``result.layers``, titled "layer <name>").

    From the top: a red band saying "Untrained weights" when ``result.trained`` is False; the
    title (image file, network, stage and its ``C×H×W`` shape); the top-1 class with its
    probability, and the weights; how the tiles are ordered, enlarged and numbered; the colour
    bar with its values (``scale="stage"``: the stage's minimum and maximum activation;
    ``"channel"``: each tile stretched over its own, and the stage's overall range); the grid.

    The grid is enlarged by the smallest whole number that makes a tile ``MIN_NUMBERED_TILE``
    pixels (as far as ``LARGEST_GRID`` allows), nearest-neighbour, and each row of tiles has a
    band above it with each tile's channel number, in a size that grows with the tiles. Where
    the tiles stay too small for their numbers, rows and columns are labelled instead (index
    order) or nothing is (other orders: the PNG's ``channel order`` text lists them). The
    text grows with a wide grid, so that it stays legible when the figure is seen whole.

    Args:
        order_class: for ``grid.order == "gradcam"``, the class ``(index, label)`` whose
            Grad-CAM weights ordered the tiles.

    Returns:
        An RGB image; ``figure_info(image)`` says what it shows and where.
    """
    layout = grid.layout
    zoom = _grid_zoom(layout)
    number_font = _number_font(layout.tile_width * zoom, max(layout.order))
    numbering = "tiles" if number_font else "rows and columns" if grid.order == "index" else "none"
    band = _band_height(number_font) if number_font else 0
    picture = enlarged(np.asarray(grid.to_image().convert("RGB")), zoom)
    rows_pixels = (layout.tile_height + layout.gutter) * zoom  # one row of tiles, its gutter
    labels = _RowLabels(layout, zoom) if numbering == "rows and columns" else None
    indent, header = (labels.width, labels.height) if labels else (0, 0)
    size = (picture.shape[1], picture.shape[0] + band * layout.rows)
    words = _grid_words(
        result, stage, grid, zoom=zoom, numbering=numbering, order_class=order_class
    )

    sheet = Sheet(max(TEXT_WIDTH, size[0] + indent))
    if words.warning:
        sheet.banner(words.warning)
    sheet.text(words.title, 26, bold=True)
    sheet.text(words.lines[0], 18)
    for line in words.lines[1:]:
        sheet.text(line, 18, fill=MUTED)
    sheet.space(10)
    bar = sheet.colour_bar(grid.palette[:LEVELS, :3], words.ends, words.bar)
    sheet.space(16)

    def draw_grid(canvas: Image.Image, draw: ImageDraw.ImageDraw, left: int, top: int) -> None:
        left, top = left + indent, top + header
        for row in range(layout.rows):
            block = picture[row * rows_pixels : (row + 1) * rows_pixels]
            canvas.paste(
                Image.fromarray(block, "RGB"), (left, top + row * (rows_pixels + band) + band)
            )
        if number_font:
            for channel in layout.order:
                y, x = layout.tile_origin(channel)
                row = y // (layout.tile_height + layout.gutter)
                at = (left + x * zoom, top + row * (rows_pixels + band) + _BAND_PAD)
                draw.text(at, str(channel), fill=INK, font=number_font, anchor="la")
        elif labels:
            labels.draw(draw, (left, top))

    box = sheet.block(size[1] + header, draw_grid)
    figure = sheet.render()
    figure.info["fmviz"] = FigureInfo(
        title=words.title,
        caption=(*words.lines, words.bar),
        warning=words.warning,
        picture=(box[0] + indent, box[1] + header, *size),
        zoom=zoom,
        band=band,
        bar=bar,
        numbering=numbering,
    )
    return figure


def overlay_figure(
    result: AnalysisResult,
    cam: GradCam,
    label: str,
    *,
    colormap: str = "turbo",
    opacity: float = 0.5,
) -> Image.Image:
    """The Grad-CAM ``cam`` (of class ``label``) over ``result``'s input as an annotated figure.

    From the top: a red band saying "Untrained weights" when ``result.trained`` is False; the
    title (image file, network, "Grad-CAM at <stage>"); the class with its probability and
    rank (and the top-1 when that is another class); the colour bar of the relative
    attribution, 0 to 1, in ``colormap``; then the input as the network saw it and, right of
    it, the overlay (``render.overlay``), both enlarged by a whole number towards
    ``OVERLAY_SIDE`` pixels (2× for 224×224), nearest-neighbour.

    Returns:
        An RGB image; ``figure_info(image)`` says what it shows and where (``picture``: the
        overlay).
    """
    return _overlay_sheet(
        result,
        cam.map,
        cam.target,
        label,
        what=f"Grad-CAM at {cam.stage}",
        bar_text=f"Grad-CAM, relative attribution (min–max scaled to 0–1), colormap {colormap}",
        colormap=colormap,
        opacity=opacity,
    )


# How each attribution method's result becomes its map (``attribution_methods``' table), in
# words for figures and metadata.
MAP_WORDS = {
    "gradcam": "the layer's map upsampled bilinearly",
    "guided-gradcam": "max over channels of the absolute value",
    "saliency": "max over channels of the absolute gradient",
    "integrated-gradients": "sum over channels of the absolute value",
    "occlusion": "sum over channels, negatives set to 0",
    "smoothgrad-saliency": "max over channels of the absolute gradient",
    "smoothgrad-ig": "sum over channels of the absolute value",
}


def method_heading(attribution: Attribution) -> str:
    """An attribution's method in words, with its layer: ``"Integrated Gradients"``,
    ``"Grad-CAM at C5"``, ``"Guided Grad-CAM at layer3.4"``."""
    from visualizer.core.attribution_methods import TITLES  # noqa: PLC0415

    title = TITLES.get(attribution.method, attribution.method)
    return f"{title} at {attribution.layer}" if attribution.layer else title


def faithfulness_words(faithfulness: Faithfulness) -> str:
    """``"deletion AUC 0.123 (lower: more faithful), insertion AUC 0.456 (higher: more
    faithful)"``."""
    return (
        f"deletion AUC {faithfulness.deletion_auc:.3f} (lower: more faithful), "
        f"insertion AUC {faithfulness.insertion_auc:.3f} (higher: more faithful)"
    )


def attribution_figure(
    result: AnalysisResult,
    attribution: Attribution,
    label: str,
    *,
    faithfulness: Faithfulness | None = None,
    colormap: str = "turbo",
    opacity: float = 0.5,
) -> Image.Image:
    """One attribution method's map (``Analyzer.attribute``; of class ``label``) over
    ``result``'s input as an annotated figure, laid out as ``overlay_figure``'s.

    The title names the method (and its layer); below the class, the parameters Captum ran
    with and, when ``faithfulness`` is given, its deletion and insertion areas. The colour
    bar says how the method's result became a map (``MAP_WORDS``).

    Returns:
        An RGB image; ``figure_info(image)`` says what it shows and where (``picture``: the
        overlay).
    """
    from visualizer.core.attribution_methods import TITLES, describe_parameters  # noqa: PLC0415

    title = TITLES.get(attribution.method, attribution.method)
    extra = [f"Captum parameters: {describe_parameters(attribution.parameters)}"]
    if faithfulness is not None:
        steps = len(faithfulness.fractions) - 1
        extra.append(f"Faithfulness ({steps} steps): {faithfulness_words(faithfulness)}")
    reduction = MAP_WORDS.get(attribution.method, "the method's result")
    return _overlay_sheet(
        result,
        attribution.map,
        attribution.target,
        label,
        what=method_heading(attribution),
        bar_text=(
            f"{title}, relative attribution ({reduction}, min–max scaled to 0–1), "
            f"colormap {colormap}"
        ),
        extra=extra,
        colormap=colormap,
        opacity=opacity,
    )


def _overlay_sheet(
    result: AnalysisResult,
    heat_map: np.ndarray,
    target: int,
    label: str,
    *,
    what: str,
    bar_text: str,
    extra: Sequence[str] = (),
    colormap: str,
    opacity: float,
) -> Image.Image:
    """The figure of ``overlay_figure`` for any map ``(H, W)`` in [0, 1] of class ``target``:
    ``what`` ends the title, ``extra`` lines follow the caption's, ``bar_text`` is the colour
    bar's."""
    zoom = max(1, OVERLAY_SIDE // max(result.view.size))
    heat = enlarged(overlay(result.view, heat_map, opacity=opacity, colormap=colormap), zoom)
    view = enlarged(np.asarray(result.view.convert("RGB")), zoom)
    title = f"{Path(result.source).name} · {model_label(result)} · {what}"
    lines = [f"Class {target} {label}: {standing_words(result, target)}"]
    top1, label1, p1 = result.topk[0]
    if top1 != target:
        lines.append(f"(not the top-1 class, which is {top1} {label1} at {percent(p1)})")
    width, height = result.view.size
    lines.append(
        f"Left, the {width}×{height} input as the network saw it; right, the heat map over it "
        f"at {round(opacity * 100)} % opacity"
        + (f"; both shown {zoom}× (nearest-neighbour)" if zoom > 1 else "")
        + f" · weights: {result.weights} · {labels_words(result)}"
    )
    lines.extend(extra)
    warning = untrained_warning(result)

    gap = MARGIN
    sheet = Sheet(max(OVERLAY_WIDTH, 2 * heat.shape[1] + gap))
    if warning:
        sheet.banner(warning)
    sheet.text(title, 26, bold=True)
    sheet.text(lines[0], 20, bold=True)
    for line in lines[1:]:
        sheet.text(line, 18, fill=MUTED)
    sheet.space(10)
    bar = sheet.colour_bar(colormap_table(colormap)[:, :3], ("0", "1"), bar_text)
    sheet.space(16)

    def draw_pictures(canvas: Image.Image, _draw: ImageDraw.ImageDraw, left: int, top: int) -> None:
        canvas.paste(Image.fromarray(view, "RGB"), (left, top))
        canvas.paste(Image.fromarray(heat, "RGB"), (left + view.shape[1] + gap, top))

    box = sheet.block(heat.shape[0], draw_pictures)
    figure = sheet.render()
    figure.info["fmviz"] = FigureInfo(
        title=title,
        caption=(*lines, bar_text),
        warning=warning,
        picture=(box[0] + view.shape[1] + gap, box[1], heat.shape[1], heat.shape[0]),
        zoom=zoom,
        band=0,
        bar=bar,
        numbering="none",
    )
    return figure


def draw_banner(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str, size: int = 20
) -> None:
    """The untrained-weights band: ``text`` in white bold ``size``-pixel letters on red
    filling ``box`` (x0, y0, x1, y1), its first letter capitalised; wrapped to the box's width
    (``banner_lines``) where the box is high enough, else one line cut with "…"."""
    draw.rectangle(box, fill=ALERT)
    face = font(size, bold=True)
    width = box[2] - box[0] - 2 * size
    lines = banner_lines(text, size, width)
    step = line_height(face)
    if len(lines) * step > box[3] - box[1]:
        lines = [fitted(" ".join(lines), face, width)]
    top = (box[1] + box[3]) // 2 - (len(lines) - 1) * step // 2
    for number, line in enumerate(lines):
        at = (box[0] + size // 2 + 4, top + number * step)
        draw.text(at, line, fill=PAPER, font=face, anchor="lm")


def banner_lines(text: str, size: int, width: int) -> list[str]:
    """``text`` as a banner writes it in ``size``-pixel bold: first letter capitalised,
    wrapped to ``width`` pixels."""
    return wrapped(text[:1].upper() + text[1:], font(size, bold=True), width)


# --- layout ------------------------------------------------------------------------------------

_BAND_PAD = 2  # pixels above and below the channel numbers in their band


@dataclass(frozen=True)
class _GridWords:
    title: str
    lines: tuple[str, ...]
    ends: tuple[str, str]  # under the colour bar's ends
    bar: str  # beside the colour bar
    warning: str | None


def _grid_words(
    result: AnalysisResult,
    stage: str,
    grid: Grid,
    *,
    zoom: int,
    numbering: str,
    order_class: tuple[int, str] | None,
) -> _GridWords:
    """What a grid figure says."""
    layout = grid.layout
    values = activation(result, stage).detach()
    channels, height, width = values.shape
    if len(layout.order) != channels:  # only some channels shown: their range
        values = values[torch.as_tensor(layout.order)]
    low, high = (_number(float(v)) for v in torch.aminmax(values.float()))
    top1, label1, p1 = result.topk[0]
    kind = "stage" if stage in result.stages else "layer"
    title = (
        f"{Path(result.source).name} · {model_label(result)} · {kind} {stage} "
        f"({channels}×{height}×{width})"
    )
    of = f" of {channels}" if len(layout.order) != channels else ""
    order = ORDERS.get(grid.order, "in the order given")
    if grid.order == "gradcam" and order_class is not None:
        order = (
            f"by Grad-CAM channel weight for class {order_class[0]} {order_class[1]}, highest first"
        )
    lines = (
        f"Top-1: {top1} {label1} ({percent(p1)}) · weights: {result.weights} · "
        + labels_words(result),
        f"{len(layout.order)}{of} channels, {order}, row by row; each tile {height}×{width}"
        + (f", shown {zoom}× (nearest-neighbour)" if zoom > 1 else ""),
        _NUMBERING[numbering],
    )
    if grid.scale == "stage":
        ends = (low, high)
        bar = (
            f"Colormap {grid.colormap}, one scale for the whole {kind}: activation {low} to {high}"
        )
    else:
        ends = ("each tile's min", "each tile's max")
        bar = (
            f"Colormap {grid.colormap}, each tile stretched over its own min–max; "
            f"activations in this {kind} range from {low} to {high}"
        )
    return _GridWords(title, lines, ends, bar, untrained_warning(result))


_NUMBERING = {
    "tiles": "The number above each tile is its channel.",
    "rows and columns": (
        "Tiles too small to number one by one: a row's label is the channel of its first "
        "tile; add the column's label (channel = row + column)."
    ),
    "none": (
        "Tiles too small to number: the channel at each position is listed, row by row, in "
        "this PNG's 'channel order' text."
    ),
}


class Sheet:
    """A figure built from the top down: a column ``width`` pixels wide between margins.

    Text sizes are given for a column ``TEXT_WIDTH`` wide and grow with a wider one.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.scale = max(1.0, width / TEXT_WIDTH)
        self.margin = self.px(MARGIN)
        self.height = self.margin
        self._steps: list[Callable[[Image.Image, ImageDraw.ImageDraw], None]] = []

    def px(self, size: float) -> int:
        """``size`` pixels, scaled."""
        return round(size * self.scale)

    def block(
        self, height: int, paint: Callable[[Image.Image, ImageDraw.ImageDraw, int, int], None]
    ) -> tuple[int, int, int, int]:
        """Reserve ``height`` pixels for ``paint(canvas, draw, left, top)``; their box."""
        left, top = self.margin, self.height
        self._steps.append(lambda canvas, draw: paint(canvas, draw, left, top))
        self.height += height
        return left, top, self.width, height

    def space(self, height: int) -> None:
        self.height += self.px(height)

    def banner(self, text: str) -> None:
        """A red band across the figure's top edge; call it first."""
        if self._steps:
            raise RuntimeError("the banner goes above everything else")
        size = self.px(20)
        lines = banner_lines(text, size, self.width + 2 * self.margin - 2 * size)
        height = max(self.px(BANNER_HEIGHT), len(lines) * line_height(font(size)) + size)

        def paint(canvas: Image.Image, draw: ImageDraw.ImageDraw) -> None:
            draw_banner(draw, (0, 0, canvas.width - 1, height - 1), text, size)

        self._steps.append(paint)
        self.height = height + self.margin // 2

    def text(self, text: str, size: int, *, bold: bool = False, fill: Colour = INK) -> None:
        """``text`` in a ``size``-pixel font (scaled), wrapped to the column."""
        face = font(self.px(size), bold=bold)
        for line in wrapped(text, face, self.width):
            self.block(
                line_height(face),
                lambda _canvas, draw, left, top, line=line: draw.text(
                    (left, top), line, fill=fill, font=face
                ),
            )

    def colour_bar(
        self, colours: np.ndarray, ends: tuple[str, str], caption: str
    ) -> tuple[int, int, int, int]:
        """A horizontal bar of ``colours`` ((N, 3) uint8, the lowest value's first), ``ends``
        written under its ends and ``caption`` below; the bar's box."""
        face = font(self.px(16))
        width, height = min(self.px(BAR_WIDTH), self.width), self.px(BAR_HEIGHT)
        indices = np.rint(np.linspace(0, len(colours) - 1, width)).astype(np.intp)
        strip = np.ascontiguousarray(np.repeat(colours[indices][None], height, axis=0))

        def paint(canvas: Image.Image, draw: ImageDraw.ImageDraw, left: int, top: int) -> None:
            canvas.paste(Image.fromarray(strip, "RGB"), (left, top))
            draw.rectangle((left - 1, top - 1, left + width, top + height), outline=MUTED)
            below = top + height + 4
            draw.text((left, below), ends[0], fill=INK, font=face)
            draw.text((left + width, below), ends[1], fill=INK, font=face, anchor="ra")

        left, top, _, _ = self.block(height + 4 + line_height(face), paint)
        self.text(caption, 16, fill=MUTED)
        return left, top, width, height

    def render(self) -> Image.Image:
        canvas = Image.new("RGB", (self.width + 2 * self.margin, self.height + self.margin), PAPER)
        draw = ImageDraw.Draw(canvas)
        for paint in self._steps:
            paint(canvas, draw)
        return canvas


class _RowLabels:
    """Row and column labels for an index-ordered grid whose tiles are too small to number:
    every ``every``-th row labelled at its left with its first channel, every ``every``-th
    column above the grid with ``+offset``."""

    SIZE = 12

    def __init__(self, layout: GridLayout, zoom: int) -> None:
        self.layout, self.zoom = layout, zoom
        self.face = font(self.SIZE)
        step = (min(layout.tile_height, layout.tile_width) + layout.gutter) * zoom
        widest = self.face.getlength(f"+{layout.columns - 1}") + 6
        self.every = max(1, math.ceil(max(self.SIZE + 4, widest) / step))
        self.width = math.ceil(self.face.getlength(str((layout.rows - 1) * layout.columns))) + 8
        self.height = self.SIZE + 8

    def draw(self, draw: ImageDraw.ImageDraw, origin: tuple[int, int]) -> None:
        layout, zoom = self.layout, self.zoom
        step_y = (layout.tile_height + layout.gutter) * zoom
        step_x = (layout.tile_width + layout.gutter) * zoom
        for row in range(0, layout.rows, self.every):
            middle = origin[1] + row * step_y + layout.tile_height * zoom // 2
            text = str(row * layout.columns)
            draw.text((origin[0] - 4, middle), text, fill=INK, font=self.face, anchor="rm")
        for column in range(0, layout.columns, self.every):
            at = (origin[0] + column * step_x, origin[1] - 4)
            draw.text(at, f"+{column}", fill=INK, font=self.face, anchor="ld")


def _grid_zoom(layout: GridLayout) -> int:
    """The smallest whole enlargement that makes a tile ``MIN_NUMBERED_TILE`` pixels wide and
    high, as far as the grid may grow (``LARGEST_GRID``)."""
    tile = max(1, min(layout.tile_height, layout.tile_width))
    wanted = math.ceil(MIN_NUMBERED_TILE / tile)
    return max(1, min(wanted, LARGEST_GRID // max(1, layout.shape[1])))


def enlarged(pixels: np.ndarray, zoom: int) -> np.ndarray:
    """``pixels`` (H, W, 3) with each one a ``zoom × zoom`` block."""
    if zoom == 1:
        return np.ascontiguousarray(pixels)
    return np.repeat(np.repeat(pixels, zoom, axis=0), zoom, axis=1)


def _number_font(tile_width: int, largest: int) -> Font | None:
    """The font for channel numbers above tiles ``tile_width`` pixels wide: a third of the
    tile, 10 to 28 pixels, smaller where the widest number would not fit; None where even 10
    pixels would not."""
    for size in range(max(10, min(28, round(tile_width / 3))), 9, -1):
        face = font(size, bold=True)
        if face.getlength(str(largest)) + 2 <= tile_width:
            return face
    return None


def _band_height(face: Font) -> int:
    ascent, descent = face.getmetrics() if hasattr(face, "getmetrics") else (face.size, 0)
    return ascent + descent + 2 * _BAND_PAD


def labels_words(result: AnalysisResult) -> str:
    """``"1000 classes, labels: ImageNet (torchvision)"``: how many classes, and whose names."""
    classes = "1 class (sigmoid)" if result.scores == "sigmoid" else f"{result.classes} classes"
    return f"{classes}, labels: {result.labels_source}"


def model_label(result: AnalysisResult) -> str:
    return MODEL_LABELS.get(result.model, result.model)


def _number(value: float) -> str:
    """An activation value, four significant digits."""
    return f"{value:.4g}"


def line_height(face: Font) -> int:
    return round(getattr(face, "size", 12) * 1.35)


def wrapped(text: str, face: Font, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels (a word longer than
    that, such as a long file name, is broken where it must)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        trial = f"{line} {word}" if line else word
        if face.getlength(trial) <= width:
            line = trial
            continue
        if line:
            lines.append(line)
        line = word
        while face.getlength(line) > width and len(line) > 1:
            cut = _longestfitted(line, face, width)
            lines.append(line[:cut])
            line = line[cut:]
    lines.append(line)
    return lines


def _longestfitted(text: str, face: Font, width: float) -> int:
    """How many leading characters of ``text`` fit in ``width`` pixels (at least one)."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if face.getlength(text[:middle]) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def fitted(text: str, face: Font, width: float) -> str:
    """``text``, cut with "…" where it is wider than ``width`` pixels in ``face``."""
    if face.getlength(text) <= width:
        return text
    return text[: _longestfitted(text, face, width - face.getlength("…"))] + "…"

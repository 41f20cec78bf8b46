"""A channel's atlas as a figure: the dataset images that excite it most, each cropped to the
receptive field of its maximum, with rank, score and file name, below a title that names the
network, the layer, the channel and the dataset's statistics; optionally beside the channel's
map for the image being looked at. Drawn with Pillow; no Qt.

``figure.info["fmviz_atlas"]`` (`AtlasFigureInfo`) says what was written and where each patch
sits, so that the PNG's text chunks carry the same words and a test can find each patch.

Examples::

    from visualizer.core.atlas import Atlas
    from visualizer.core.atlas.figure import save_atlas_figure

    save_atlas_figure("c5_17.png", Atlas("photos-index"), "C5", 17)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from visualizer import __version__
from visualizer.choices import MODEL_LABELS
from visualizer.core.atlas.reader import Atlas, TopImage
from visualizer.core.export import WriteBatch, save_png
from visualizer.core.figure import INK, MUTED, Sheet, fitted, font, line_height
from visualizer.core.images import ImageLoadError, load_image
from visualizer.core.render import colormap_table

THUMBNAIL = 128  # pixels: each patch fits a square this size
GAP = 12  # pixels between patches
MISSING: tuple[int, int, int] = (225, 225, 225)  # the square of a patch that cannot be read
FRAME: tuple[int, int, int] = (200, 200, 200)
MAP_SIDE = 256  # pixels: the channel's map is enlarged, by a whole number, towards this size
INFO_KEY = "fmviz_atlas"


@dataclass(frozen=True)
class AtlasFigureInfo:
    """What an atlas figure says and where its parts are, in the figure's pixels.

    Attributes:
        title: the first line.
        caption: the lines below the title, in order.
        patches: ``(left, top, width, height)`` of each patch, in rank order; the patch is
            ``patch_image(top_image, thumbnail)`` pasted there.
        missing: ``"<source>: <reason>"`` of each patch whose image could not be read (its
            square is left grey).
        activation: ``(left, top, width, height)`` of the channel's map (each map pixel
            ``zoom × zoom``), or None when the figure has none.
        zoom: how many times the map was enlarged (nearest-neighbour); 0 without a map.
    """

    title: str
    caption: tuple[str, ...]
    patches: tuple[tuple[int, int, int, int], ...]
    missing: tuple[str, ...]
    activation: tuple[int, int, int, int] | None
    zoom: int


def patch_image(top: TopImage, size: int = THUMBNAIL) -> Image.Image:
    """``top``'s source image (read by ``load_image``: RGB, EXIF orientation applied) cropped to
    its box and scaled to fit a ``size × size`` square, its aspect kept: Lanczos when it
    shrinks, nearest-neighbour when it grows (a small receptive field shows its pixels).

    Raises:
        ImageLoadError: the source cannot be read (moved, deleted, damaged since indexing),
            or the box is empty (the field lies in the padding of an image thinner than the
            crop).
    """
    if size < 1:
        raise ValueError(f"a thumbnail must be at least 1 pixel, not {size}")
    left, top_edge, right, bottom = top.box
    if right <= left or bottom <= top_edge:
        raise ImageLoadError(
            f"{top.source}: the receptive field lies in the padding around the image, "
            "outside its pixels"
        )
    crop = load_image(top.source).crop(top.box)
    grows = max(crop.size) < size
    resample = Image.Resampling.NEAREST if grows else Image.Resampling.LANCZOS
    return ImageOps.contain(crop, (size, size), resample)


def statistics_words(atlas: Atlas, layer: str, channel: int) -> str:
    """The dataset's statistics of ``channel`` at ``layer`` in one line: ``"over 120 images:
    score mean 2.27 ± 0.206 · active in 100 % · mean activation 0.768"`` (empty when the index
    has none)."""
    statistics = atlas.statistics(layer)
    if not statistics:
        return ""
    rows = np.flatnonzero(np.asarray(statistics["channel"]) == channel)
    if rows.size == 0:
        return ""
    row = int(rows[0])

    def value(name: str) -> float:
        return float(statistics[name][row])

    return (
        f"over {int(value('images'))} images: score mean {value('mean'):.3g} "
        f"± {value('std'):.3g} · active in {value('active_fraction') * 100:.3g} % · "
        f"mean activation {value('mean_activation'):.3g}"
    )


def atlas_title(atlas: Atlas, layer: str, channel: int) -> str:
    """``"ResNet101 · C3 · channel 17: the 9 dataset images that excite it most"``."""
    model = str(atlas.network.get("model", "?"))
    count = len(atlas.top(layer, channel))
    return (
        f"{MODEL_LABELS.get(model, model)} · {layer} · channel {channel}: the {count} dataset "
        f"image{'s' if count != 1 else ''} that excite it most"
    )


def atlas_caption(
    atlas: Atlas, layer: str, channel: int, *, image: str | None = None
) -> tuple[str, ...]:
    """The lines under the title: the weights and preprocessing, the dataset's statistics and
    what the score is, and (``image``) whose map is shown beside the patches."""
    preprocessing = atlas.metadata.get("preprocessing", {})
    lines = [
        f"Weights {atlas.network.get('weights', '?')} · input: resize "
        f"{preprocessing.get('resize', '?')}, crop {preprocessing.get('crop', '?')}",
    ]
    statistics = statistics_words(atlas, layer, channel)
    if statistics:
        lines.append(f"Dataset {statistics}")
    score = atlas.metadata.get("score", "the channel's spatial maximum activation")
    lines.append(f"Score: {score}; each patch is its receptive field in the source image")
    if image:
        lines.append(f"Left: this channel's map for {image} (its own min–max)")
    return tuple(lines)


def atlas_figure(
    atlas: Atlas,
    layer: str,
    channel: int,
    *,
    activation: np.ndarray | None = None,
    image: str | None = None,
    colormap: str = "viridis",
    thumbnail: int = THUMBNAIL,
    columns: int | None = None,
) -> Image.Image:
    """``channel``'s top images at ``layer`` as an annotated figure.

    Args:
        activation: the channel's ``(h, w)`` map for the image being looked at, drawn left of
            the patches with ``colormap`` (stretched over its own min–max); None: no map.
        image: the name of that image, for the caption.
        thumbnail: pixels a side of the square each patch fits.
        columns: patches per row; None: a near-square arrangement.

    A patch whose image cannot be read any more is a grey square with the reason in
    ``info.missing``; the figure is still made.

    Returns:
        An RGB image; ``figure.info["fmviz_atlas"]`` holds its `AtlasFigureInfo`.

    Raises:
        ValueError: ``layer`` is not in the index, or ``thumbnail`` is below 16 pixels.
    """
    if layer not in atlas.layers:
        raise ValueError(f"the index has no {layer}: it covers {', '.join(atlas.layers)}")
    if thumbnail < 16:
        raise ValueError(f"thumbnail must be at least 16 pixels, not {thumbnail}")
    tops = atlas.top(layer, channel)
    grid = _PatchGrid(tops, thumbnail, columns or max(1, math.ceil(math.sqrt(len(tops)))))
    map_pixels, zoom = (None, 0) if activation is None else _coloured_map(activation, colormap)
    map_width = map_pixels.shape[1] + 2 * GAP if map_pixels is not None else 0

    title = atlas_title(atlas, layer, channel)
    caption = atlas_caption(atlas, layer, channel, image=image if activation is not None else None)
    sheet = Sheet(max(720, map_width + grid.width))
    weights = str(atlas.network.get("weights", ""))
    if "untrained" in weights or "random" in weights:
        sheet.banner("untrained weights: the channels respond to chance patterns")
    sheet.text(title, 24, bold=True)
    sheet.space(4)
    for line in caption:
        sheet.text(line, 15, fill=MUTED)
    sheet.space(14)

    left, top = sheet.margin, sheet.height  # where ``sheet.block`` puts the next block
    grid.place(left + map_width, top)
    small = font(13)
    height = grid.height
    activation_box = None
    if map_pixels is not None:
        activation_box = (left, top, map_pixels.shape[1], map_pixels.shape[0])
        height = max(height, map_pixels.shape[0] + 2 + line_height(small))

    def paint(canvas: Image.Image, draw: ImageDraw.ImageDraw, *_: int) -> None:
        grid.paint(canvas, draw)
        if map_pixels is not None and activation is not None:
            canvas.paste(Image.fromarray(map_pixels, "RGB"), (left, top))
            words = f"{image or 'this image'}: {activation.shape[0]}×{activation.shape[1]}"
            at = (left, top + map_pixels.shape[0] + 2)
            draw.text(at, fitted(words, small, map_pixels.shape[1]), fill=MUTED, font=small)

    sheet.block(height, paint)
    figure = sheet.render()
    figure.info[INFO_KEY] = AtlasFigureInfo(
        title=title,
        caption=caption,
        patches=tuple(grid.boxes),
        missing=tuple(grid.missing),
        activation=activation_box,
        zoom=zoom,
    )
    return figure


class _PatchGrid:
    """The patches of ``tops`` in rows of ``columns``, each in a ``thumbnail`` square with its
    rank, score and file name below; read when made, placed by ``place``."""

    def __init__(self, tops: Sequence[TopImage], thumbnail: int, columns: int) -> None:
        self.tops, self.thumbnail, self.columns = list(tops), thumbnail, columns
        self.face, self.small = font(15), font(13)
        labels = line_height(self.face) + line_height(self.small) + 4
        self.cell = (thumbnail + GAP, thumbnail + 4 + labels + GAP)  # width, height
        rows = max(1, math.ceil(len(self.tops) / columns))
        self.width = columns * self.cell[0] - GAP
        self.height = rows * self.cell[1]
        self.pictures: list[Image.Image | None] = []
        self.missing: list[str] = []
        for top in self.tops:
            try:
                self.pictures.append(patch_image(top, thumbnail))
            except (OSError, ValueError) as error:
                self.pictures.append(None)
                self.missing.append(f"{top.source}: {' '.join(str(error).split())}")
        self.boxes: list[tuple[int, int, int, int]] = []

    def _square(self, index: int) -> tuple[int, int]:
        row, column = divmod(index, self.columns)
        return self.left + column * self.cell[0], self.top + row * self.cell[1]

    def place(self, left: int, top: int) -> None:
        """Put the grid's top-left corner at ``(left, top)``: each patch centred in its
        square, on whole pixels (``boxes``)."""
        self.left, self.top = left, top
        size = self.thumbnail
        self.boxes = []
        for index, picture in enumerate(self.pictures):
            x, y = self._square(index)
            width, height = picture.size if picture is not None else (size, size)
            self.boxes.append((x + (size - width) // 2, y + (size - height) // 2, width, height))

    def paint(self, canvas: Image.Image, draw: ImageDraw.ImageDraw) -> None:
        size = self.thumbnail
        for index, (found, picture) in enumerate(zip(self.tops, self.pictures, strict=True)):
            x, y = self._square(index)
            square = (x - 1, y - 1, x + size, y + size)
            if picture is None:
                draw.rectangle(square, fill=MISSING, outline=FRAME)
                at = (x + size // 2, y + size // 2)
                draw.text(at, "cannot read", fill=MUTED, font=self.small, anchor="mm")
            else:
                draw.rectangle(square, outline=FRAME)
                canvas.paste(picture, self.boxes[index][:2])
            below = y + size + 4
            words = f"#{found.rank} · {found.score:.4g}"
            draw.text((x, below), words, fill=INK, font=self.face)
            name = fitted(Path(found.source).name, self.small, size)
            draw.text((x, below + line_height(self.face)), name, fill=MUTED, font=self.small)


def _coloured_map(values: np.ndarray, colormap: str) -> tuple[np.ndarray, int]:
    """``values`` ``(h, w)`` stretched over ``colormap`` by their own min–max and enlarged by a
    whole number towards ``MAP_SIDE``: ``(pixels (H, W, 3) uint8, zoom)``."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"activation must be an (h, w) map, not of shape {values.shape}")
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    levels = np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)
    pixels = colormap_table(colormap)[levels][..., :3]
    zoom = max(1, MAP_SIDE // max(values.shape))
    pixels = np.repeat(np.repeat(pixels, zoom, axis=0), zoom, axis=1)
    return np.ascontiguousarray(pixels), zoom


def atlas_metadata(atlas: Atlas, layer: str, channel: int, info: AtlasFigureInfo) -> dict[str, str]:
    """PNG text chunks of an atlas figure: software, model, weights (and their SHA-256),
    preprocessing, ``layer``, ``channel``, the index folder, ``statistics`` (JSON of the
    channel's row), ``top`` (JSON: rank, score, source, box of each patch), the title, the
    caption, where the patches are, and the patches that could not be read."""
    network = atlas.network
    statistics = atlas.statistics(layer)
    row: dict[str, float] = {}
    if statistics:
        rows = np.flatnonzero(np.asarray(statistics["channel"]) == channel)
        if rows.size:
            row = {name: float(values[rows[0]]) for name, values in statistics.items()}
    tops = [
        {"rank": t.rank, "score": t.score, "source": t.source, "box": list(t.box)}
        for t in atlas.top(layer, channel)
    ]
    preprocessing = atlas.metadata.get("preprocessing", {})
    text = {
        "software": f"fmviz {__version__}",
        "model": str(network.get("model", "")),
        "weights": str(network.get("weights", "")),
        "weights_sha256": str(network.get("weights_sha256") or "none (random weights)"),
        "preprocessing": str(preprocessing.get("description", "")),
        "index": str(atlas.folder),
        "layer": layer,
        "channel": str(channel),
        "score": str(atlas.metadata.get("score", "")),
        "statistics": _json(row),
        "top": _json(tops),
        "title": info.title,
        "caption": " | ".join(info.caption),
        "placement": "; ".join(
            f"#{rank}: {w}×{h} at x={x}, y={y}"
            for rank, (x, y, w, h) in enumerate(info.patches, start=1)
        ),
    }
    if info.missing:
        text["missing"] = " | ".join(info.missing)
    return text


def save_atlas_figure(
    path: str | os.PathLike[str],
    atlas: Atlas,
    layer: str,
    channel: int,
    *,
    batch: WriteBatch | None = None,
    **options: object,
) -> Path:
    """Write ``atlas_figure(atlas, layer, channel, **options)`` as a PNG with
    ``atlas_metadata`` as text chunks, atomically (``export.save_png``)."""
    figure = atlas_figure(atlas, layer, channel, **options)  # type: ignore[arg-type]
    info: AtlasFigureInfo = figure.info[INFO_KEY]
    return save_png(path, figure, atlas_metadata(atlas, layer, channel, info), batch=batch)


def _json(value: Mapping[str, object] | Sequence[object]) -> str:
    return json.dumps(value, ensure_ascii=False)


__all__ = [
    "AtlasFigureInfo",
    "atlas_caption",
    "atlas_figure",
    "atlas_metadata",
    "atlas_title",
    "patch_image",
    "save_atlas_figure",
    "statistics_words",
]

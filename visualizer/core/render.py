"""Stage activations and Grad-CAM maps as pictures: tile grids and overlays, as uint8 arrays.

A grid is kept as one byte per pixel, a colormap index, plus a 256-entry palette: indices
0–254 are the colormap's levels, 255 is the gutter between tiles. That is what a display's
lookup table and a palette PNG take directly, and RGBA is one table lookup away.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cmap
import numpy as np
import torch
from PIL import Image

from visualizer.choices import COLORMAPS, ORDERS, SCALES

LEVELS = 255  # colormap levels of a grid; index 255 is the gutter
GUTTER_INDEX = LEVELS
GUTTER_COLOR = (255, 255, 255)


@functools.cache
def colormap_table(name: str, levels: int = 256) -> np.ndarray:
    """``levels`` RGBA uint8 colours of a named colormap, from the ``cmap`` library.

    Raises:
        ValueError: ``name`` is not one of ``COLORMAPS``.
    """
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}: choose one of {', '.join(COLORMAPS)}")
    table = cmap.Colormap(name)(np.linspace(0.0, 1.0, levels), bytes=True)
    table = np.ascontiguousarray(table, dtype=np.uint8)
    table.setflags(write=False)
    return table


@functools.cache
def grid_palette(colormap: str, gutter: tuple[int, int, int] = GUTTER_COLOR) -> np.ndarray:
    """The 256 RGBA colours of a grid: the colormap's ``LEVELS`` levels, then the gutter."""
    palette = np.empty((256, 4), np.uint8)
    palette[:LEVELS] = colormap_table(colormap, LEVELS)
    palette[GUTTER_INDEX] = (*gutter, 255)
    palette.setflags(write=False)
    return palette


@dataclass(frozen=True)
class GridLayout:
    """Where each channel's tile sits in a grid: row-major, in ``order``."""

    rows: int
    columns: int
    tile_height: int
    tile_width: int
    gutter: int
    order: tuple[int, ...]  # the channel shown at each tile position

    @property
    def shape(self) -> tuple[int, int]:
        """The grid's ``(height, width)`` in pixels."""
        return (
            self.rows * (self.tile_height + self.gutter) - self.gutter,
            self.columns * (self.tile_width + self.gutter) - self.gutter,
        )

    def channel_at(self, y: int, x: int) -> int | None:
        """The channel whose tile covers pixel ``(y, x)``; None on a gutter or an empty slot."""
        row, in_y = divmod(int(y), self.tile_height + self.gutter)
        column, in_x = divmod(int(x), self.tile_width + self.gutter)
        if y < 0 or x < 0 or in_y >= self.tile_height or in_x >= self.tile_width:
            return None
        position = row * self.columns + column
        if row >= self.rows or column >= self.columns or position >= len(self.order):
            return None
        return self.order[position]

    def tile_origin(self, channel: int) -> tuple[int, int]:
        """The ``(y, x)`` of the top-left pixel of ``channel``'s tile."""
        row, column = divmod(self.order.index(channel), self.columns)
        return row * (self.tile_height + self.gutter), column * (self.tile_width + self.gutter)


@dataclass(frozen=True, eq=False)
class Grid:
    """A stage as a tile grid: colormap indices, their palette, and the layout."""

    indices: np.ndarray  # (H, W) uint8: 0–254 colormap levels, 255 gutter
    palette: np.ndarray  # (256, 4) uint8 RGBA
    layout: GridLayout
    colormap: str
    scale: str
    order: str

    def rgba(self) -> np.ndarray:
        """The grid as an ``(H, W, 4)`` uint8 RGBA array."""
        return np.asarray(self.to_image().convert("RGBA"))  # Pillow's palette lookup is C

    def to_image(self) -> Image.Image:
        """The grid as a palette image (mode ``"P"``), which PNG stores at one byte a pixel."""
        image = Image.fromarray(self.indices, "L")
        # RGB, not RGBA: an opaque palette keeps the PNG free of a needless tRNS chunk.
        image.putpalette(np.ascontiguousarray(self.palette[:, :3]).tobytes(), "RGB")
        return image


def grid_layout(
    order: Sequence[int],
    tile_height: int,
    tile_width: int,
    *,
    gutter: int = 1,
    columns: int | None = None,
) -> GridLayout:
    """A near-square arrangement of one tile per channel in ``order``."""
    if not order:
        raise ValueError("a grid needs at least one channel")
    columns = columns or math.ceil(math.sqrt(len(order)))
    rows = math.ceil(len(order) / columns)
    return GridLayout(rows, columns, tile_height, tile_width, gutter, tuple(order))


def layout_scale(
    count: int, tile_height: int, tile_width: int, columns: int, aspect: float, *, gutter: int = 1
) -> float:
    """How large ``count`` tiles in ``columns`` columns show in a box ``aspect`` wide and 1
    high: the box's size ÷ the grid's, in the tighter direction."""
    rows = math.ceil(count / columns)
    width = columns * (tile_width + gutter) - gutter
    height = rows * (tile_height + gutter) - gutter
    return min(aspect / width, 1.0 / height)


def fitting_columns(
    count: int, tile_height: int, tile_width: int, aspect: float, *, gutter: int = 1
) -> int:
    """The number of tile columns that shows ``count`` tiles largest in a box whose width is
    ``aspect`` × its height; among layouts within 2 % of the largest, the one with the fewest
    empty slots in its last row.

    Examples::

        fitting_columns(64, 224, 224, 1.0)  # 8: 8×8 in a square
        fitting_columns(64, 224, 224, 16 / 9)  # 11: 11×6 (two empty slots) in a wide pane
    """
    if count < 1:
        raise ValueError("a grid needs at least one channel")
    if not aspect > 0:
        raise ValueError(f"aspect must be positive, not {aspect}")
    candidates = [
        (
            layout_scale(count, tile_height, tile_width, columns, aspect, gutter=gutter),
            math.ceil(count / columns) * columns - count,
            columns,
        )
        for columns in range(1, count + 1)
    ]
    best = max(scale for scale, _, _ in candidates)
    return min((empty, columns) for scale, empty, columns in candidates if scale >= 0.98 * best)[1]


def channel_order(
    stage: torch.Tensor, by: str = "index", weights: torch.Tensor | None = None
) -> list[int]:
    """Channel indices ``by`` index, by mean activation or by Grad-CAM weight (highest first)."""
    if by == "index":
        return list(range(stage.shape[0]))
    if by == "mean":
        keys = stage.float().mean(dim=(1, 2))
    elif by == "gradcam":
        if weights is None or weights.numel() != stage.shape[0]:
            raise ValueError("ordering by Grad-CAM needs one weight per channel")
        keys = weights.float().flatten()
    else:
        raise ValueError(f"unknown channel order {by!r}: choose one of {', '.join(ORDERS)}")
    # Stable, so equal keys keep index order.
    return torch.sort(keys.cpu(), descending=True, stable=True).indices.tolist()


def render_grid(
    stage: torch.Tensor,
    *,
    colormap: str = "viridis",
    scale: str = "channel",
    order: str | Sequence[int] = "index",
    weights: torch.Tensor | None = None,
    gutter: int = 1,
    columns: int | None = None,
    top: int | None = None,
) -> Grid:
    """A stage's channels ``(C, H, W)`` as a tile grid.

    Args:
        scale: ``"channel"`` stretches each channel over the colormap by its own minimum and
            maximum; ``"stage"`` uses one minimum and maximum for the whole stage.
        order: ``"index"``, ``"mean"``, ``"gradcam"`` (needs ``weights``, the Grad-CAM channel
            weights) or an explicit list of channels to show.
        top: show only the first ``top`` channels of the order.
    """
    if stage.ndim != 3:
        raise ValueError(f"expected a (C, H, W) stage tensor, got shape {tuple(stage.shape)}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    palette = grid_palette(colormap)
    channels = channel_order(stage, order, weights) if isinstance(order, str) else list(order)
    if top is not None:
        if top < 1:
            raise ValueError(f"top must be at least 1, not {top}")
        channels = channels[:top]
    _, height, width = stage.shape
    layout = grid_layout(channels, height, width, gutter=gutter, columns=columns)
    values = stage.detach().float()
    if channels != list(range(stage.shape[0])):
        values = values[torch.as_tensor(channels, device=values.device)]
    levels = quantize(values, per_channel=scale == "channel")
    grid = np.full(layout.shape, GUTTER_INDEX, np.uint8)
    full_rows, rest = divmod(len(channels), layout.columns)
    # Tiles are written straight into their places in the grid, through a strided view.
    tiles = np.lib.stride_tricks.as_strided(
        grid,
        shape=(layout.rows, height, layout.columns, width),
        strides=((height + gutter) * grid.shape[1], grid.shape[1], width + gutter, 1),
    )
    blocks = levels[: full_rows * layout.columns].reshape(full_rows, layout.columns, height, width)
    tiles[:full_rows] = blocks.transpose(0, 2, 1, 3)
    if rest:
        tiles[full_rows, :, :rest] = levels[full_rows * layout.columns :].transpose(1, 0, 2)
    return Grid(
        indices=grid,
        palette=palette,
        layout=layout,
        colormap=colormap,
        scale=scale,
        order=order if isinstance(order, str) else "custom",
    )


def quantize(values: torch.Tensor, *, per_channel: bool) -> np.ndarray:
    """``(C, H, W)`` values as uint8 levels 0…``LEVELS - 1``, min–max stretched.

    Each channel by itself, or the whole stage at once; a flat channel (or stage) is level 0.
    """
    flat = values.reshape(values.shape[0], -1)
    if per_channel:
        low, high = torch.aminmax(flat, dim=1)
        low, high = low[:, None], high[:, None]
    else:
        low, high = torch.aminmax(flat)
    span = high - low
    # Subtract, then divide by the span: x·f − low·f would lose whole levels far from zero,
    # and LEVELS / span would overflow for a denormal span.
    unit = (flat - low).div_(torch.where(span > 0, span, torch.ones_like(span)))
    # ½ + (LEVELS − 1)·unit, truncated: rounded levels 0 … LEVELS − 1, in one in-place pass.
    torch.add(torch.tensor(0.5, dtype=unit.dtype), unit, alpha=LEVELS - 1, out=unit)
    levels = unit.to(torch.uint8)
    return levels.reshape(values.shape).cpu().numpy()


def heatmap(cam: np.ndarray, colormap: str = "turbo") -> np.ndarray:
    """A map in [0, 1] as ``(H, W, 3)`` uint8 colours."""
    table = colormap_table(colormap)
    indices = np.clip(np.rint(np.nan_to_num(cam) * 255), 0, 255).astype(np.uint8)
    return table[indices, :3]


def overlay(
    view: Image.Image, cam: np.ndarray, *, opacity: float = 0.5, colormap: str = "turbo"
) -> np.ndarray:
    """The Grad-CAM ``cam`` (H, W in [0, 1]) blended over ``view`` as ``(H, W, 3)`` uint8."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, not {opacity}")
    base = np.asarray(view.convert("RGB"), dtype=np.float32)
    if base.shape[:2] != cam.shape:
        raise ValueError(f"the map is {cam.shape} but the image is {base.shape[:2]}")
    colours = heatmap(cam, colormap).astype(np.float32)
    blended = base * (1.0 - opacity) + colours * opacity
    return np.rint(blended).astype(np.uint8)

"""render: grid layout, min–max levels, channel order, colormaps, palette images, overlays."""

from __future__ import annotations

import warnings

import cmap
import numpy as np
import pytest
import torch
from PIL import Image

from visualizer.core.render import (
    COLORMAPS,
    GUTTER_COLOR,
    GUTTER_INDEX,
    LEVELS,
    ORDERS,
    SCALES,
    Grid,
    GridLayout,
    channel_order,
    colormap_table,
    grid_layout,
    grid_palette,
    heatmap,
    overlay,
    quantize,
    render_grid,
)

# A 2×3 tile holding the values 0…5 in some order: per-channel min–max maps value v to
# round(v * 254 / 5), no ties.
SIX_LEVELS = np.array([0, 51, 102, 152, 203, 254], np.uint8)


def permuted_stage(channels: int, height: int = 2, width: int = 3, seed: int = 0) -> torch.Tensor:
    """``channels`` tiles, each a different permutation of 0 … height*width - 1."""
    generator = torch.Generator().manual_seed(seed)
    tiles = [torch.randperm(height * width, generator=generator) for _ in range(channels)]
    return torch.stack(tiles).reshape(channels, height, width).float()


def tile(grid: Grid, channel: int) -> np.ndarray:
    """The pixels of ``channel``'s tile in ``grid``."""
    layout = grid.layout
    y, x = layout.tile_origin(channel)
    return grid.indices[y : y + layout.tile_height, x : x + layout.tile_width]


def gutter_mask(layout: GridLayout) -> np.ndarray:
    """True where ``layout.channel_at`` finds no channel, pixel by pixel."""
    height, width = layout.shape
    return np.array(
        [[layout.channel_at(y, x) is None for x in range(width)] for y in range(height)], bool
    )


# --- layout --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "columns", "rows", "expected_columns"),
    [
        (64, None, 8, 8),
        (5, None, 2, 3),
        (1, None, 1, 1),
        (2, None, 1, 2),
        (10, None, 3, 4),
        (512, None, 23, 23),
        (2048, None, 45, 46),
        (5, 5, 1, 5),
        (5, 1, 5, 1),
        (10, 4, 3, 4),
        (3, 8, 1, 8),
    ],
)
def test_grid_layout_is_near_square_unless_told(
    channels: int, columns: int | None, rows: int, expected_columns: int
) -> None:
    layout = grid_layout(range(channels), 7, 9, columns=columns)
    assert (layout.rows, layout.columns) == (rows, expected_columns)
    assert layout.order == tuple(range(channels))
    assert (layout.tile_height, layout.tile_width, layout.gutter) == (7, 9, 1)
    assert layout.shape == (rows * 8 - 1, expected_columns * 10 - 1)


def test_grid_layout_needs_a_channel() -> None:
    with pytest.raises(ValueError, match="at least one channel"):
        grid_layout([], 2, 2)


@pytest.mark.parametrize(
    ("channels", "columns", "gutter"),
    [
        (64, None, 1),
        (64, None, 0),
        (5, None, 1),
        (5, None, 0),
        (1, None, 1),
        (1, None, 0),
        (512, None, 1),
        (7, 3, 2),
        (5, 5, 1),
    ],
)
def test_render_grid_places_every_tile_and_fills_the_rest_with_the_gutter(
    channels: int, columns: int | None, gutter: int
) -> None:
    stage = permuted_stage(channels)
    grid = render_grid(stage, gutter=gutter, columns=columns)
    layout = grid.layout
    expected_columns = columns or int(np.ceil(np.sqrt(channels)))
    rows = -(-channels // expected_columns)
    assert (layout.rows, layout.columns, layout.gutter) == (rows, expected_columns, gutter)
    assert grid.indices.shape == layout.shape
    assert layout.shape == (rows * (2 + gutter) - gutter, expected_columns * (3 + gutter) - gutter)
    assert grid.indices.dtype == np.uint8
    assert grid.indices.flags.c_contiguous
    # Levels stop at 254, so 255 marks exactly the gutters and the empty slots.
    np.testing.assert_array_equal(grid.indices == GUTTER_INDEX, gutter_mask(layout))
    for channel in range(channels):
        values = stage[channel].numpy().astype(int)
        np.testing.assert_array_equal(tile(grid, channel), SIX_LEVELS[values])


def test_default_gutter_is_one_pixel_of_gutter_index() -> None:
    grid = render_grid(permuted_stage(4))  # 2 × 2 tiles of 2 × 3
    assert grid.layout.gutter == 1
    assert grid.indices.shape == (5, 7)
    assert (grid.indices[2, :] == GUTTER_INDEX).all()
    assert (grid.indices[:, 3] == GUTTER_INDEX).all()
    assert (np.delete(np.delete(grid.indices, 2, axis=0), 3, axis=1) < GUTTER_INDEX).all()


def test_empty_slots_are_gutter() -> None:
    grid = render_grid(permuted_stage(5), gutter=0)  # 3 columns × 2 rows, one slot empty
    assert grid.indices.shape == (4, 9)
    assert (grid.indices[2:, 6:] == GUTTER_INDEX).all()
    assert (grid.indices[2:, :6] < GUTTER_INDEX).all()
    assert grid.layout.channel_at(3, 8) is None
    assert grid.layout.channel_at(2, 6) is None
    assert grid.layout.channel_at(2, 5) == 4


@pytest.mark.parametrize("gutter", [0, 1, 3])
def test_channel_at_and_tile_origin_agree(gutter: int) -> None:
    layout = grid_layout([4, 0, 3, 1, 2], 2, 3, gutter=gutter)  # 3 columns, 2 rows
    step_y, step_x = 2 + gutter, 3 + gutter
    for position, channel in enumerate(layout.order):
        row, column = divmod(position, 3)
        assert layout.tile_origin(channel) == (row * step_y, column * step_x)
        y, x = layout.tile_origin(channel)
        for dy in range(2):
            for dx in range(3):
                assert layout.channel_at(y + dy, x + dx) == channel
        if gutter:
            assert layout.channel_at(y + 2, x) is None
            assert layout.channel_at(y, x + 3) is None
            assert layout.channel_at(y + 2 + gutter - 1, x + 3 + gutter - 1) is None


@pytest.mark.parametrize("gutter", [0, 1])
@pytest.mark.parametrize(
    "point", [(-1, 0), (0, -1), (-1, -1), ("height", 0), (0, "width"), (100, 100), (-5, 2)]
)
def test_channel_at_outside_the_grid_is_none(
    gutter: int, point: tuple[int | str, int | str]
) -> None:
    layout = grid_layout(range(6), 2, 3, gutter=gutter)  # 3 × 2, full
    height, width = layout.shape
    y = height if point[0] == "height" else point[0]
    x = width if point[1] == "width" else point[1]
    assert layout.channel_at(y, x) is None


def test_tile_origin_of_a_channel_not_shown_raises() -> None:
    layout = grid_layout([2, 0], 2, 2)
    with pytest.raises(ValueError, match="not in tuple"):
        layout.tile_origin(1)


# --- min–max levels ------------------------------------------------------------------------

STAGE = torch.tensor(
    [
        [[0.0, 1.0], [2.0, 4.0]],
        [[-3.0, -1.0], [-2.0, 5.0]],
        [[7.0, 7.0], [7.0, 7.0]],
    ]
)


def strip(stage: torch.Tensor, **options: object) -> np.ndarray:
    """The grid of ``stage`` as one row of tiles without gutters."""
    return render_grid(stage, gutter=0, columns=stage.shape[0], **options).indices


def test_per_channel_min_max_levels() -> None:
    assert LEVELS - 1 == 254
    expected = np.array(
        [
            [0, 64, 0, 64, 0, 0],  # 1 → 63.5 → 64;  -1 → 63.5 → 64
            [127, 254, 32, 254, 0, 0],  # 2 → 127;  -2 → 31.75 → 32;  constant → 0
        ],
        np.uint8,
    )
    np.testing.assert_array_equal(strip(STAGE), expected)
    np.testing.assert_array_equal(strip(STAGE, scale="channel"), expected)


def test_stage_min_max_levels() -> None:
    # One scale for all: -3 → 0, 7 → 254, a step of 1 is 25.4 levels.
    expected = np.array(
        [
            [76, 102, 0, 51, 254, 254],
            [127, 178, 25, 203, 254, 254],
        ],
        np.uint8,
    )
    np.testing.assert_array_equal(strip(STAGE, scale="stage"), expected)


@pytest.mark.parametrize("scale", list(SCALES))
def test_a_flat_stage_is_level_zero(scale: str) -> None:
    grid = render_grid(torch.full((3, 2, 2), -2.5), gutter=0, scale=scale)
    assert (grid.indices[:2, :] == 0).all()  # two tiles in the first row
    assert (grid.indices[2:, :2] == 0).all()
    assert (grid.indices[2:, 2:] == GUTTER_INDEX).all()


@pytest.mark.parametrize("scale", list(SCALES))
@pytest.mark.parametrize(
    ("shift", "spread"),
    [(0.0, 1.0), (0.0, 1e-3), (0.0, 1e4), (-50.0, 3.0), (2.0, 0.5), (0.0, 1e-20)],
)
def test_levels_span_the_colormap_and_never_reach_the_gutter(
    scale: str, shift: float, spread: float
) -> None:
    generator = torch.Generator().manual_seed(1)
    stage = shift + spread * torch.randn((16, 9, 11), generator=generator)
    levels = quantize(stage, per_channel=scale == "channel")
    assert levels.dtype == np.uint8
    assert levels.max() == LEVELS - 1
    assert levels.min() == 0
    if scale == "channel":
        assert (levels.reshape(16, -1).min(axis=1) == 0).all()
        assert (levels.reshape(16, -1).max(axis=1) == LEVELS - 1).all()
    grid = render_grid(stage, scale=scale, gutter=0)
    assert (grid.indices < GUTTER_INDEX).all()


@pytest.mark.parametrize(
    "values",
    [
        [37.3, 37.301],  # comes out as [1, 255]: the maximum on the gutter's index
        [300.0, 300.001],  # [254, 251]: the minimum at the top of the colormap
        [10000.0, 10000.01],  # [253, 250]
        [1e-40, 3e-40],  # [0, 0]: 254 / span overflows to inf, and 0 * inf is NaN
    ],
)
def test_levels_of_values_far_from_zero(values: list[float]) -> None:
    stage = torch.tensor(values).reshape(1, 1, 2)
    np.testing.assert_array_equal(render_grid(stage).indices, [[0, LEVELS - 1]])


# --- channel order -------------------------------------------------------------------------

# Means 1, 3, 3, 0, 2: "mean" gives 1, 2 (tie, index order), 4, 0, 3.
ORDERED = torch.tensor([1.0, 3.0, 3.0, 0.0, 2.0])[:, None, None] + torch.tensor(
    [[-1.0, 0.0, 1.0], [0.5, 0.0, -0.5]]
)


@pytest.mark.parametrize(
    ("by", "weights", "expected"),
    [
        ("index", None, [0, 1, 2, 3, 4]),
        ("mean", None, [1, 2, 4, 0, 3]),
        ("gradcam", torch.tensor([0.1, -0.5, 0.3, 0.3, 0.0]), [2, 3, 0, 4, 1]),
        ("gradcam", torch.tensor([0.1, -0.5, 0.3, 0.3, 0.0]).reshape(1, 5, 1, 1), [2, 3, 0, 4, 1]),
        ("gradcam", torch.zeros(5, dtype=torch.float64), [0, 1, 2, 3, 4]),
    ],
)
def test_channel_order(by: str, weights: torch.Tensor | None, expected: list[int]) -> None:
    assert channel_order(ORDERED, by, weights) == expected
    grid = render_grid(ORDERED, order=by, weights=weights, gutter=0)
    assert grid.layout.order == tuple(expected)
    assert grid.order == by
    reference = render_grid(ORDERED, gutter=0)  # index order: tile i is channel i
    for channel in expected:
        np.testing.assert_array_equal(tile(grid, channel), tile(reference, channel))
    # The first tile, top left, is the first channel of the order.
    np.testing.assert_array_equal(grid.indices[:2, :3], tile(reference, expected[0]))


@pytest.mark.parametrize("weights", [None, torch.ones(4), torch.ones(6), torch.ones(5, 2)], ids=str)
def test_gradcam_order_needs_one_weight_per_channel(weights: torch.Tensor | None) -> None:
    with pytest.raises(ValueError, match="one weight per channel"):
        render_grid(ORDERED, order="gradcam", weights=weights)


@pytest.mark.parametrize("channels", [[4, 0, 2], [3], [0, 1, 2, 3, 4], [2, 2]])
def test_an_explicit_list_shows_those_channels_in_that_order(channels: list[int]) -> None:
    grid = render_grid(ORDERED, order=channels, gutter=0)
    reference = render_grid(ORDERED, gutter=0)
    assert grid.layout.order == tuple(channels)
    assert grid.order == "custom"
    columns = int(np.ceil(np.sqrt(len(channels))))
    assert grid.layout.columns == columns
    assert grid.indices.shape == (2 * -(-len(channels) // columns), 3 * columns)
    for position, channel in enumerate(channels):
        row, column = divmod(position, columns)
        np.testing.assert_array_equal(
            grid.indices[2 * row : 2 * row + 2, 3 * column : 3 * column + 3],
            tile(reference, channel),
        )


@pytest.mark.parametrize(
    ("options", "choices"),
    [
        ({"order": "random"}, ORDERS),
        ({"order": "Index"}, ORDERS),
        ({"scale": "log"}, SCALES),
        ({"scale": "global"}, SCALES),
        ({"colormap": "jet"}, COLORMAPS),
        ({"colormap": "Viridis"}, COLORMAPS),
    ],
)
def test_unknown_choices_are_refused_with_the_list(
    options: dict[str, str], choices: tuple[str, ...] | dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="unknown") as raised:
        render_grid(ORDERED, **options)
    message = str(raised.value)
    assert repr(next(iter(options.values()))) in message
    for choice in choices:
        assert choice in message


def test_render_grid_needs_a_three_dimensional_stage() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        render_grid(torch.zeros(1, 3, 2, 2))


# --- colormaps -----------------------------------------------------------------------------


def assert_read_only_rgba_table(table: np.ndarray) -> None:
    """A (256, 4) uint8 colour table that cannot be changed by accident."""
    assert table.shape == (256, 4)
    assert table.dtype == np.uint8
    assert not table.flags.writeable


@pytest.mark.parametrize("name", COLORMAPS)
def test_colormap_tables(name: str) -> None:
    table = colormap_table(name)
    assert_read_only_rgba_table(table)
    assert (table[:, 3] == 255).all()
    assert colormap_table(name) is table  # made once
    with pytest.raises(ValueError, match="read-only"):
        table[0, 0] = 1


@pytest.mark.parametrize("name", COLORMAPS)
def test_colormap_ends_match_the_cmap_library(name: str) -> None:
    table = colormap_table(name)
    colormap = cmap.Colormap(name)
    np.testing.assert_array_equal(table[0], colormap(0.0, bytes=True))
    np.testing.assert_array_equal(table[-1], colormap(1.0, bytes=True))


def test_gray_runs_from_black_to_white() -> None:
    table = colormap_table("gray").astype(int)
    assert tuple(table[0]) == (0, 0, 0, 255)
    assert tuple(table[255]) == (255, 255, 255, 255)
    assert (table[:, 0] == table[:, 1]).all()
    assert (table[:, 1] == table[:, 2]).all()
    assert (np.diff(table[:, 0]) >= 0).all()
    assert (np.diff(table[:, 0]) <= 2).all()


def test_unknown_colormap_table() -> None:
    with pytest.raises(ValueError, match="unknown colormap 'jet'") as raised:
        colormap_table("jet")
    for name in COLORMAPS:
        assert name in str(raised.value)


@pytest.mark.parametrize("name", COLORMAPS)
def test_grid_palette_is_the_colormap_then_the_gutter(name: str) -> None:
    palette = grid_palette(name)
    assert_read_only_rgba_table(palette)
    np.testing.assert_array_equal(palette[:LEVELS], colormap_table(name, LEVELS))
    assert tuple(palette[GUTTER_INDEX]) == (*GUTTER_COLOR, 255)
    # Level 0 and level 254 are the two ends of the colormap.
    np.testing.assert_array_equal(palette[0], colormap_table(name)[0])
    np.testing.assert_array_equal(palette[LEVELS - 1], colormap_table(name)[255])


def test_grid_palette_with_another_gutter_colour() -> None:
    palette = grid_palette("gray", (1, 2, 3))
    assert tuple(palette[GUTTER_INDEX]) == (1, 2, 3, 255)
    np.testing.assert_array_equal(palette[:LEVELS], grid_palette("gray")[:LEVELS])


# --- RGBA and palette images ---------------------------------------------------------------


@pytest.mark.parametrize("colormap", COLORMAPS)
@pytest.mark.parametrize("gutter", [0, 1])
def test_rgba_is_the_palette_looked_up(colormap: str, gutter: int) -> None:
    stage = torch.randn((5, 4, 6), generator=torch.Generator().manual_seed(2))
    grid = render_grid(stage, colormap=colormap, gutter=gutter)
    assert grid.colormap == colormap
    assert grid.palette is grid_palette(colormap)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgba = grid.rgba()
    assert rgba.shape == (*grid.indices.shape, 4)
    assert rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba, grid.palette[grid.indices])


@pytest.mark.parametrize("colormap", ["viridis", "gray", "turbo"])
def test_to_image_is_a_palette_image(colormap: str) -> None:
    stage = torch.randn((7, 3, 5), generator=torch.Generator().manual_seed(3))
    grid = render_grid(stage, colormap=colormap)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = grid.to_image()
        rgb = np.asarray(image.convert("RGB"))
    assert image.mode == "P"
    assert image.size == (grid.indices.shape[1], grid.indices.shape[0])
    np.testing.assert_array_equal(np.asarray(image), grid.indices)
    np.testing.assert_array_equal(rgb, grid.palette[grid.indices][..., :3])
    assert image.getpalette() == grid.palette[:, :3].ravel().tolist()
    assert "transparency" not in image.info


# --- heatmap and overlay -------------------------------------------------------------------

CAM = np.array([[0.0, 0.25, 1.0], [0.5, 1.0, 0.75]], np.float32)
VIEW = np.array([[[100, 50, 20], [0, 0, 0], [11, 21, 31]], [[255] * 3, [9, 8, 7], [1, 2, 3]]])


def view_image() -> Image.Image:
    return Image.fromarray(VIEW.astype(np.uint8))


@pytest.mark.parametrize("colormap", COLORMAPS)
def test_heatmap_is_the_colormap_at_the_rounded_level(colormap: str) -> None:
    colours = heatmap(CAM, colormap)
    assert colours.shape == (2, 3, 3)
    assert colours.dtype == np.uint8
    levels = np.rint(CAM * 255).astype(int)
    np.testing.assert_array_equal(colours, colormap_table(colormap)[levels, :3])


def test_heatmap_default_is_turbo_and_gray_is_the_value() -> None:
    np.testing.assert_array_equal(heatmap(CAM), heatmap(CAM, "turbo"))
    gray = heatmap(np.array([[0.0, 1.0]]), "gray")
    np.testing.assert_array_equal(gray, [[[0, 0, 0], [255, 255, 255]]])


@pytest.mark.parametrize("colormap", ["turbo", "gray", "magma"])
def test_overlay_opacity_zero_is_the_view_and_one_is_the_heatmap(colormap: str) -> None:
    view = view_image()
    clear = overlay(view, CAM, opacity=0.0, colormap=colormap)
    opaque = overlay(view, CAM, opacity=1.0, colormap=colormap)
    assert clear.dtype == opaque.dtype == np.uint8
    np.testing.assert_array_equal(clear, VIEW)
    np.testing.assert_array_equal(opaque, heatmap(CAM, colormap))


def test_overlay_blends_half_and_half() -> None:
    blended = overlay(view_image(), CAM, opacity=0.5, colormap="gray")
    assert blended.shape == (2, 3, 3)
    assert tuple(blended[0, 0]) == (50, 25, 10)  # (100, 50, 20) over black
    assert tuple(blended[0, 2]) == (133, 138, 143)  # (11, 21, 31) over white: (x + 255) / 2
    turbo = overlay(view_image(), CAM)  # default: opacity 0.5, turbo
    colour = colormap_table("turbo")[255, :3].astype(float)
    assert tuple(turbo[1, 1]) == tuple(np.rint((np.array([9, 8, 7]) + colour) / 2).astype(int))


def test_overlay_takes_any_image_mode() -> None:
    grey = Image.fromarray(np.full((2, 3), 100, np.uint8))
    np.testing.assert_array_equal(overlay(grey, CAM, opacity=0.0), np.full((2, 3, 3), 100))


@pytest.mark.parametrize("shape", [(3, 2), (2, 4), (1, 3), (2, 3, 1)])
def test_overlay_refuses_a_map_of_another_size(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="the map is"):
        overlay(view_image(), np.zeros(shape, np.float32))


@pytest.mark.parametrize("opacity", [-0.01, 1.01, 2.0, -1.0, float("nan"), float("inf")])
def test_overlay_refuses_an_opacity_outside_zero_one(opacity: float) -> None:
    with pytest.raises(ValueError, match="opacity"):
        overlay(view_image(), CAM, opacity=opacity)


def test_nan_in_the_map_does_not_crash() -> None:
    cam = CAM.copy()
    cam[0, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        colours = heatmap(cam, "gray")
        blended = overlay(view_image(), cam, opacity=1.0, colormap="gray")
    assert tuple(colours[0, 1]) == (0, 0, 0)  # NaN is taken as 0
    np.testing.assert_array_equal(blended, colours)
    np.testing.assert_array_equal(
        np.delete(colours, 1, axis=1), np.delete(heatmap(CAM, "gray"), 1, axis=1)
    )


# --- input tensors -------------------------------------------------------------------------


def reference_grid(stage: torch.Tensor, **options: object) -> np.ndarray:
    return render_grid(stage.float().contiguous(), **options).indices


@pytest.mark.parametrize("scale", list(SCALES))
def test_non_contiguous_stages(scale: str) -> None:
    base = torch.randn((6, 5, 4), generator=torch.Generator().manual_seed(4))
    views = {
        "transposed": base.transpose(1, 2),
        "channels last": base.permute(1, 2, 0).contiguous().permute(2, 0, 1),
        "strided": base[::2, :, ::2],
        "expanded": torch.randn(1, 3, 3).expand(4, 3, 3),
    }
    for name, stage in views.items():
        assert not stage.is_contiguous(), name
        grid = render_grid(stage, scale=scale)
        assert grid.indices.shape == grid.layout.shape, name
        np.testing.assert_array_equal(grid.indices, reference_grid(stage, scale=scale), name)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("scale", list(SCALES))
def test_other_floating_types(dtype: torch.dtype, scale: str) -> None:
    stage = torch.randn((5, 4, 4), generator=torch.Generator().manual_seed(5)).to(dtype)
    grid = render_grid(stage, scale=scale, order="mean")
    np.testing.assert_array_equal(grid.indices, reference_grid(stage, scale=scale, order="mean"))
    assert (grid.indices < GUTTER_INDEX).sum() == 5 * 16


def test_float16_hand_made_levels() -> None:
    np.testing.assert_array_equal(strip(STAGE.half()), strip(STAGE))
    np.testing.assert_array_equal(strip(STAGE.half(), scale="stage"), strip(STAGE, scale="stage"))


def test_a_stage_that_requires_grad() -> None:
    stage = STAGE.clone().requires_grad_()
    np.testing.assert_array_equal(strip(stage), strip(STAGE))

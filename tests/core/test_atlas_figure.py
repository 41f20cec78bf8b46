"""The atlas figure (``visualizer.core.atlas.figure``): each patch is its source image cropped to
its box and scaled, placed where the figure says; the channel's map is the colormap's colours
enlarged by a whole number; the PNG carries the index's top images and statistics as text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.core.conftest import gradient_image
from visualizer.core.analysis import Analyzer
from visualizer.core.atlas import Atlas, build_index
from visualizer.core.atlas.figure import (
    INFO_KEY,
    MISSING,
    AtlasFigureInfo,
    atlas_figure,
    patch_image,
    save_atlas_figure,
)
from visualizer.core.images import load_image
from visualizer.core.render import colormap_table

SIDE = 64  # resize and crop: a ResNet101 pass over a handful of images takes milliseconds
TOP = 3


@pytest.fixture(scope="module")
def atlas(networks, tmp_path_factory: pytest.TempPathFactory) -> Atlas:
    """An index of 5 small pictures, C2 and C3 of the session's random ResNet101, top 3."""
    folder = tmp_path_factory.mktemp("atlas-figure")
    images = folder / "images"
    images.mkdir()
    for number in range(5):
        picture = gradient_image(80 + 8 * number, 60 + 4 * number, seed=number)
        picture.save(images / f"picture{number}.png")
    analyzer = Analyzer(networks.model("resnet101"), device="cpu", resize=SIDE, crop=SIDE)
    build_index([images], folder / "index", analyzer, layers=["C2", "C3"], top=TOP, workers=0)
    return Atlas(folder / "index")


def expected_patch(source: str, box: tuple[int, int, int, int], size: tuple[int, int]):
    """The crop of ``source`` to ``box`` resized to ``size``, as the figure promises: Lanczos
    when it shrinks, nearest-neighbour when it grows."""
    crop = load_image(source).crop(box)
    grows = max(crop.size) < max(size)
    resample = Image.Resampling.NEAREST if grows else Image.Resampling.LANCZOS
    return np.asarray(crop.resize(size, resample))


def info_of(figure: Image.Image) -> AtlasFigureInfo:
    return figure.info[INFO_KEY]


@pytest.mark.parametrize("thumbnail", [24, 160])  # the crops shrink, then grow
def test_each_patch_is_its_source_cropped_to_its_box_and_scaled(atlas: Atlas, thumbnail: int):
    tops = atlas.top("C2", 5)
    figure = atlas_figure(atlas, "C2", 5, thumbnail=thumbnail)
    info = info_of(figure)
    assert len(info.patches) == len(tops) == TOP
    assert info.missing == ()
    pixels = np.asarray(figure)
    for top, (left, upper, width, height) in zip(tops, info.patches, strict=True):
        crop_width, crop_height = top.box[2] - top.box[0], top.box[3] - top.box[1]
        assert max(width, height) == thumbnail  # fitted to the square, its aspect kept
        assert width / height == pytest.approx(crop_width / crop_height, rel=0.1)
        placed = pixels[upper : upper + height, left : left + width]
        np.testing.assert_array_equal(placed, expected_patch(top.source, top.box, (width, height)))
        np.testing.assert_array_equal(np.asarray(patch_image(top, thumbnail)), placed)


def test_the_channels_map_is_the_colormap_enlarged_by_a_whole_number(atlas: Atlas):
    rng = np.random.default_rng(1)
    activation = rng.random((8, 8)).astype(np.float32) * 3 - 1
    figure = atlas_figure(atlas, "C3", 2, activation=activation, image="cat.jpg", colormap="magma")
    info = info_of(figure)
    assert info.activation is not None
    left, top, width, height = info.activation
    zoom = info.zoom
    assert (width, height) == (8 * zoom, 8 * zoom)
    assert zoom == 256 // 8
    scaled = (activation - activation.min()) / (activation.max() - activation.min())
    levels = np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)
    colours = colormap_table("magma")[levels][..., :3]
    shown = np.asarray(figure)[top : top + height : zoom, left : left + width : zoom]
    np.testing.assert_array_equal(shown, colours)
    assert any("cat.jpg" in line for line in info.caption)
    # The patches are right of the map.
    assert all(patch_left >= left + width for patch_left, *_ in info.patches)


def test_the_title_names_the_network_layer_and_channel(atlas: Atlas):
    info = info_of(atlas_figure(atlas, "C3", 7))
    assert info.title == "ResNet101 · C3 · channel 7: the 3 dataset images that excite it most"
    statistics = atlas.statistics("C3")
    row = int(np.flatnonzero(statistics["channel"] == 7)[0])
    assert any(f"over {int(statistics['images'][row])} images" in line for line in info.caption)
    assert any(f"{statistics['mean'][row]:.3g}" in line for line in info.caption)


def test_the_png_carries_the_top_images_and_statistics_as_text(atlas: Atlas, tmp_path: Path):
    activation = np.arange(16, dtype=np.float32).reshape(4, 4)
    path = save_atlas_figure(
        tmp_path / "atlas.png", atlas, "C3", 4, activation=activation, image="x.png"
    )
    assert path == tmp_path / "atlas.png"
    assert [p.name for p in tmp_path.iterdir()] == ["atlas.png"]  # no temporary left
    figure = atlas_figure(atlas, "C3", 4, activation=activation, image="x.png")
    with Image.open(path) as written:
        written.load()
        text = dict(written.text)
        assert written.size == figure.size
        np.testing.assert_array_equal(np.asarray(written.convert("RGB")), np.asarray(figure))
    assert text["layer"] == "C3"
    assert text["channel"] == "4"
    assert text["model"] == "resnet101"
    assert text["weights"] == atlas.network["weights"]
    assert text["index"] == str(atlas.folder)
    assert text["software"].startswith("fmviz ")
    assert text["title"] == info_of(figure).title
    tops = json.loads(text["top"])
    assert tops == [
        {"rank": t.rank, "score": t.score, "source": t.source, "box": list(t.box)}
        for t in atlas.top("C3", 4)
    ]
    statistics = atlas.statistics("C3")
    row = int(np.flatnonzero(statistics["channel"] == 4)[0])
    assert json.loads(text["statistics"]) == {
        name: float(values[row]) for name, values in statistics.items()
    }
    assert "missing" not in text


def test_an_image_gone_since_indexing_leaves_a_grey_square(atlas: Atlas, tmp_path: Path):
    tops = atlas.top("C2", 1)
    gone = Path(tops[1].source)
    kept = gone.read_bytes()
    gone.unlink()
    try:
        figure = atlas_figure(atlas, "C2", 1, thumbnail=32)
        path = save_atlas_figure(tmp_path / "a.png", atlas, "C2", 1, thumbnail=32)
    finally:
        gone.write_bytes(kept)
    info = info_of(figure)
    assert len(info.missing) == 1
    assert info.missing[0].startswith(f"{gone}: ")
    left, top, width, height = info.patches[1]
    assert (width, height) == (32, 32)  # the whole square
    square = np.asarray(figure)[top + 2 : top + 6, left + 2 : left + 6]
    assert (square == MISSING).all()
    with Image.open(path) as written:
        assert written.text["missing"].startswith(str(gone))


def test_a_layer_the_index_lacks_is_refused(atlas: Atlas):
    with pytest.raises(ValueError, match="the index has no C5: it covers C2, C3"):
        atlas_figure(atlas, "C5", 0)

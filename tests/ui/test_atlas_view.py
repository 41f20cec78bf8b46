"""A dataset index in the window: File → Open index… (here ``open_index``), the Channel tab's
top dataset images of the channel clicked, a click on one opening its image, the grid ordered
by the index's statistics, and the channel's atlas exported as an annotated PNG. An index of
another network (or other preprocessing), or a folder that holds none, is refused with the
reason, and the window keeps what it had."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from visualizer.ui.atlas_jobs import DATASET_ORDERS

TOP = 4
LAYERS = ["C1", "C2", "C3"]  # C4 and C5 are not indexed
WAIT_MS = 30_000


def save_picture(path: Path, width: int, height: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(4 + seed) * x, 5 * y, (x * y * (seed + 1)) % 256], axis=-1)
    pixels = pixels + rng.integers(0, 60, (height, width, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(path)
    return str(path)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight small pictures of different sizes."""
    folder = tmp_path_factory.mktemp("dataset")
    for number in range(8):
        save_picture(folder / f"picture{number}.png", 72 + 6 * number, 56 + 3 * number, number)
    return folder


@pytest.fixture(scope="module")
def index(dataset: Path, small_analyzer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of ``dataset`` by the windows' network (``small_analyzer``: 64×64 input)."""
    from visualizer.core.atlas import build_index

    out = tmp_path_factory.mktemp("index") / "pictures-index"
    build_index([dataset], out, small_analyzer, layers=LAYERS, top=TOP, batch_size=4, workers=0)
    return out


@pytest.fixture(scope="module")
def atlas(index: Path):
    from visualizer.core.atlas import Atlas

    return Atlas(index)


@pytest.fixture
def window(small_window, dataset: Path, tmp_path: Path, qtbot):
    """A window on one picture that is not in the dataset."""
    return small_window([save_picture(tmp_path / "own.png", 64, 64, 99)])


def opened(window, qtbot, folder: Path) -> object:
    window.open_index(str(folder))
    qtbot.waitUntil(lambda: window.state.atlas is not None, timeout=WAIT_MS)
    return window.state.atlas


def patches_of(window, qtbot, channel: int) -> list:
    with qtbot.waitSignal(window.patches_shown, timeout=WAIT_MS):
        window.show_channel(channel)
    return window.channel.atlas.tiles


def test_the_channel_tab_shows_the_top_images_of_the_channel_clicked(
    window, qtbot, index: Path, atlas
):
    assert window.channel.atlas.isHidden()  # no index: no panel
    opened(window, qtbot, index)
    assert window.close_index_action.isEnabled()
    tiles = patches_of(window, qtbot, 5)
    assert window.timing.currentWidget() is window.channel
    assert window.channel.atlas.isVisible()
    tops = atlas.top("C1", 5)
    assert len(tiles) == len(tops) == TOP
    for tile, top in zip(tiles, tops, strict=True):
        assert (tile.patch.rank, tile.patch.score, tile.patch.source) == (
            top.rank,
            top.score,
            top.source,
        )
        assert tile.patch.name == Path(top.source).name
        assert tile.text() == f"#{top.rank} · {top.score:.4g}\n{Path(top.source).name}"
        assert tile.isEnabled()
        assert not tile.icon().isNull()
    # The pixels are the source cropped to its box, fitted to the tile.
    from visualizer.core.atlas.figure import patch_image

    first = tiles[0].patch
    np.testing.assert_array_equal(first.pixels, np.asarray(patch_image(tops[0], 96)))
    assert "C1 channel 5" in window.channel.atlas.title.text()
    assert "over 8 images" in window.channel.atlas.statistics.text()

    # Another channel, another set; a stage the index lacks says so.
    tiles = patches_of(window, qtbot, 9)
    assert [tile.patch.source for tile in tiles] == [top.source for top in atlas.top("C1", 9)]
    with qtbot.waitSignal(window.view_shown, timeout=WAIT_MS):
        window.show_stage("C4")
    window.show_channel(0)
    assert window.channel.atlas.tiles == []
    assert "covers C1, C2, C3, not C4" in window.channel.atlas.statistics.text()

    window.close_index()
    assert window.state.atlas is None
    assert window.channel.atlas.isHidden()


def test_an_index_of_other_preprocessing_or_another_network_is_refused(
    window, qtbot, index: Path, dataset: Path, networks
):
    from visualizer.core.analysis import Analyzer
    from visualizer.core.atlas import build_index

    elsewhere = index.parent  # the module's folder: other indexes beside the good one
    good = opened(window, qtbot, index)
    # Other preprocessing: resized to 72 before the 64×64 crop.
    other = Analyzer(networks.model("resnet101"), device="cpu", resize=72, crop=64)
    resized = elsewhere / "resized-index"
    build_index([dataset], resized, other, layers=["C1"], top=2, workers=0)
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS) as shown:
        window.open_index(str(resized))
    assert shown.args[0] == (
        f"The index {resized} is not ResNet101's: it was made with other preprocessing (resize)"
    )
    assert window.state.atlas is good  # the index open before stays open

    # Another architecture (its metadata says VGG16).
    vgg = elsewhere / "vgg-index"
    shutil.copytree(index, vgg)
    metadata = json.loads((vgg / "index.json").read_text())
    metadata["network"]["model"] = "vgg16"
    (vgg / "index.json").write_text(json.dumps(metadata))
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS) as shown:
        window.open_index(str(vgg))
    assert shown.args[0].endswith("it was made with vgg16, not resnet101")

    # A folder with no index: the reader's one line.
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS) as shown:
        window.open_index(str(dataset))
    assert shown.args[0] == f"{dataset}: no index.json: not a complete fmviz index"
    assert window.state.atlas is good
    assert "unexpected" not in window.errors.label.text()

    # The window keeps working, with the index it had.
    with qtbot.waitSignal(window.view_shown, timeout=WAIT_MS):
        window.show_stage("C2")
    assert window.data.options.stage == "C2"
    assert len(patches_of(window, qtbot, 3)) == TOP


def test_a_click_on_a_patch_opens_its_image_on_the_same_channel(window, qtbot, index: Path):
    opened(window, qtbot, index)
    tiles = patches_of(window, qtbot, 2)
    source = tiles[1].patch.source
    before = window.current
    qtbot.mouseClick(tiles[1], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: (
            window.current != before
            and window.data is not None
            and window.data.picture == window.current
        ),
        timeout=WAIT_MS,
    )
    picture = window.pictures[window.current]
    assert os.path.samefile(picture.source, source)
    assert window.strip.count() == 2
    # The channel stays in view, now on the image opened, beside the same patches.
    assert window.channel.channel == 2
    assert window.timing.currentWidget() is window.channel
    shown = np.asarray(window.channel.channel_image.image)
    np.testing.assert_array_equal(shown, window.data.activation[2])
    assert [tile.patch.source for tile in window.channel.atlas.tiles][1] == source


@pytest.mark.parametrize("order", ["dataset-mean", "dataset-active"])
def test_the_grid_is_ordered_by_the_indexs_statistics(window, qtbot, index: Path, atlas, order):
    combo = window.controls.order
    assert combo.findData(order) == -1  # no index: not offered
    opened(window, qtbot, index)
    assert combo.findData(order) >= 0
    with qtbot.waitSignal(window.view_shown, timeout=WAIT_MS):
        combo.setCurrentIndex(combo.findData(order))
    statistics = atlas.statistics("C1")
    values = np.empty(len(statistics["channel"]))
    values[statistics["channel"]] = statistics[DATASET_ORDERS[order][0]]
    expected = tuple(np.argsort(-values, kind="stable").tolist())
    assert window.data.grid.layout.order == expected
    assert window.data.grid.layout.order != tuple(range(len(values)))

    # C2, also indexed: its own statistics.
    with qtbot.waitSignal(window.view_shown, timeout=WAIT_MS):
        window.show_stage("C2")
    values = np.empty(len(atlas.statistics("C2")["channel"]))
    values[atlas.statistics("C2")["channel"]] = atlas.statistics("C2")[DATASET_ORDERS[order][0]]
    assert window.data.grid.layout.order == tuple(np.argsort(-values, kind="stable").tolist())

    # C4 is not indexed: the orders are not offered, and the grid is in channel order.
    with qtbot.waitSignal(window.view_shown, timeout=WAIT_MS):
        window.show_stage("C4")
    assert combo.findData(order) == -1
    assert combo.currentData() == "index"
    assert window.data.grid.layout.order == tuple(range(window.data.activation.shape[0]))
    assert window.settings.value("order") in (None, "index")  # an index's order is not kept


def test_the_channels_atlas_exports_as_an_annotated_png(
    window, qtbot, index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from visualizer.core.atlas.figure import INFO_KEY, atlas_figure

    atlas = opened(window, qtbot, index)
    patches_of(window, qtbot, 6)
    asked: list[tuple[str, str]] = []

    def ask(what: str, name: str) -> str:
        asked.append((what, name))
        return str(tmp_path / name)

    monkeypatch.setattr(window, "ask_export_path", ask)
    window.channel.atlas.export_button.click()
    assert asked == [("atlas", "resnet101_C1_channel6_atlas.png")]
    target = tmp_path / asked[0][1]
    qtbot.waitUntil(lambda: window.idle() and target.is_file(), timeout=WAIT_MS)
    assert "Saved 1 file(s)" in window.statusBar().currentMessage()
    activation = window.data.activation[6]
    expected = atlas_figure(atlas, "C1", 6, activation=activation, image="own.png")
    with Image.open(target) as written:
        written.load()
        assert written.size == expected.size
        text = dict(written.text)
    assert (text["layer"], text["channel"], text["model"]) == ("C1", "6", "resnet101")
    assert text["title"] == expected.info[INFO_KEY].title
    assert [top["source"] for top in json.loads(text["top"])] == [
        top.source for top in atlas.top("C1", 6)
    ]
    assert "own.png" in text["caption"]


def test_exporting_an_atlas_without_an_index_or_a_channel_says_why(window, qtbot, index: Path):
    window.export("atlas")
    assert "No dataset index is open" in window.errors.label.text()
    opened(window, qtbot, index)
    window.export("atlas")
    assert "click a tile in the grid" in window.errors.label.text()


def test_another_architecture_closes_the_index(window, qtbot, index: Path):
    export = window.export_actions["atlas"]
    assert not export.isVisible()  # offered only with an index open
    opened(window, qtbot, index)
    assert export.isVisible()
    window.set_options(order="dataset-mean")
    assert window.options.order == "dataset-mean"
    with qtbot.waitSignal(window.error_shown, timeout=WAIT_MS) as shown:
        window.set_spec(model="vgg16")
    assert shown.args[0] == (
        f"The index {index} was closed: it was made for ResNet101 with random weights, and "
        "VGG16 with random weights is in use now."
    )
    assert window.state.atlas is None
    assert not export.isVisible()
    assert window.options.order == "index"
    assert window.controls.order.findData("dataset-mean") == -1
    assert window.channel.atlas.isHidden()
    qtbot.waitUntil(window.idle, timeout=WAIT_MS)


@pytest.mark.parametrize(
    ("layers", "span"),
    [
        (["C1", "C2", "C3", "C4", "C5"], "C1–C5"),
        (["C2", "C3", "C4"], "C2–C4"),
        (["C1", "C3", "C5"], "C1, C3, C5"),
        (["C4", "layer3.4.conv2", "C5"], "C4, layer3.4.conv2, C5"),
    ],
)
def test_the_status_line_names_the_layers_indexed(layers: list[str], span: str) -> None:
    from types import SimpleNamespace

    from visualizer.ui.atlas_jobs import describe_atlas

    atlas = SimpleNamespace(
        folder=Path("photos-index"), layers=layers, metadata={"images": {"counted": 12}, "top": 9}
    )
    assert describe_atlas(atlas) == f"photos-index: 12 images, {span}, top 9"

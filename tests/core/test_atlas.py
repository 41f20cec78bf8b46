"""The dataset atlas (``visualizer.core.atlas``) against independent references.

The images are drawn here (shapes and textures at known places, a non-square photo, an
EXIF-rotated JPEG, a strip thinner than the crop, an image smaller than the crop, a byte-for-byte
copy of another). The references do not use the atlas' code:

- top-K and statistics: torchvision's own ``vgg16``/``resnet101`` holding the same weights, one
  image at a time, then a plain Python sort per channel and numpy for the statistics;
- boxes: the gradient of the activation at the maximum with respect to the *source* image's
  pixels, through a differentiable copy of the preprocessing (antialiased bilinear resize,
  torchvision's centre crop, normalisation); every pixel that moves the activation must lie in
  the box;
- receptive fields: the values published for the two architectures;
- merging: a numpy brute force over all images at once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.nn import functional as nnf
from torchvision.transforms import functional as tvf

from models import stage_module_names
from visualizer.core import Analyzer, load_image
from visualizer.core.atlas import Atlas, IndexFileError, SourceError, build_index, image_paths
from visualizer.core.atlas.identity import mismatch, network_identity
from visualizer.core.atlas.receptive_field import receptive_fields
from visualizer.core.atlas.topk import EMPTY, ChannelTopK, summarize

# Small inputs keep the file fast: (resize, crop) of each architecture's analyzer.
SIZES = {"vgg16": (64, 64), "resnet101": (72, 64)}
TOP = 4
BATCH = 3
TOLERANCE = 1e-5
STAGES = ("C1", "C2", "C3", "C4", "C5")
# Theoretical receptive fields (size, jump, start) in input pixels: the standard tables for
# torchvision's VGG16 and ResNet101 (v1.5: stride on the 3×3 convolution); ``start``, the centre
# of position 0's field (Araujo et al., Distill 2019), moves by half a jump at VGG's unpadded
# 2×2 poolings and stays 0 through ResNet's symmetrically padded layers.
RECEPTIVE_FIELDS = {
    "vgg16": {
        "C1": (5, 1, 0),
        "C2": (14, 2, 0.5),
        "C3": (40, 4, 1.5),
        "C4": (92, 8, 3.5),
        "C5": (196, 16, 7.5),
    },
    "resnet101": {
        "C1": (11, 4, 0),
        "C2": (35, 4, 0),
        "C3": (91, 8, 0),
        "C4": (811, 16, 0),
        "C5": (971, 32, 0),
    },
}
ROTATED_RAW = (110, 50)  # the EXIF-rotated JPEG as stored; upright it is 50 × 110


# --- the images -------------------------------------------------------------------------------


def _canvas(width: int, height: int, value: int = 0) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def _noise(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_images(folder: Path) -> dict[str, Path]:
    """The test images, by role; ``sub/`` checks that folders are walked."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir()
    y, x = np.mgrid[0:96, 0:96]
    disc = _canvas(96, 96)
    disc[(x - 30) ** 2 + (y - 60) ** 2 < 12**2] = 255

    checker = _canvas(80, 80, 128)
    yy, xx = np.mgrid[0:40, 0:40]
    checker[0:40, 40:80] = (((yy // 8 + xx // 8) % 2) * 255)[..., None]

    wide = np.zeros((70, 150, 3), np.uint8)
    wide[..., 1] = np.linspace(0, 200, 150, dtype=np.uint8)[None, :]
    wide[20:40, 120:140] = (255, 0, 0)

    tall = _canvas(60, 130, 40)
    tall[90:130:4] = (0, 0, 255)

    rotated = _noise(*ROTATED_RAW, seed=6)
    rotated[5:20, 80:105] = (30, 60, 250)  # near the stored image's top-right corner

    strip = _noise(400, 10, seed=3)  # 72 px tall after the resize would make it 2880 wide:
    # the longer side is bounded, so it is thinner than the crop and padded
    tiny = _noise(30, 20, seed=4)
    grey_y, grey_x = np.mgrid[0:64, 0:64]
    grey = (255 * np.hypot(grey_y - 20, grey_x - 44) / 64).clip(0, 255).astype(np.uint8)
    ry, rx = np.mgrid[0:88, 0:88]
    rings = _canvas(88, 88)
    rings[np.sin(np.hypot(ry - 44, rx - 44) / 2.5) > 0] = (250, 220, 10)

    paths = {
        "disc": folder / "a_disc.png",
        "checker": folder / "b_checker.png",
        "wide": folder / "c_wide.png",
        "copy": folder / "d_disc_copy.png",  # number 3: the first of the second batch
        "tall": folder / "e_tall.png",
        "rotated": folder / "f_rotated.jpg",
        "strip": folder / "g_strip.png",
        "tiny": folder / "h_tiny.png",
        "grey": folder / "i_grey.png",
        "rings": folder / "sub" / "rings.png",
        "noise": folder / "sub" / "noise.png",
    }
    for name, pixels in {
        "disc": disc,
        "checker": checker,
        "wide": wide,
        "copy": disc,
        "tall": tall,
        "strip": strip,
        "tiny": tiny,
        "rings": rings,
        "noise": _noise(70, 90, seed=5),
    }.items():
        Image.fromarray(pixels).save(paths[name])
    Image.fromarray(grey, "L").save(paths["grey"])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    Image.fromarray(rotated).save(paths["rotated"], quality=95, exif=exif)
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_images(tmp_path_factory.mktemp("atlas-images"))


@pytest.fixture(scope="module")
def image_folder(images: dict[str, Path]) -> Path:
    return images["disc"].parent


def small_analyzer(networks, arch: str) -> Analyzer:
    """The session's random network of ``arch`` (not rebuilt, not moved), with small inputs."""
    resize, crop = SIZES[arch]
    return Analyzer(networks.model(arch), device="cpu", timings=False, resize=resize, crop=crop)


@pytest.fixture(scope="module")
def analyzer(networks, arch: str) -> Analyzer:
    return small_analyzer(networks, arch)


@pytest.fixture(scope="module")
def resnet(networks) -> Analyzer:
    return small_analyzer(networks, "resnet101")


@pytest.fixture(scope="module")
def built(analyzer: Analyzer, image_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    """The index of the test images, every stage: ``(folder, report)``."""
    out = tmp_path_factory.mktemp(f"atlas-{analyzer.arch}")
    report = build_index(
        [image_folder], out, analyzer, top=TOP, batch_size=BATCH, workers=0, save_every=0
    )
    return out, report


@pytest.fixture(scope="module")
def twin(analyzer: Analyzer) -> nn.Module:
    """torchvision's own network holding the analyzer's weights (the same tensors: built on
    the meta device, then given them)."""
    with torch.device("meta"):
        network = getattr(torchvision.models, analyzer.arch)(
            weights=None, num_classes=analyzer.num_classes
        )
    network.load_state_dict(analyzer.model.state_dict(), strict=True, assign=True)
    return network.eval()


class _Stop(Exception):  # noqa: N818 - a signal
    pass


def stage_outputs(network: nn.Module, analyzer: Analyzer, x: torch.Tensor) -> dict:
    """Each stage's output of torchvision's ``network`` for ``x`` (the forward stops after
    C5), hooked at the module names of our stages (torchvision's names)."""
    names = stage_module_names(analyzer.model)
    modules = dict(network.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def hook(stage: str):
        def record(_module, _inputs, output):
            captured[stage] = output.clone()  # a later in-place op must not change it
            if len(captured) == len(names):
                raise _Stop

        return record

    handles = [modules[names[stage]].register_forward_hook(hook(stage)) for stage in STAGES]
    try:
        network(x)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured


@pytest.fixture(scope="module")
def reference(twin: nn.Module, analyzer: Analyzer, image_folder: Path) -> dict:
    """Per stage, for every image one at a time through torchvision: ``maps`` (N, C, H, W)."""
    paths = image_paths([image_folder])
    maps: dict[str, list[np.ndarray]] = defaultdict(list)
    with torch.no_grad():
        for path in paths:
            x, _view = analyzer.preprocessing(load_image(path))
            for stage, output in stage_outputs(twin, analyzer, x).items():
                maps[stage].append(output[0].numpy())
    return {"paths": paths, "maps": {stage: np.stack(maps[stage]) for stage in STAGES}}


def top_rows(folder: Path) -> dict[tuple[str, int], list[dict]]:
    """topk.parquet read with pyarrow alone: rows by (stage, channel), in file order."""
    rows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in pq.read_table(folder / "topk.parquet").to_pylist():
        rows[row["stage"], row["channel"]].append(row)
    return rows


# --- 1. top-K and statistics against torchvision, one image at a time --------------------------


def rounding(maps: np.ndarray) -> float:
    """How far float32 results of the same network may differ (another batch size, another
    convolution algorithm): relative to the largest activation of the stage, since the sums'
    terms, not their result, set the rounding (random-weight ResNet101's C5 reaches 10⁴)."""
    return TOLERANCE * float(np.abs(maps).max())


def test_top_k_equals_a_brute_force_over_torchvision(built, reference: dict) -> None:
    folder, report = built
    paths, maps = reference["paths"], reference["maps"]
    assert report.images == len(paths) == 11
    assert report.refused == []
    rows = top_rows(folder)
    near_ties = exact = 0
    for stage in STAGES:
        n, channels, height, width = maps[stage].shape
        flat = maps[stage].reshape(n, channels, height * width)
        close = rounding(maps[stage])
        for channel in range(channels):
            scores = [float(flat[i, channel].max()) for i in range(n)]
            firsts = [int(np.argmax(flat[i, channel])) for i in range(n)]  # first in row-major
            expected = sorted(range(n), key=lambda i: (-scores[i], i))[:TOP]
            got = rows[stage, channel]
            assert [row["rank"] for row in got] == list(range(1, TOP + 1)), (stage, channel)
            for rank, (number, row) in enumerate(zip(expected, got, strict=True), 1):
                where = (stage, channel, rank)
                assert row["score"] == pytest.approx(scores[number], rel=TOLERANCE, abs=close)
                shown = paths.index(row["source"])
                if shown != number:  # only two images whose scores differ by rounding
                    assert 0 < abs(scores[shown] - scores[number]) <= close, where
                    near_ties += 1
                    continue
                position = row["y"] * width + row["x"]
                if position != firsts[number]:  # only two positions equal up to rounding
                    value = flat[number, channel, position]
                    assert scores[number] - close <= value < scores[number], where
                    near_ties += 1
                else:
                    exact += 1
    assert near_ties <= exact / 1000  # rounding may swap a few, never many


def test_equal_scores_rank_by_image_order(built, images: dict[str, Path]) -> None:
    """The disc and its byte-for-byte copy (numbers 0 and 3, in different batches) score the
    same for every channel: the copy never ranks above the original."""
    folder, _report = built
    original, copy = str(images["disc"]), str(images["copy"])
    both = 0
    for (stage, channel), rows in top_rows(folder).items():
        sources = [row["source"] for row in rows]
        if original in sources and copy in sources:
            both += 1
            first, second = sources.index(original), sources.index(copy)
            assert first < second, (stage, channel)
            assert rows[first]["score"] == rows[second]["score"]
            assert (rows[first]["y"], rows[first]["x"]) == (rows[second]["y"], rows[second]["x"])
    assert both > 100


def test_statistics_equal_numpy_over_the_images(built, reference: dict) -> None:
    folder, _report = built
    table = pq.read_table(folder / "channels.parquet").to_pydict()
    stages = np.asarray(table["stage"])
    for stage in STAGES:
        maps = reference["maps"][stage].astype(np.float64)
        close = rounding(maps)
        n, channels = maps.shape[:2]
        scores = maps.reshape(n, channels, -1).max(axis=2)
        rows = stages == stage
        column = {name: np.asarray(values)[rows] for name, values in table.items()}
        assert column["channel"].tolist() == list(range(channels))
        assert (column["images"] == n).all()
        np.testing.assert_allclose(column["mean"], scores.mean(0), rtol=1e-5, atol=close)
        np.testing.assert_allclose(column["std"], scores.std(0), rtol=1e-5, atol=close)
        np.testing.assert_allclose(
            column["mean_activation"], maps.mean(axis=(2, 3)).mean(0), rtol=1e-5, atol=close
        )
        # Active: score above 0; only a score within rounding of 0 may be counted otherwise.
        unsure = (np.abs(scores) <= close).sum(0)
        active = column["active_fraction"] * n
        np.testing.assert_allclose(active, np.round(active), atol=1e-9)
        assert (np.abs(active - (scores > 0).sum(0)) <= unsure).all(), stage
        assert (active == (scores > 0).sum(0)).mean() > 0.99, stage


# --- 2. boxes: every source pixel that can move the activation is in the box --------------------


def source_gradient(
    network: nn.Module, analyzer: Analyzer, path: Path, rows: list[dict]
) -> list[np.ndarray]:
    """For each row's activation (``stage``, ``channel``, ``y``, ``x``): the source pixels
    (upright, as ``load_image`` gives them) whose gradient is not zero, as an (H, W) mask."""
    preprocessing = analyzer.preprocessing
    image = load_image(path)
    source = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    source.requires_grad_(True)
    resized = nnf.interpolate(
        source,
        size=preprocessing.resized_size(*image.size),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    cropped = tvf.center_crop(resized, [preprocessing.crop, preprocessing.crop])
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1)
    outputs = stage_outputs(network, analyzer, (cropped - mean) / std)
    masks = []
    for row in rows:
        activation = outputs[row["stage"]][0, row["channel"], row["y"], row["x"]]
        (gradient,) = torch.autograd.grad(activation, source, retain_graph=True)
        masks.append((gradient[0].abs().sum(0) > 0).numpy())
    return masks


def test_boxes_hold_every_pixel_the_maximum_depends_on(
    built, twin: nn.Module, analyzer: Analyzer, images: dict[str, Path]
) -> None:
    """For each image of an unusual shape, one row per stage (the lowest channel whose top-K
    holds it), and every row whose box is empty."""
    folder, _report = built
    metadata = json.loads((folder / "index.json").read_text())
    crop = analyzer.preprocessing.crop
    roles = ("disc", "wide", "tall", "rotated", "strip", "tiny")
    chosen: dict[str, list[dict]] = {role: [] for role in roles}
    by_source = {str(images[role]): role for role in roles}
    for (stage, _channel), rows in sorted(top_rows(folder).items()):
        for row in rows:
            role = by_source.get(row["source"])
            if role is None or row["score"] <= 0:
                continue
            empty = row["box_left"] >= row["box_right"] or row["box_top"] >= row["box_bottom"]
            if empty or stage not in {other["stage"] for other in chosen[role]}:
                chosen[role].append(row)
    checked = 0
    for role, rows in chosen.items():
        assert len({row["stage"] for row in rows}) >= 3, f"{role}: too few stages to check"
        for row, mask in zip(
            rows, source_gradient(twin, analyzer, images[role], rows), strict=True
        ):
            stage = row["stage"]
            height, width = mask.shape
            sides = ("left", "top", "right", "bottom")
            left, top, right, bottom = (row[f"box_{side}"] for side in sides)
            where = f"{role} {stage} channel {row['channel']} at {row['y'], row['x']}"
            assert 0 <= left <= right <= width, where
            assert 0 <= top <= bottom <= height, where
            outside = mask.copy()
            outside[top:bottom, left:right] = False
            assert not outside.any(), f"{where}: pixels {np.argwhere(outside)[:5]} outside"
            if left == right or top == bottom:  # the field lies in the crop's padding only
                assert role == "strip", where
                continue
            assert mask.any(), where  # a positive maximum in the image depends on its pixels
            # …and no wider than the field carried back (not the whole image by default).
            size = metadata["layers"][stage]["receptive_field"]["size"]
            resized_height, resized_width = analyzer.preprocessing.resized_size(width, height)
            for extent, source, resized in (
                (right - left, width, resized_width),
                (bottom - top, height, resized_height),
            ):
                scale = source / resized
                assert extent <= (min(size, crop) + 1) * scale + 2 * max(1, scale) + 2, where
            checked += 1
    assert checked >= 24


def test_boxes_are_in_the_upright_images_pixels(built, images: dict[str, Path]) -> None:
    """The JPEG is stored 110 × 50 with EXIF orientation 6: upright it is 50 wide, 110 tall."""
    folder, _report = built
    width, height = ROTATED_RAW[1], ROTATED_RAW[0]
    assert load_image(images["rotated"]).size == (width, height)
    boxes = [
        (row["box_left"], row["box_top"], row["box_right"], row["box_bottom"])
        for rows in top_rows(folder).values()
        for row in rows
        if row["source"] == str(images["rotated"])
    ]
    assert boxes
    assert all(
        0 <= left < right <= width and 0 <= top < bottom <= height
        for left, top, right, bottom in boxes
    )
    assert any(bottom > ROTATED_RAW[1] for _l, _t, _r, bottom in boxes)  # impossible if stored


def test_receptive_fields_are_the_published_ones(analyzer: Analyzer, built) -> None:
    names = stage_module_names(analyzer.model)
    fields = receptive_fields(analyzer.model, [names[stage] for stage in STAGES], 224, 224)
    metadata = json.loads((built[0] / "index.json").read_text())
    for stage, (size, jump, start) in RECEPTIVE_FIELDS[analyzer.arch].items():
        field = fields[names[stage]]
        assert (field.size, field.jump, field.start) == (size, jump, start), stage
        stored = metadata["layers"][stage]["receptive_field"]
        assert (stored["size"], stored["jump"]) == (size, jump), stage
    # A box: the input pixels whose centres lie within the field around the position's
    # centre (whole pixels in these networks), clipped to the input.
    for stage, (size, jump, start) in RECEPTIVE_FIELDS[analyzer.arch].items():
        for y, x in ((0, 0), (1, 2), (6, 3)):
            spans = []
            for position in (x, y):
                centre = start + position * jump
                low, high = centre - (size - 1) / 2, centre + (size - 1) / 2
                assert low == int(low)
                spans.append((max(0, int(low)), min(224, int(high) + 1)))
            (left, right), (top, bottom) = spans
            assert fields[names[stage]].box(y, x, 224, 224) == (left, top, right, bottom), stage


# --- 3. merging in any order or grouping gives the same summary --------------------------------


def brute_force(values: np.ndarray, numbers: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Top-K by a plain sort per channel: (score desc, number asc); the first maximum."""
    n, channels = values.shape[:2]
    flat = values.reshape(n, channels, -1)
    width = values.shape[3]
    images = np.full((channels, k), EMPTY)
    scores = np.full((channels, k), -np.inf, np.float32)
    ys, xs = np.zeros((channels, k), int), np.zeros((channels, k), int)
    for channel in range(channels):
        best = sorted(range(n), key=lambda i: (-flat[i, channel].max(), numbers[i]))[:k]
        for slot, i in enumerate(best):
            images[channel, slot] = numbers[i]
            scores[channel, slot] = flat[i, channel].max()
            first = int(np.argmax(flat[i, channel]))
            ys[channel, slot], xs[channel, slot] = divmod(first, width)
    return {"images": images, "scores": scores, "ys": ys, "xs": xs}


def test_merging_is_associative_and_commutative() -> None:
    rng = np.random.default_rng(7)
    channels, height, width, k = 6, 3, 5, 4
    total = 23
    # Few distinct values (halves from -1.5 to 1.5): many equal scores and equal positions.
    values = (rng.integers(-3, 4, (total, channels, height, width)) / 2).astype(np.float32)
    sizes = rng.integers(5, 500, (total, 2))
    shuffled = rng.permutation(total)
    # Batches of any numbers (ascending within a batch), some smaller than K, one of 1 image.
    cuts = [0, 5, 6, 9, 16, 18, 23]
    groups = [np.sort(shuffled[a:b]) for a, b in itertools.pairwise(cuts)]

    def summary_of(numbers: np.ndarray) -> ChannelTopK:
        return summarize(
            torch.from_numpy(values[numbers]),
            torch.from_numpy(numbers),
            torch.from_numpy(sizes[numbers]),
            k,
        )

    parts = [summary_of(numbers) for numbers in groups]
    empty = ChannelTopK.empty(channels, k)
    left = empty
    for part in parts:
        left = left.merged(part)
    right = empty
    for part in reversed(parts):
        right = part.merged(right)
    tree = (
        (parts[0].merged(parts[1]))
        .merged(parts[2].merged(parts[3]))
        .merged(parts[4].merged(parts[5]).merged(empty))
    )
    mixed = parts[3]
    for index in (5, 0, 2, 4, 1):
        mixed = parts[index].merged(mixed) if index % 2 else mixed.merged(parts[index])
    whole = summary_of(np.arange(total))
    expected = brute_force(values, np.arange(total), k)
    for summary in (left, right, tree, mixed, whole):
        for name in ("images", "scores", "ys", "xs"):
            np.testing.assert_array_equal(getattr(summary, name), expected[name], err_msg=name)
        np.testing.assert_array_equal(summary.widths, sizes[summary.images, 0])
        np.testing.assert_array_equal(summary.heights, sizes[summary.images, 1])
        assert summary.count == total
        scores = values.reshape(total, channels, -1).max(2).astype(np.float64)
        np.testing.assert_allclose(summary.score_sum, scores.sum(0))
        np.testing.assert_allclose(summary.score_squares, (scores**2).sum(0))
        np.testing.assert_array_equal(summary.active, (scores > 0).sum(0))
        np.testing.assert_allclose(
            summary.activation_sum, values.astype(np.float64).mean(axis=(2, 3)).sum(0)
        )
    # Fewer images than K: the slots after them stay empty, last, whatever the order.
    assert len(groups[1]) == 1
    for single in (parts[1], parts[1].merged(empty), empty.merged(parts[1])):
        assert (single.images[:, 0] == groups[1][0]).all()
        assert (single.images[:, 1:] == EMPTY).all()
        assert torch.isneginf(single.scores[:, 1:]).all()
        assert single.count == 1
    with pytest.raises(ValueError, match="merge"):
        left.merged(ChannelTopK.empty(channels, k + 1))


# --- 4. files that are not images ----------------------------------------------------------------


def test_bad_files_are_refused_with_reasons_and_the_rest_indexed(
    resnet: Analyzer, images: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    (folder / "x.png").mkdir(parents=True)  # a folder named like an image: walked
    good = [folder / "a.png", folder / "b.png", folder / "c.png", folder / "x.png" / "inner.png"]
    for path, role in zip(good, ("disc", "wide", "tiny", "tall"), strict=True):
        shutil.copy(images[role], path)
    whole = images["noise"].read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 3])
    text = [
        folder / "notes.jpg",
        folder / "line\nbreak.jpg",
        folder / ("long" + "n" * 200 + ".jpg"),
    ]
    for path in text:
        path.write_text("not a picture\n")
    listing = tmp_path / "more.txt"
    listing.write_text("photos/x.png\n")  # the folder named on its own, as an image: refused
    told: list[tuple[str, str]] = []
    report = build_index(
        [folder, listing],
        tmp_path / "index",
        resnet,
        layers=["C1"],
        top=2,
        batch_size=2,
        workers=2,
        refusal=lambda source, reason: told.append((source, reason)),
    )
    # The reason alone, whatever the file's name (long, or with a line break in it).
    bad = {
        str(folder / "truncated.png"): "truncated or corrupt PNG data (image file is truncated)",
        **{str(path): "not an image (unrecognised or corrupt data)" for path in text},
        str(folder / "x.png"): "is a folder, not an image",
    }
    assert sorted(told) == sorted(bad.items())  # once each
    assert sorted(report.refused) == sorted(bad.items())
    metadata = json.loads((tmp_path / "index" / "index.json").read_text())
    assert metadata["images"]["sources"] == len(good) + len(bad)
    assert metadata["images"]["counted"] == report.images == len(good)
    refused = {entry["source"]: entry["reason"] for entry in metadata["images"]["refused"]}
    assert refused == bad
    top = pq.read_table(tmp_path / "index" / "topk.parquet").to_pydict()
    assert set(top["source"]) == {str(path) for path in good}
    channels = pq.read_table(tmp_path / "index" / "channels.parquet").to_pydict()
    assert set(channels["images"]) == {len(good)}


# --- 5. an interrupted run resumes to the same index -------------------------------------------


def test_an_interrupted_run_resumes_to_the_same_index(
    resnet: Analyzer, image_folder: Path, tmp_path: Path, hooks_left
) -> None:
    settings = {"layers": ["C1", "C3"], "top": 3, "batch_size": 2, "workers": 0}
    whole = tmp_path / "whole"
    build_index([image_folder], whole, resnet, **settings)

    calls: list[int] = []

    def interrupt(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 4:  # the start, then after three batches
            raise KeyboardInterrupt

    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        build_index(
            [image_folder], interrupted, resnet, save_every=0, progress=interrupt, **settings
        )
    assert hooks_left(resnet.model) == 0  # none left on the network by the interruption
    assert (interrupted / "partial.npz").is_file()
    assert not any(
        (interrupted / name).exists() for name in ("topk.parquet", "channels.parquet", "index.json")
    )

    for setting, other in (("top", 5), ("batch_size", 3), ("layers", ["C1"])):
        with pytest.raises(IndexFileError, match=setting):
            build_index(
                [image_folder], interrupted, resnet, resume=True, **{**settings, setting: other}
            )
    assert (interrupted / "partial.npz").is_file()  # a refused resume keeps the progress

    resumed: list[int] = []
    report = build_index(
        [image_folder],
        interrupted,
        resnet,
        resume=True,
        progress=lambda done, total: resumed.append(done),
        **settings,
    )
    assert report.resumed_from in (4, 6)  # two or three batches were saved
    assert resumed[0] == report.resumed_from
    assert resumed[-1] == report.images == 11
    assert not (interrupted / "partial.npz").exists()
    expected = pq.read_table(whole / "topk.parquet")
    got = pq.read_table(interrupted / "topk.parquet")
    assert got.num_rows == expected.num_rows == (64 + 512) * 3
    assert got.equals(expected)
    expected_stats = pq.read_table(whole / "channels.parquet").to_pydict()
    got_stats = pq.read_table(interrupted / "channels.parquet").to_pydict()
    for name in ("stage", "channel", "images"):
        assert got_stats[name] == expected_stats[name]
    for name in ("mean", "std", "active_fraction", "mean_activation"):
        np.testing.assert_allclose(got_stats[name], expected_stats[name], rtol=1e-9, atol=1e-12)


# --- 6. sources -----------------------------------------------------------------------------------


def test_sources_walk_folders_read_lists_and_name_each_image_once(tmp_path: Path) -> None:
    pixel = Image.new("RGB", (4, 4))
    files = ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.webp", ".hidden/e.png", "f.txt.png"]
    for name in files:
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        pixel.save(tmp_path / "photos" / name)
    (tmp_path / "photos" / "readme.md").write_text("not an image")
    (tmp_path / "elsewhere").mkdir()
    pixel.save(tmp_path / "elsewhere" / "g.png")
    listing = tmp_path / "lists" / "some.txt"
    listing.parent.mkdir()
    listing.write_text(
        "# images from elsewhere\n\n../elsewhere/g.png\n  ../photos/a.png  \n#../photos/b.jpg\n"
    )
    photos = tmp_path / "photos"
    expected = sorted(
        str(path)
        for path in (
            photos / "a.png",
            photos / "b.jpg",
            photos / "sub" / "c.png",
            photos / "sub" / "deeper" / "d.webp",
            photos / "f.txt.png",
            tmp_path / "elsewhere" / "g.png",
        )
    )
    assert image_paths([photos, listing]) == expected
    # Any order, repeats, a file named on its own: the same sorted list, each once.
    assert image_paths([listing, photos / "a.png", photos, str(photos)]) == expected
    assert image_paths([photos / "sub"]) == [
        str(photos / "sub" / "c.png"),
        str(photos / "sub" / "deeper" / "d.webp"),
    ]
    with pytest.raises(SourceError, match="missing"):
        image_paths([photos, tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        image_paths([tmp_path / "empty"])
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9.png\n")
    with pytest.raises(SourceError, match=r"latin\.txt"):
        image_paths([tmp_path / "latin.txt"])


# --- 7. reading an index back -------------------------------------------------------------------


def test_atlas_reads_back_the_same_rows(built, reference: dict, analyzer: Analyzer) -> None:
    folder, _report = built
    atlas = Atlas(folder)
    rows = top_rows(folder)
    assert atlas.layers == list(STAGES)
    for (stage, channel), expected in rows.items():
        got = atlas.top(stage, channel)
        assert [(t.rank, t.score, t.source, t.y, t.x, t.box) for t in got] == [
            (
                r["rank"],
                r["score"],
                r["source"],
                r["y"],
                r["x"],
                (r["box_left"], r["box_top"], r["box_right"], r["box_bottom"]),
            )
            for r in expected
        ]
    assert len(rows) == sum(reference["maps"][stage].shape[1] for stage in STAGES)
    assert atlas.top("C9", 0) == []
    assert atlas.top("C1", 10**6) == []
    table = pq.read_table(folder / "channels.parquet").to_pydict()
    for stage in STAGES:
        statistics = atlas.statistics(stage)
        chosen = [i for i, name in enumerate(table["stage"]) if name == stage]
        for name in ("channel", "images", "mean", "std", "active_fraction", "mean_activation"):
            assert statistics[name].tolist() == [table[name][i] for i in chosen], (stage, name)
    assert atlas.network["model"] == analyzer.arch


def test_an_incomplete_folder_is_no_atlas(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="not a complete"):
        Atlas(tmp_path)


def test_identity_tells_which_network_made_an_index(
    built, analyzer: Analyzer, networks, tmp_path: Path
) -> None:
    metadata = Atlas(built[0]).metadata
    assert mismatch(metadata, analyzer) is None
    assert mismatch(metadata, small_analyzer(networks, analyzer.arch)) is None  # a twin analyzer
    other_arch = "resnet101" if analyzer.arch == "vgg16" else "vgg16"
    reason = mismatch(metadata, small_analyzer(networks, other_arch))
    assert reason is not None
    assert analyzer.arch in reason
    assert other_arch in reason
    resize, crop = SIZES[analyzer.arch]
    bigger = Analyzer(analyzer.model, device="cpu", timings=False, resize=resize, crop=crop + 8)
    assert "crop" in (mismatch(metadata, bigger) or "")
    if analyzer.arch == "resnet101":  # the same values from a file: other weights, by SHA-256
        checkpoint = tmp_path / "weights.pth"
        torch.save(analyzer.model.state_dict(), checkpoint)
        from_file = Analyzer(
            "resnet101", checkpoint, "cpu", timings=False, progress=False, resize=resize, crop=crop
        )
        assert "weights" in (mismatch(metadata, from_file) or "")
        assert metadata["network"]["weights_sha256"] is None  # random weights: no file
        digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        assert network_identity(from_file)["weights_sha256"] == digest

"""The window's worker jobs, without Qt: views, caching, exports, weights fall-back, downloads."""

from __future__ import annotations

import csv
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from models import stage_module_names
from models.weights import imagenet_checkpoint_path
from visualizer.choices import HEAD
from visualizer.core import Analyzer
from visualizer.core.render import fitting_columns, render_grid
from visualizer.core.stage_summary import layer_stages
from visualizer.ui.jobs import (
    ModelSpec,
    Session,
    ViewOptions,
    load_picture,
    picture_of,
)

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "samples" / "chelsea.jpg"
SPEC = ModelSpec("resnet101", "random", "cpu")


class _Closable:
    def close(self) -> None:
        pass

    def __enter__(self) -> _Closable:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass


@pytest.fixture(scope="module")
def session() -> Session:
    return Session()


@pytest.fixture(scope="module")
def picture():
    return load_picture(1, str(SAMPLE))


@pytest.fixture(scope="module")
def reference():
    analyzer = Analyzer("resnet101", "random", "cpu")
    return analyzer, analyzer.analyze(SAMPLE)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_layer_stages_end_each_stage_at_its_modules_last_layer() -> None:
    names = ["conv1", "bn1", "relu", "pool", "layer1.0.conv", "layer1.0.relu", "layer2.0.conv"]
    modules = {"C1": "relu", "C2": "layer1", "C3": "layer2"}
    # The pooling after C1's module belongs to the next stage, as it runs before layer1 ends.
    assert layer_stages([*names, "fc"], modules) == [
        "C1", "C1", "C1", "C2", "C2", "C2", "C3", HEAD,
    ]  # fmt: skip


@pytest.mark.parametrize("arch", ["resnet101", "vgg16"])
def test_every_layer_of_the_networks_falls_in_its_stage(arch: str) -> None:
    analyzer = Analyzer(arch, "random", "cpu")
    result = analyzer.analyze(Image.new("RGB", (64, 64), (90, 120, 30)))
    names = [name for name, _, _ in result.timings]
    stages = layer_stages(names, stage_module_names(analyzer.model))
    modules = stage_module_names(analyzer.model)
    for name, stage in zip(names, stages, strict=True):
        if stage != HEAD:
            module = modules[stage]
            inside = name == module or name.startswith(module + ".")
            # A layer inside a stage's module is in that stage; one outside it sits between
            # the previous stage's module and this one (e.g. VGG16's max pooling).
            assert inside or stages.index(stage) <= names.index(name)
    assert stages == sorted(stages, key=[*("C1", "C2", "C3", "C4", "C5"), HEAD].index)
    assert stages[-1] == HEAD
    assert stages[0] == "C1"


def test_a_view_is_the_core_analysis_rendered(session: Session, picture, reference) -> None:
    analyzer, result = reference
    options = ViewOptions(
        stage="C3", cam_stage="C3", colormap="magma", order="mean", top_n=20, target=281
    )
    data = session.view(SPEC, picture, options)
    # On screen, the columns fill the pane: options.aspect is its width ÷ height.
    columns = fitting_columns(20, 28, 28, options.aspect)
    expected = render_grid(
        result.stages["C3"], colormap="magma", order="mean", top=20, columns=columns
    )
    np.testing.assert_array_equal(data.grid.indices, expected.indices)
    assert data.grid.layout == expected.layout
    assert data.grid.order == "mean"
    np.testing.assert_array_equal(data.activation, result.stages["C3"].numpy())
    np.testing.assert_allclose(data.cam, analyzer.gradcam(result, "C3", 281), atol=1e-5)
    assert data.target == 281
    assert data.target_label == analyzer.categories[281]
    assert data.topk == tuple(result.topk)
    assert [row.name for row in data.layers] == [name for name, _, _ in result.timings]
    assert data.layers[0].shape == (1, 64, 112, 112)
    assert data.stage_shapes["C5"] == (2048, 7, 7)
    np.testing.assert_array_equal(data.view, np.asarray(result.view))
    assert data.model.trained is False
    assert "Untrained ResNet101" in data.model.banner
    assert "File → Load weights" in data.model.banner


def test_a_new_stage_or_colormap_does_not_analyse_again(
    session: Session, picture, monkeypatch: pytest.MonkeyPatch
) -> None:
    session.view(SPEC, picture, ViewOptions())
    calls: list[object] = []
    original = Analyzer.analyze

    def counted(self: Analyzer, *args: object, **kwargs: object):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Analyzer, "analyze", counted)
    for stage in ("C2", "C4", "C5"):
        assert session.view(SPEC, picture, ViewOptions(stage=stage, colormap="gray")).grid
    assert calls == []
    other = picture_of(2, "flat.png", "<flat>", Image.new("RGB", (50, 40), (10, 200, 30)))
    session.view(SPEC, other, ViewOptions())
    assert len(calls) == 1


def test_exports_are_the_files_fmviz_export_writes(
    session: Session, picture, reference, tmp_path: Path
) -> None:
    _, result = reference
    options = ViewOptions(stage="C2", cam_stage="C2", colormap="viridis", target=3, opacity=0.25)
    grid = session.export(SPEC, picture, options, "grid", str(tmp_path / "one.png"))
    assert grid == [tmp_path / "one.png"]
    with Image.open(grid[0]) as image:
        shown = session.view(SPEC, picture, options).grid.indices
        np.testing.assert_array_equal(np.asarray(image), shown)
        assert image.text["stage"] == "C2"
        assert image.text["model"] == "resnet101"
        assert image.text["source"] == str(SAMPLE)
    grids = session.export(SPEC, picture, options, "grids", str(tmp_path))
    assert [path.name for path in grids] == [f"chelsea_resnet101_C{n}.png" for n in range(1, 6)]
    overlay = session.export(SPEC, picture, options, "overlay", str(tmp_path / "cam.png"))
    with Image.open(overlay[0]) as image:
        assert image.text["target"].startswith("3 ")
        assert image.text["opacity"] == "0.25"
        assert image.text["stage"] == "C2"
    timings = session.export(SPEC, picture, options, "timings", str(tmp_path / "t.csv"))
    with timings[0].open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["layer", "type", "milliseconds"]
    assert [row[0] for row in rows[1:]] == [name for name, _, _ in result.timings]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["one.png", "cam.png", "t.csv", *(f"chelsea_resnet101_C{n}.png" for n in range(1, 6))]
    )


def test_imagenet_weights_that_cannot_be_had_fall_back_to_untrained(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(address: tuple[str, int], *args: object, **kwargs: object) -> socket.socket:
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    info = Session().model(ModelSpec("vgg16", "imagenet", "cpu"))
    assert info.trained is False
    assert info.weights.startswith("random")
    # One sentence: what is shown, why, and how to get trained weights; no URL, no errno.
    folder = torch_home / "hub" / "checkpoints"
    assert info.banner == (
        "Untrained VGG16 (ImageNet weights unavailable: no internet connection): for trained "
        f"ones, put vgg16-397923af.pth in {folder}, or use File → Load weights…"
    )
    assert "http" not in info.banner
    assert "Errno" not in info.banner
    assert "--weights random" not in info.banner  # random weights are what is in use


def test_cached_imagenet_weights_in_torchvisions_format_are_used(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("network used"))
    reference = torchvision.models.resnet101().eval()
    path = imagenet_checkpoint_path("resnet101")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    session = Session()
    info = session.model(ModelSpec("resnet101", "imagenet", "cpu"))
    assert info.trained is True
    assert info.banner is None
    assert info.weights == "ImageNet (IMAGENET1K_V2)"
    picture = picture_of(1, "flat.png", "<flat>", Image.new("RGB", (64, 64), (200, 30, 90)))
    data = session.view(ModelSpec("resnet101", "imagenet", "cpu"), picture, ViewOptions())
    analyzer = Analyzer("resnet101", "random", "cpu")
    x, _ = analyzer.preprocessing(picture.image)
    with torch.inference_mode():
        expected = torch.softmax(reference(x)[0], 0)
    top = torch.topk(expected, 5)
    assert [index for index, _, _ in data.topk] == top.indices.tolist()
    np.testing.assert_allclose([p for _, _, p in data.topk], top.values.numpy(), rtol=1e-4)


def test_a_download_reports_its_progress(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.weights import imagenet_weights

    monkeypatch.setitem(imagenet_weights("vgg16").meta, "_file_size", 1.0)  # MB
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: _Closable())

    def broken_download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True):
        partial = Path(f"{dst}.0123abcd.partial")
        with partial.open("wb") as file:
            for _ in range(4):  # a quarter of the published size at a time
                file.write(b"\0" * (2**20 // 4))
                file.flush()
                time.sleep(0.35)
        partial.unlink()
        raise OSError(104, "Connection reset by peer")

    monkeypatch.setattr(torch.hub, "download_url_to_file", broken_download)
    reports: list[tuple[str, float | None]] = []
    info = Session(lambda text, fraction: reports.append((text, fraction))).model(
        ModelSpec("vgg16", "imagenet", "cpu")
    )
    downloads = [(text, f) for text, f in reports if text.startswith("Downloading")]
    assert downloads, reports
    assert all("ImageNet weights for VGG16" in text for text, _ in downloads)
    fractions = [f for _, f in downloads if f is not None]
    assert fractions == sorted(fractions)
    assert 0.5 <= max(fractions) <= 1.0
    # Broken half-way: untrained weights and a banner saying why, no file left behind.
    assert info.trained is False
    assert "(ImageNet weights unavailable: download interrupted)" in info.banner
    assert list((torch_home / "hub" / "checkpoints").iterdir()) == []

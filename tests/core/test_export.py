"""export: file names, PNG grids and overlays with their metadata, timings CSV, atomic writes."""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from models import STAGE_NAMES
from visualizer import __version__
from visualizer.core import export
from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.attribution import GradCam
from visualizer.core.export import (
    GRADCAM_METHOD,
    ExportOptions,
    export_result,
    output_names,
    save_png,
    save_timings,
    write_atomically,
)
from visualizer.core.render import ORDERS, SCALES, channel_order, overlay, render_grid

SOURCE = "café-猫.png"  # not Latin-1: stored as an iTXt chunk
GRID_KEYS = {
    "model",
    "stage",
    "weights",
    "source",
    "normalisation",
    "colormap",
    "channel order",
    "preprocessing",
    "layout",
    "software",
}


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer("resnet101", weights="random", device="cpu", progress=False)


@pytest.fixture(scope="module")
def result(analyzer: Analyzer) -> AnalysisResult:
    """A 64 × 48 colour gradient, analysed once."""
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    pixels = np.stack(
        [np.tile(ramp, (48, 1)), np.tile(ramp[::-1], (48, 1)), np.full((48, 64), 128, np.uint8)],
        axis=-1,
    )
    return analyzer.analyze(Image.fromarray(pixels), source=SOURCE)


@pytest.fixture(scope="module")
def cams(analyzer: Analyzer, result: AnalysisResult) -> dict[str, GradCam]:
    """Grad-CAMs of the top-1 class at every stage, from one backward pass."""
    return analyzer.gradcams(result, STAGE_NAMES)


def listing(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden ones included."""
    return sorted(os.listdir(folder))


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            ExportOptions(),
            [
                "img_resnet101_C1.png",
                "img_resnet101_C2.png",
                "img_resnet101_C3.png",
                "img_resnet101_C4.png",
                "img_resnet101_C5.png",
                "img_resnet101_gradcam_C5.png",
                "img_resnet101_timings.csv",
            ],
        ),
        (
            ExportOptions(stages=("C2", "C4"), cam_stage="C3"),
            [
                "img_resnet101_C2.png",
                "img_resnet101_C4.png",
                "img_resnet101_gradcam_C3.png",
                "img_resnet101_timings.csv",
            ],
        ),
        (
            ExportOptions(stages=("C4",), cam_stage=None),
            ["img_resnet101_C4.png", "img_resnet101_timings.csv"],
        ),
        (ExportOptions(stages=(), cam_stage=None), ["img_resnet101_timings.csv"]),
    ],
)
def test_output_names(options: ExportOptions, expected: list[str]) -> None:
    assert output_names("img", "resnet101", options) == expected


# --- what export_result writes -------------------------------------------------------------


def test_default_export_writes_exactly_the_names(
    tmp_path: Path, analyzer: Analyzer, result: AnalysisResult
) -> None:
    # No cams given: the Grad-CAM of C5 is computed here.
    written = export_result(analyzer, result, tmp_path, "img")
    names = output_names("img", "resnet101", ExportOptions())
    assert written == [tmp_path / name for name in names]
    assert listing(tmp_path) == sorted(names)
    for path in written:
        assert path.stat().st_size > 0


@pytest.mark.parametrize(
    "options",
    [
        ExportOptions(stages=("C2", "C4"), cam_stage="C3"),
        ExportOptions(stages=("C4", "C1"), cam_stage="C1"),
        ExportOptions(stages=("C5",), cam_stage=None),
        ExportOptions(stages=(), cam_stage="C2"),
    ],
    ids=["C2-C4-cam-C3", "C4-C1-cam-C1", "C5-no-cam", "cam-only"],
)
def test_export_writes_only_the_stages_asked(
    tmp_path: Path,
    analyzer: Analyzer,
    result: AnalysisResult,
    cams: dict[str, GradCam],
    options: ExportOptions,
) -> None:
    written = export_result(analyzer, result, tmp_path, "img", options, cams=cams)
    names = output_names("img", "resnet101", options)
    assert written == [tmp_path / name for name in names]
    assert listing(tmp_path) == sorted(names)
    assert any("gradcam" in name for name in names) == (options.cam_stage is not None)


def test_export_with_a_non_ascii_stem(
    tmp_path: Path, analyzer: Analyzer, result: AnalysisResult, cams: dict[str, GradCam]
) -> None:
    options = ExportOptions(stages=("C5",), cam_stage="C5")
    written = export_result(analyzer, result, tmp_path, "café-猫", options, cams=cams)
    assert [path.name for path in written] == [
        "café-猫_resnet101_C5.png",
        "café-猫_resnet101_gradcam_C5.png",
        "café-猫_resnet101_timings.csv",
    ]
    assert listing(tmp_path) == sorted(path.name for path in written)


@pytest.fixture(scope="module")
def grids(
    tmp_path_factory: pytest.TempPathFactory,
    analyzer: Analyzer,
    result: AnalysisResult,
    cams: dict[str, GradCam],
) -> dict[str, Path]:
    """Every stage's grid and the C5 overlay, exported once with the default options."""
    folder = tmp_path_factory.mktemp("export")
    written = export_result(analyzer, result, folder, "img", cams=cams)
    return {path.name: path for path in written}


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_grid_png_pixels_are_the_rendered_grid(
    grids: dict[str, Path], result: AnalysisResult, stage: str
) -> None:
    grid = render_grid(result.stages[stage])
    with Image.open(grids[f"img_resnet101_{stage}.png"]) as image:
        assert image.format == "PNG"
        assert image.mode == "P"
        assert image.size == (grid.layout.shape[1], grid.layout.shape[0])
        assert "transparency" not in image.info
        np.testing.assert_array_equal(np.asarray(image), grid.indices)
        assert image.getpalette() == grid.palette[:, :3].ravel().tolist()


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_grid_png_metadata(grids: dict[str, Path], result: AnalysisResult, stage: str) -> None:
    grid = render_grid(result.stages[stage])
    layout = grid.layout
    channels, height, width = result.stages[stage].shape
    with Image.open(grids[f"img_resnet101_{stage}.png"]) as image:
        text = dict(image.text)
    assert set(text) >= GRID_KEYS
    assert text["model"] == "resnet101"
    assert text["stage"] == stage
    assert "random" in text["weights"]
    assert text["weights"] == result.weights
    assert text["source"] == SOURCE
    assert text["normalisation"] == SCALES["channel"]
    assert text["colormap"] == "viridis"
    assert text["channel order"] == ORDERS["index"]
    assert text["preprocessing"] == result.preprocessing
    assert text["software"] == f"fmviz {__version__}"
    assert text["channels"] == str(channels)
    assert text["layout"].startswith(
        f"{layout.rows} rows × {layout.columns} columns of {height}×{width} tiles"
    )
    assert "1-pixel gutter" in text["layout"]


def test_overlay_png_is_the_overlay(
    grids: dict[str, Path], analyzer: Analyzer, result: AnalysisResult
) -> None:
    expected = overlay(result.view, analyzer.gradcam(result, "C5"), opacity=0.5, colormap="turbo")
    with Image.open(grids["img_resnet101_gradcam_C5.png"]) as image:
        assert image.mode == "RGB"
        assert image.size == result.view.size == (224, 224)
        pixels = np.asarray(image)
        text = dict(image.text)
    np.testing.assert_array_equal(pixels, expected)
    target = result.topk[0][0]
    assert text["target"] == f"{target} {analyzer.categories[target]}"
    assert text["method"] == GRADCAM_METHOD
    assert "Grad-CAM" in text["method"]
    assert text["stage"] == "C5"
    assert text["model"] == "resnet101"
    assert text["source"] == SOURCE
    assert text["colormap"] == "turbo"
    assert text["opacity"] == "0.5"
    assert "random" in text["weights"]


def test_overlay_options_are_honoured(
    tmp_path: Path, analyzer: Analyzer, result: AnalysisResult, cams: dict[str, GradCam]
) -> None:
    options = ExportOptions(stages=(), cam_stage="C3", cam_colormap="gray", opacity=0.25)
    path = export_result(analyzer, result, tmp_path, "img", options, cams=cams)[0]
    expected = overlay(result.view, cams["C3"].map, opacity=0.25, colormap="gray")
    with Image.open(path) as image:
        np.testing.assert_array_equal(np.asarray(image), expected)
        assert image.text["stage"] == "C3"
        assert image.text["opacity"] == "0.25"
        assert image.text["colormap"] == "gray"


def test_timings_csv(grids: dict[str, Path], result: AnalysisResult) -> None:
    path = grids["img_resnet101_timings.csv"]
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["layer", "type", "milliseconds"]
    assert len(result.timings) > 0
    assert len(rows) == len(result.timings) + 1
    for row, (name, kind, milliseconds) in zip(rows[1:], result.timings, strict=True):
        assert row[:2] == [name, kind]
        assert len(row) == 3
        assert float(row[2]) >= 0
        assert float(row[2]) == pytest.approx(milliseconds, abs=1e-4)


def test_timings_csv_quotes_awkward_names(tmp_path: Path) -> None:
    timings = [("a,b", 'Odd"Type', 1.5), ("layer\n2", "ReLU", 0.0)]
    path = save_timings(tmp_path / "t.csv", timings)
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows == [
        ["layer", "type", "milliseconds"],
        ["a,b", 'Odd"Type', "1.5000"],
        ["layer\n2", "ReLU", "0.0000"],
    ]


@pytest.mark.parametrize("source", [SOURCE, "plain.png", "Ünïcödé ☃ 画像.jpg", "<image>"])
def test_any_source_name_round_trips(tmp_path: Path, source: str) -> None:
    image = Image.new("P", (3, 2))
    path = save_png(tmp_path / "x.png", image, {"source": source, "normalisation": "min–max"})
    with Image.open(path) as reread:
        assert reread.text == {"source": source, "normalisation": "min–max"}


def test_gradcam_order_export(tmp_path: Path, analyzer: Analyzer, result: AnalysisResult) -> None:
    # No cams given: the channel weights come from a Grad-CAM computed here (C5: a quick one).
    stage = "C5"
    options = ExportOptions(stages=(stage,), cam_stage=None, order="gradcam")
    written = export_result(analyzer, result, tmp_path, "img", options)
    assert listing(tmp_path) == sorted(path.name for path in written)
    weights = analyzer.gradcams(result, [stage])[stage].channel_weights
    order = channel_order(result.stages[stage], "gradcam", weights)
    assert sorted(order) == list(range(result.stages[stage].shape[0]))
    expected = render_grid(result.stages[stage], order="gradcam", weights=weights)
    with Image.open(written[0]) as image:
        np.testing.assert_array_equal(np.asarray(image), expected.indices)
        text = dict(image.text)
    prefix = ORDERS["gradcam"] + ": "
    assert text["channel order"].startswith(prefix)
    assert [int(c) for c in text["channel order"][len(prefix) :].split()] == order


def test_gradcam_order_with_given_cams(
    tmp_path: Path, analyzer: Analyzer, result: AnalysisResult, cams: dict[str, GradCam]
) -> None:
    options = ExportOptions(stages=("C1", "C3"), cam_stage="C5", order="gradcam", scale="stage")
    written = export_result(analyzer, result, tmp_path, "img", options, cams=cams)
    assert listing(tmp_path) == sorted(output_names("img", "resnet101", options))
    for path, stage in zip(written, options.stages, strict=False):
        weights = cams[stage].channel_weights
        expected = render_grid(
            result.stages[stage], order="gradcam", weights=weights, scale="stage"
        )
        with Image.open(path) as image:
            np.testing.assert_array_equal(np.asarray(image), expected.indices)
            assert image.text["normalisation"] == SCALES["stage"]
            order = " ".join(str(c) for c in expected.layout.order)
            assert image.text["channel order"] == f"{ORDERS['gradcam']}: {order}"


# --- atomic writes -------------------------------------------------------------------------


class InjectedError(OSError):
    """The failure the tests inject."""


def failing(*_args: object, **_kwargs: object) -> Any:
    raise InjectedError(errno.ENOSPC, "No space left on device")


def test_a_failed_save_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, analyzer: Analyzer, result: AnalysisResult
) -> None:
    monkeypatch.setattr(Image.Image, "save", failing)
    with pytest.raises(InjectedError):
        export_result(analyzer, result, tmp_path, "img", ExportOptions(stages=("C3",)))
    assert listing(tmp_path) == []


def test_a_failure_midway_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    analyzer: Analyzer,
    result: AnalysisResult,
    cams: dict[str, GradCam],
) -> None:
    save = Image.Image.save
    calls = []

    def second_fails(self: Image.Image, *args: object, **kwargs: object) -> None:
        calls.append(self)
        if len(calls) == 2:
            failing()
        save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", second_fails)
    options = ExportOptions(stages=("C4", "C5"), cam_stage="C5")
    with pytest.raises(InjectedError):
        export_result(analyzer, result, tmp_path, "img", options, cams=cams)
    assert listing(tmp_path) == []  # the C4 grid, written first, is gone with the rest


# --- all or nothing: a failure at any write ------------------------------------------------

FOUR = ExportOptions(stages=("C4", "C5"), cam_stage="C5")  # 4 files: 2 grids, overlay, CSV


def fail_at(monkeypatch: pytest.MonkeyPatch, step: str, position: int) -> list[str]:
    """Make the ``position``-th (1-based) call of ``step`` fail as a full disk would.

    ``"temporary"``: creating a file's temporary (every file's bytes go through one);
    ``"rename"``: ``os.replace`` (a temporary renamed into place). Returns the names the calls
    were about, in order.
    """
    seen: list[str] = []
    if step == "temporary":
        original = export._new_temporary

        def counted(path: Path) -> tuple[Path, int]:
            seen.append(path.name)
            if len(seen) == position:
                failing()
            return original(path)

        monkeypatch.setattr(export, "_new_temporary", counted)
    else:
        replace = os.replace

        def counted_replace(source: Any, destination: Any) -> None:
            seen.append(Path(destination).name)
            if len(seen) == position:
                failing()
            replace(source, destination)

        monkeypatch.setattr(export.os, "replace", counted_replace)
    return seen


@pytest.mark.parametrize("step", ["temporary", "rename"])
@pytest.mark.parametrize("position", [1, 2, 3, 4])
def test_a_failure_at_any_write_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    analyzer: Analyzer,
    result: AnalysisResult,
    cams: dict[str, GradCam],
    step: str,
    position: int,
) -> None:
    seen = fail_at(monkeypatch, step, position)
    with pytest.raises(InjectedError) as raised:
        export_result(analyzer, result, tmp_path, "img", FOUR, cams=cams)
    monkeypatch.undo()
    assert len(seen) == position  # nothing is tried after the failure
    assert raised.value.filename == str(tmp_path / seen[-1])  # names the file, not a temporary
    assert listing(tmp_path) == []  # no file of the export, no temporary


@pytest.mark.parametrize("step", ["temporary", "rename"])
@pytest.mark.parametrize("position", [1, 2, 3, 4])
def test_a_failed_export_keeps_every_file_it_would_have_replaced(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    analyzer: Analyzer,
    result: AnalysisResult,
    cams: dict[str, GradCam],
    step: str,
    position: int,
) -> None:
    names = output_names("img", "resnet101", FOUR)
    for name in names:
        (tmp_path / name).write_bytes(f"an earlier {name}".encode())
    fail_at(monkeypatch, step, position)
    with pytest.raises(InjectedError):
        export_result(analyzer, result, tmp_path, "img", FOUR, cams=cams)
    monkeypatch.undo()
    assert listing(tmp_path) == sorted(names)
    for name in names:
        assert (tmp_path / name).read_bytes() == f"an earlier {name}".encode()


def test_an_interrupted_export_leaves_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    analyzer: Analyzer,
    result: AnalysisResult,
    cams: dict[str, GradCam],
) -> None:
    (tmp_path / "img_resnet101_C4.png").write_bytes(b"an earlier grid")
    original = export._new_temporary
    calls: list[Path] = []

    def third_interrupted(path: Path) -> tuple[Path, int]:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(path)

    monkeypatch.setattr(export, "_new_temporary", third_interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_result(analyzer, result, tmp_path, "img", FOUR, cams=cams)
    assert listing(tmp_path) == ["img_resnet101_C4.png"]
    assert (tmp_path / "img_resnet101_C4.png").read_bytes() == b"an earlier grid"


def test_a_successful_export_replaces_the_old_files_and_leaves_no_backup(
    tmp_path: Path, analyzer: Analyzer, result: AnalysisResult, cams: dict[str, GradCam]
) -> None:
    names = output_names("img", "resnet101", FOUR)
    for name in names:
        (tmp_path / name).write_bytes(b"old")
    export_result(analyzer, result, tmp_path, "img", FOUR, cams=cams)
    assert listing(tmp_path) == sorted(names)
    assert all((tmp_path / name).read_bytes() != b"old" for name in names)


@pytest.mark.parametrize("step", ["replace", "fdopen write"])
def test_a_failed_write_leaves_no_temporary_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    target = tmp_path / "grid.png"
    target.write_bytes(b"old content")
    temporaries: list[str] = []
    new_temporary = export._new_temporary
    fdopen = os.fdopen

    def recording_new_temporary(path: Path) -> tuple[Path, int]:
        name, handle = new_temporary(path)
        temporaries.append(str(name))
        return name, handle

    class HalfWriter:
        """A file that takes half the data, then reports a full disk."""

        def __init__(self, file: io.BufferedWriter) -> None:
            self.file = file

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *_exc: object) -> None:
            self.file.close()

        def write(self, data: bytes | memoryview) -> int:
            view = memoryview(data)
            self.file.write(view[: len(view) // 2])
            self.file.flush()
            assert Path(temporaries[-1]).stat().st_size == len(view) // 2
            failing()
            return 0

    monkeypatch.setattr(export, "_new_temporary", recording_new_temporary)
    if step == "replace":
        monkeypatch.setattr(export.os, "replace", failing)
    else:
        monkeypatch.setattr(export.os, "fdopen", lambda *a, **k: HalfWriter(fdopen(*a, **k)))
    with pytest.raises(InjectedError):
        save_png(target, Image.new("RGB", (4, 4)), {"stage": "C1"})
    monkeypatch.undo()
    assert len(temporaries) == 1
    temporary = Path(temporaries[0])
    assert temporary.parent == tmp_path
    assert temporary.name.endswith(".part")
    assert not temporary.exists()
    assert listing(tmp_path) == ["grid.png"]
    assert target.read_bytes() == b"old content"


def test_a_new_file_is_not_created_by_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export.os, "replace", failing)
    with pytest.raises(InjectedError):
        write_atomically(tmp_path / "out.csv", b"a,b\n")
    assert listing(tmp_path) == []


def test_a_successful_write_replaces_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "grid.png"
    target.write_bytes(b"old content")
    save_png(target, Image.new("RGB", (4, 3), (1, 2, 3)), {"stage": "C1"})
    assert listing(tmp_path) == ["grid.png"]
    with Image.open(target) as image:
        assert image.size == (4, 3)
        assert image.getpixel((0, 0)) == (1, 2, 3)
        assert image.text == {"stage": "C1"}


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_a_read_only_folder_raises(
    tmp_path: Path, analyzer: Analyzer, result: AnalysisResult, cams: dict[str, GradCam]
) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OSError, match="Permission denied"):
            export_result(analyzer, result, folder, "img", ExportOptions(stages=("C5",)), cams=cams)
        assert listing(folder) == []
    finally:
        folder.chmod(0o755)


def test_a_missing_folder_raises(
    tmp_path: Path, analyzer: Analyzer, result: AnalysisResult, cams: dict[str, GradCam]
) -> None:
    folder = tmp_path / "missing"
    with pytest.raises(OSError, match="No such file"):
        export_result(analyzer, result, folder, "img", ExportOptions(stages=("C5",)), cams=cams)
    assert not folder.exists()
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "write",
    [
        lambda path: write_atomically(path, b"some bytes"),
        lambda path: write_atomically(path, memoryview(b"some bytes")),
        lambda path: save_png(path, Image.new("L", (2, 2)), {}),
        lambda path: save_timings(path, [("conv1", "Conv2d", 1.0)]),
    ],
    ids=["bytes", "memoryview", "png", "csv"],
)
def test_written_files_get_the_usual_permissions(
    tmp_path: Path, write: Callable[[Path], Path]
) -> None:
    reference = tmp_path / "reference"
    reference.write_bytes(b"")  # what open() makes under the current umask
    usual = stat.S_IMODE(reference.stat().st_mode)
    path = write(tmp_path / "file")
    assert path == tmp_path / "file"
    assert stat.S_IMODE(path.stat().st_mode) == usual
    current = os.umask(0o022)
    os.umask(current)
    if current == 0o022:
        assert usual == 0o644
    assert listing(tmp_path) == ["file", "reference"]


def test_write_atomically_writes_the_data(tmp_path: Path) -> None:
    path = write_atomically(str(tmp_path / "data.bin"), bytes(range(256)) * 3)
    assert isinstance(path, Path)
    assert path.read_bytes() == bytes(range(256)) * 3


def test_a_file_name_that_is_not_utf_8_is_kept_as_escapes(tmp_path: Path) -> None:
    # On Linux a name from an old disk may hold bytes that are not UTF-8: Python keeps them as
    # surrogates, which no PNG text chunk can hold as they are.
    source = os.fsdecode(b"/photos/caf\xe9.jpg")
    path = save_png(tmp_path / "grid.png", Image.new("RGB", (4, 4)), {"source": source})
    with Image.open(path) as written:
        assert written.text["source"] == "/photos/caf\\udce9.jpg"


# --- a network of one's own: its classes, labels and scores in the metadata; its name ---------


def test_metadata_names_the_classes_their_labels_scores_and_input(
    grids: dict[str, Path],
) -> None:
    for name in ("img_resnet101_C3.png", "img_resnet101_gradcam_C5.png"):
        with Image.open(grids[name]) as image:
            text = dict(image.text)
        assert text["classes"] == "1000"
        assert text["labels"] == "ImageNet (torchvision)"
        assert text["scores"] == "softmax over the 1000 classes"
        assert text["input"] == "3×224×224"


def test_a_network_can_be_named_otherwise_in_the_file_names(
    tmp_path: Path, analyzer: Analyzer, result: AnalysisResult, cams: dict[str, GradCam]
) -> None:
    options = ExportOptions(stages=("C2",), cam_stage="C5")
    written = export_result(
        analyzer, result, tmp_path, "img", options, cams=cams, name="resnet101-ft5"
    )
    assert [path.name for path in written] == [
        "img_resnet101-ft5_C2.png",
        "img_resnet101-ft5_gradcam_C5.png",
        "img_resnet101-ft5_timings.csv",
    ]
    assert listing(tmp_path) == sorted(path.name for path in written)
    with Image.open(written[0]) as image:
        assert image.text["model"] == "resnet101"  # the architecture, as before


def test_a_one_output_heads_overlay_says_sigmoid_and_its_own_label(
    tmp_path: Path, result: AnalysisResult, cams: dict[str, GradCam]
) -> None:
    binary = dataclasses.replace(
        result,
        logits=torch.tensor([0.3]),
        topk=[(0, "defect", float(torch.sigmoid(torch.tensor(0.3))))],
        classes=1,
        scores="sigmoid",
        labels_source="the checkpoint ('class_names')",
    )
    cam = dataclasses.replace(cams["C5"], target=0)
    path = export.save_overlay(tmp_path / "o.png", binary, cam, "defect")
    with Image.open(path) as image:
        text = dict(image.text)
    assert text["target"] == "0 defect"
    assert text["classes"] == "1"
    assert text["labels"] == "the checkpoint ('class_names')"
    assert text["scores"] == "sigmoid of the one output (a binary classifier's probability)"

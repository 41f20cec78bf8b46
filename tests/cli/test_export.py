"""``fmviz export``: file names, options, one-line errors per input, exit codes, no traceback.

Each network is built once per module (``Analyzer`` is shared between the in-process runs);
the end-to-end run through ``python -m visualizer`` builds its own.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from visualizer import core as engine
from visualizer.cli import main
from visualizer.core import Analyzer
from visualizer.core import export as core_export
from visualizer.core.export import ExportOptions, output_names

STAGES = ("C1", "C2", "C3", "C4", "C5")
SESSION_DEVICES = {"cpu", os.environ.get("FMVIZ_TEST_DEVICE", "cpu")}  # as ``device`` says


class Run(NamedTuple):
    """What one ``fmviz`` run gave: exit status, stdout, stderr."""

    status: int
    out: str
    err: str


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (40, 48)) -> Path:
    """A small random RGB picture, in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def contract_names(
    stem: str, model: str = "resnet101", stages: tuple[str, ...] = STAGES, cam: str = "C5"
) -> set[str]:
    """The file names DESIGN.md §4 promises for one image."""
    return {
        *(f"{stem}_{model}_{stage}.png" for stage in stages),
        f"{stem}_{model}_gradcam_{cam}.png",
        f"{stem}_{model}_timings.csv",
    }


def files_in(folder: Path) -> set[str]:
    """Every entry of ``folder``, hidden ones included."""
    return {path.name for path in folder.iterdir()}


@pytest.fixture(scope="module", autouse=True)
def shared_analyzers(networks) -> Iterator[None]:
    """Build each network once for the in-process runs of this module; the random ones on the
    test device are the session's (``networks``: built once for every folder's tests)."""
    built: dict[tuple[str, str, str], Analyzer] = {}

    def analyzer(model: str, weights: str, device: str, **options: object) -> Analyzer:
        if options:  # a network of one's own: its own analyzer
            return Analyzer(model, weights, device, **options)
        if str(weights) == "random" and str(device) in SESSION_DEVICES:
            return networks.analyzer(model, str(device))
        key = (model, str(weights), str(device))
        if key not in built:
            built[key] = Analyzer(model, weights, device)
        return built[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "Analyzer", analyzer)
        yield


def run_export(*words: str | Path, device: str) -> Run:
    """``fmviz export WORDS --weights random --device DEVICE``, in-process."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["export", *map(str, words), "--weights", "random", "--device", device]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return Run(status, out.getvalue(), err.getvalue())


def test_output_names_are_the_contract_names() -> None:
    names = output_names("cat", "resnet101", ExportOptions())
    assert set(names) == contract_names("cat")
    assert len(names) == len(set(names))


# --- one bad input at a time, in-process ---


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        pytest.param("missing.png", None, "no such file", id="missing"),
        pytest.param("empty.png", b"", "the file is empty", id="empty"),
        pytest.param("x.jpg", b"plain text\n", "not an image", id="text"),
        pytest.param("vector.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG", id="svg"),
    ],
)
def test_a_bad_input_is_one_line_error(
    tmp_path: Path, device: str, name: str, content: bytes | str | None, reason: str
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    run = run_export(path, "--out", tmp_path / "out", device=device)
    assert run.status == 1
    assert run.err.startswith(f"error: {path}: ")
    assert reason in run.err
    assert run.err.count("\n") == 1
    assert run.err.endswith("\n")
    assert run.out == f"exported 0 of 1 images (0 files) to {tmp_path / 'out'}\n"
    assert not (tmp_path / "out").exists()  # no folder made for nothing


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path: Path, device: str) -> None:
    path = tmp_path / "two\nlines.png"
    run = run_export(path, "--out", tmp_path / "out", device=device)
    assert run.status == 1
    assert run.err == f"error: {tmp_path}/two\\nlines.png: no such file\n"


def test_a_png_input_is_exported(tmp_path: Path, device: str) -> None:
    image = write_image(tmp_path / "pic.png")
    run = run_export(image, "--stages", "C5", "--out", tmp_path, device=device)
    assert run.status == 0
    assert contract_names("pic", stages=("C5",)) <= files_in(tmp_path)


# --- all good ---


@pytest.fixture(scope="module")
def all_good(tmp_path_factory: pytest.TempPathFactory, device: str) -> tuple[Run, Path]:
    folder = tmp_path_factory.mktemp("good")
    images = [write_image(folder / "one.jpg", seed=3), write_image(folder / "two.jpeg", seed=4)]
    out = folder / "not" / "there" / "yet"
    return run_export(*images, "--stages", "all", "--out", out, device=device), out


def test_all_good_exits_0_with_nothing_on_stderr(all_good: tuple[Run, Path]) -> None:
    run, out = all_good
    assert run.status == 0
    assert run.err == ""  # stderr is not a terminal: no progress bar either
    assert run.out == f"exported 2 of 2 images (14 files) to {out}\n"


def test_stages_all_writes_five_grids_into_a_new_nested_folder(
    all_good: tuple[Run, Path],
) -> None:
    _, out = all_good
    assert files_in(out) == contract_names("one") | contract_names("two")


# --- options ---


@pytest.fixture(scope="module")
def with_options(tmp_path_factory: pytest.TempPathFactory, device: str) -> tuple[Run, Path]:
    folder = tmp_path_factory.mktemp("options")
    image = write_image(folder / "cat.jpg", seed=5)
    words = ["--stages", "C1,c3", "--cam-stage", "C4", "--colormap", "gray", "--target", "281"]
    return run_export(image, *words, "--out", folder / "out", device=device), folder / "out"


def test_options_write_only_the_stages_asked_for(with_options: tuple[Run, Path]) -> None:
    run, out = with_options
    assert run.status == 0, run.err
    assert files_in(out) == {
        "cat_resnet101_C1.png",
        "cat_resnet101_C3.png",
        "cat_resnet101_gradcam_C4.png",
        "cat_resnet101_timings.csv",
    }


@pytest.mark.parametrize("stage", ["C1", "C3"])
def test_the_colormap_is_in_the_grid_metadata(with_options: tuple[Run, Path], stage: str) -> None:
    _, out = with_options
    with Image.open(out / f"cat_resnet101_{stage}.png") as grid:
        assert grid.text["colormap"] == "gray"
        assert grid.text["stage"] == stage
        assert grid.text["model"] == "resnet101"
        assert grid.text["weights"].startswith("random")


def test_the_target_and_stage_are_in_the_overlay_metadata(
    with_options: tuple[Run, Path],
) -> None:
    _, out = with_options
    with Image.open(out / "cat_resnet101_gradcam_C4.png") as overlay:
        assert overlay.text["target"].startswith("281 ")
        assert overlay.text["stage"] == "C4"


def test_compare_exports_both_networks(tmp_path: Path, device: str) -> None:
    image = write_image(tmp_path / "dog.jpg", seed=6)
    out = tmp_path / "out"
    run = run_export(
        image, "--compare", "--model", "vgg16", "--stages", "C2", "--out", out, device=device
    )
    assert run.status == 0, run.err
    assert files_in(out) == contract_names("dog", "vgg16", ("C2",)) | contract_names(
        "dog", "resnet101", ("C2",)
    ) | {"dog_compare_C2.png", "dog_compare_timings.csv"}
    for model in ("vgg16", "resnet101"):
        with Image.open(out / f"dog_{model}_C2.png") as grid:
            assert grid.text["model"] == model


# --- inputs sharing a stem, inputs given twice ---


@pytest.fixture(scope="module")
def same_stems(tmp_path_factory: pytest.TempPathFactory, device: str) -> tuple[Run, Path, Path]:
    folder = tmp_path_factory.mktemp("stems")
    first = write_image(folder / "a" / "x.jpg", seed=7)
    second = write_image(folder / "b" / "x.jpg", seed=8)
    out = folder / "out"
    run = run_export(first, second, first, "--stages", "C1", "--out", out, device=device)
    return run, first, second


def test_inputs_with_the_same_stem_are_all_exported(same_stems: tuple[Run, Path, Path]) -> None:
    run, first, second = same_stems
    out = first.parent.parent / "out"
    assert run.status == 0, run.err
    assert files_in(out) == contract_names("x", stages=("C1",)) | contract_names(
        "x-2", stages=("C1",)
    )
    for stem, image in (("x", first), ("x-2", second)):
        for name in contract_names(stem, stages=("C1",)) - {f"{stem}_resnet101_timings.csv"}:
            with Image.open(out / name) as picture:
                assert picture.text["source"] == str(image)


def test_the_same_file_twice_is_exported_once(same_stems: tuple[Run, Path, Path]) -> None:
    run, first, _ = same_stems
    assert run.out.startswith("exported 2 of 2 images (6 files) to ")
    assert not list((first.parent.parent / "out").glob("x-3_*"))


def test_a_numbered_stem_does_not_collide_with_a_real_one(tmp_path: Path, device: str) -> None:
    images = [
        write_image(tmp_path / "a" / "x.jpg", seed=9),
        write_image(tmp_path / "b" / "x.jpg", seed=10),
        write_image(tmp_path / "x-2.jpg", seed=11),
    ]
    out = tmp_path / "out"
    run = run_export(*images, "--stages", "C1", "--out", out, device=device)
    assert run.status == 0, run.err
    sources = set()
    for grid in out.glob("*_resnet101_C1.png"):
        with Image.open(grid) as picture:
            sources.add(picture.text["source"])
    assert sources == {str(image) for image in images}


def test_the_same_file_spelt_two_ways_is_exported_once(tmp_path: Path, device: str) -> None:
    image = write_image(tmp_path / "p.jpg", seed=12)
    out = tmp_path / "out"
    again = f"{tmp_path}/./p.jpg"  # a string: pathlib would drop the "."
    run = run_export(image, again, "--stages", "C1", "--out", out, device=device)
    assert run.status == 0, run.err
    assert files_in(out) == contract_names("p", stages=("C1",))


# --- the output folder, weights and device ---


@pytest.mark.parametrize(("below", "reason"), [("", "exists"), ("sub", "not a folder")])
def test_out_that_is_a_file_is_one_error_line(
    tmp_path: Path, device: str, below: str, reason: str
) -> None:
    image = write_image(tmp_path / "p.jpg")
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    out = blocker / below if below else blocker
    run = run_export(image, "--out", out, device=device)
    assert run.status == 1
    assert run.err.startswith(f"error: {out}: ")
    assert reason in run.err
    assert run.err.count("\n") == 1
    assert blocker.read_text() == "keep me"


def test_missing_weights_file_is_one_error_line(tmp_path: Path, device: str) -> None:
    image = write_image(tmp_path / "p.jpg")
    missing = tmp_path / "missing.pth"
    out, err = io.StringIO(), io.StringIO()
    argv = ["export", str(image), "--out", str(tmp_path / "out"), "--weights", str(missing)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*argv, "--device", device])
    assert status == 1
    assert err.getvalue().startswith(f"error: {missing}: no such file")
    assert err.getvalue().count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_a_gpu_is_one_error_line(tmp_path: Path) -> None:
    image = write_image(tmp_path / "p.jpg")
    run = run_export(image, "--out", tmp_path / "out", device="cuda")
    assert run.status != 0
    assert run.err.startswith("error: ")
    assert "CUDA" in run.err
    assert run.err.count("\n") == 1
    assert "Traceback" not in run.err


# --- bad usage ---

EXPORT = ["export", "in.jpg", "--out", "out"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        pytest.param([*EXPORT, "--stages", "C9"], "'C9' is not a stage", id="stage-C9"),
        pytest.param([*EXPORT, "--stages", ","], "name at least one stage", id="no-stage"),
        pytest.param([*EXPORT, "--target", "-1"], "-1 is not a class index", id="target--1"),
        pytest.param([*EXPORT, "--target", "cat"], "'cat' is not a class", id="target-cat"),
        pytest.param([*EXPORT, "--cam-stage", "X"], "'X' is not a stage", id="cam-stage-X"),
        pytest.param([*EXPORT, "--colormap", "nope"], "invalid choice: 'nope'", id="colormap"),
        pytest.param([*EXPORT, "--model", "alexnet"], "invalid choice: 'alexnet'", id="model"),
        pytest.param(["bench", "--runs", "0"], "must be at least 1", id="bench-runs-0"),
        pytest.param(["export", "in.jpg"], "required: --out", id="no-out"),
        pytest.param(["export", "--out", "out"], "required: IMAGE", id="no-image"),
    ],
)
def test_bad_usage_exits_2(
    words: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(words)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"usage: fmviz {words[0]}")
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_bad_usage_end_to_end_exits_2_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "visualizer", *EXPORT, "--stages", "C9"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: fmviz export")
    assert result.stderr.splitlines()[-1].startswith("fmviz export: error: argument --stages:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_imagenet_weights_say_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(*_args: object, **_kwargs: object) -> socket.socket:
        raise OSError(101, "Network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(socket, "create_connection", offline)
    image = write_image(tmp_path / "p.jpg")
    status = main(["export", str(image), "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert "resnet101-cd907fc2.pth" in err
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in err
    assert "--weights random" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_unexpected_failure_on_one_image_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = write_image(tmp_path / "a.png", seed=1), write_image(tmp_path / "b.png")
    analyze = Analyzer.analyze

    def flaky(self: Analyzer, image: object, *, source: str | None = None) -> object:
        if source == str(first):
            raise RuntimeError("something broke")
        return analyze(self, image, source=source)

    monkeypatch.setattr(Analyzer, "analyze", flaky)
    out = tmp_path / "out"
    status = main(["export", str(first), str(second), "--out", str(out), "--weights", "random"])
    err = capsys.readouterr().err
    assert status == 1
    assert err == f"error: {first}: failed unexpectedly (RuntimeError: something broke)\n"
    assert files_in(out) == contract_names("b")


def test_an_unexpected_error_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("CUDA driver initialisation failed\nsecond line")

    monkeypatch.setattr(engine, "Analyzer", broken)
    image = write_image(tmp_path / "p.jpg")
    status = main(["export", str(image), "--out", str(tmp_path / "out"), "--weights", "random"])
    err = capsys.readouterr().err
    assert status == 1
    assert err == (
        "error: unexpected RuntimeError: CUDA driver initialisation failed second line "
        "(FMVIZ_DEBUG=1 shows where)\n"
    )


def test_the_command_line_choices_are_the_engines() -> None:
    """What ``fmviz export`` offers is what the engine takes (the lists live in
    ``visualizer.choices`` so the command line need not import torch to show them)."""
    import argparse

    from models import MODEL_NAMES, STAGE_NAMES
    from visualizer.cli import export as command
    from visualizer.cli.options import stages
    from visualizer.core.device import DEVICE_CHOICES
    from visualizer.core.render import COLORMAPS

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    [export_parser] = parser._subparsers._group_actions[0].choices.values()
    offered = {action.dest: action.choices for action in export_parser._actions}
    assert tuple(offered["model"]) == MODEL_NAMES
    assert tuple(offered["device"]) == DEVICE_CHOICES
    assert tuple(offered["colormap"]) == COLORMAPS
    assert stages("all") == STAGE_NAMES


# --- the summary says what is on disk; all of an image's files or none ---


class DiskFullError(OSError):
    """The failure injected into a write."""


def fail_write_at(monkeypatch: pytest.MonkeyPatch, step: str, position: int) -> list[str]:
    """Make the ``position``-th (1-based) file write fail as a full disk would: at its
    temporary (``"temporary"``) or at its rename into place (``"rename"``). Returns the names
    of the files tried, in order."""
    seen: list[str] = []

    def count(name: str) -> None:
        seen.append(name)
        if len(seen) == position:
            raise DiskFullError(errno.ENOSPC, "No space left on device")

    if step == "temporary":
        original = core_export._new_temporary
        monkeypatch.setattr(
            core_export, "_new_temporary", lambda path: count(path.name) or original(path)
        )
    else:
        replace = os.replace
        monkeypatch.setattr(
            core_export.os,
            "replace",
            lambda source, target: count(Path(target).name) or replace(source, target),
        )
    return seen


_analyses: dict[tuple[int, str | None], object] = {}


@pytest.fixture
def remembered_analyses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each network analyses each image once for the whole module: the fault-injection tests
    run the same export many times, and what they check is the writing, not the analysis."""
    analyze = Analyzer.analyze

    def remembered(self: Analyzer, image: object, *, source: str | None = None) -> object:
        key = (id(self), source)
        if key not in _analyses:
            _analyses[key] = analyze(self, image, source=source)
        return _analyses[key]

    monkeypatch.setattr(Analyzer, "analyze", remembered)


SUMMARY = re.compile(r"exported (\d+) of (\d+) images \((\d+) files\) to ")


@pytest.fixture(scope="module")
def two_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("two")
    return [write_image(folder / "coffee.jpg", seed=21), write_image(folder / "tea.png", seed=22)]


@pytest.mark.usefixtures("remembered_analyses")
@pytest.mark.parametrize("step", ["temporary", "rename"])
@pytest.mark.parametrize("position", range(1, 7))  # 2 images × (grid, overlay, CSV)
def test_the_summary_counts_what_is_on_disk(
    tmp_path: Path,
    device: str,
    *,
    monkeypatch: pytest.MonkeyPatch,
    two_images: list[Path],
    step: str,
    position: int,
) -> None:
    out = tmp_path / "out"
    seen = fail_write_at(monkeypatch, step, position)
    run = run_export(*two_images, "--stages", "C5", "--out", out, device=device)
    monkeypatch.undo()
    assert run.status == 1
    failed = two_images[0] if position <= 3 else two_images[1]
    assert run.err.startswith(f"error: {failed}: cannot write {seen[position - 1]} to {out} ")
    match = SUMMARY.match(run.out)
    assert match, run.out
    on_disk = os.listdir(out)
    assert int(match[3]) == len(on_disk) == 3  # the other image's three files, nothing else
    complete = [
        path for path in two_images if contract_names(path.stem, stages=("C5",)) <= set(on_disk)
    ]
    assert (int(match[1]), int(match[2])) == (len(complete), 2) == (1, 2)
    assert complete != [failed]


@pytest.mark.usefixtures("remembered_analyses")
@pytest.mark.parametrize("position", range(1, 9))  # 2 × (grid, overlay, CSV), comparison PNG, CSV
def test_with_compare_a_failed_write_leaves_nothing_of_the_image(
    tmp_path: Path,
    device: str,
    monkeypatch: pytest.MonkeyPatch,
    two_images: list[Path],
    position: int,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    fail_write_at(monkeypatch, "temporary", position)
    run = run_export(two_images[0], "--compare", "--stages", "C5", "--out", out, device=device)
    monkeypatch.undo()
    assert run.status == 1
    assert run.err.count("\n") == 1
    assert run.out == f"exported 0 of 1 images (0 files) to {out}\n"
    assert os.listdir(out) == []


def test_no_folder_is_left_when_nothing_could_be_written(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch, two_images: list[Path]
) -> None:
    def full(_path: Path) -> tuple[Path, int]:
        raise DiskFullError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(core_export, "_new_temporary", full)
    out = tmp_path / "a" / "b" / "out"
    run = run_export(*two_images, "--stages", "C5", "--out", out, device=device)
    monkeypatch.undo()
    assert run.status == 1
    assert len(run.err.splitlines()) == 2
    assert run.out == f"exported 0 of 2 images (0 files) to {out}\n"
    assert os.listdir(tmp_path) == []  # neither out nor the folders made above it


def test_a_folder_that_was_there_stays_when_nothing_is_exported(
    tmp_path: Path, device: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    run = run_export(tmp_path / "missing.png", "--out", out, device=device)
    assert run.status == 1
    assert out.is_dir()


def test_the_writability_check_leaves_no_folder_behind(tmp_path: Path, device: str) -> None:
    # The check makes the folders to try a file in them, and takes them away again: the one
    # image is missing, so nothing is written and nothing may be left.
    run = run_export(tmp_path / "missing.png", "--out", tmp_path / "new" / "out", device=device)
    assert run.status == 1
    assert run.out == f"exported 0 of 1 images (0 files) to {tmp_path / 'new' / 'out'}\n"
    assert os.listdir(tmp_path) == []


# --- folders, as the window takes them ---


def test_a_folder_gives_its_images_and_those_of_its_subfolders(tmp_path: Path, device: str) -> None:
    folder = tmp_path / "photos"
    write_image(folder / "b.png", seed=1)
    write_image(folder / "a.jpg", seed=2)
    write_image(folder / "inner" / "c.png", seed=3)
    write_image(folder / ".hidden" / "d.png", seed=4)  # hidden: left out, as in the window
    write_image(folder / ".e.png", seed=5)
    (folder / "notes.txt").write_text("not an image\n")
    out = tmp_path / "out"
    run = run_export(folder, "--stages", "C5", "--out", out, device=device)
    assert run.status == 0, run.err
    assert run.err == ""
    assert run.out == f"exported 3 of 3 images (9 files) to {out}\n"
    expected = set().union(*(contract_names(stem, stages=("C5",)) for stem in "abc"))
    assert files_in(out) == expected
    with Image.open(out / "c_resnet101_C5.png") as grid:
        assert grid.text["source"] == str(folder / "inner" / "c.png")


def test_a_folder_without_images_is_one_error_line(tmp_path: Path, device: str) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("no pictures here\n")
    good = write_image(tmp_path / "g.png")
    out = tmp_path / "out"
    run = run_export(empty, good, "--stages", "C5", "--out", out, device=device)
    assert run.status == 1
    assert run.err == f"error: {empty}: no images in this folder\n"
    assert run.out == f"exported 1 of 1 images (3 files) to {out}\n"


def test_a_folder_gives_at_most_the_windows_limit(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visualizer import folders

    monkeypatch.setattr(folders, "MAX_FOLDER_FILES", 2)
    folder = tmp_path / "many"
    for index in range(3):
        write_image(folder / f"{index}.png", seed=index)
    out = tmp_path / "out"
    run = run_export(folder, "--stages", "C5", "--out", out, device=device)
    assert run.status == 0, run.err
    assert run.err == f"note: {folder}: only its first 2 images are taken\n"
    assert run.out == f"exported 2 of 2 images (6 files) to {out}\n"
    assert {name.split("_")[0] for name in files_in(out)} == {"0", "1"}


# --- Ctrl+C ---


def test_ctrl_c_on_the_second_image_ends_cleanly(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [write_image(tmp_path / f"{name}.png", seed=30 + i) for i, name in enumerate("xyz")]
    analyze = Analyzer.analyze

    def interrupted(self: Analyzer, image: object, *, source: str | None = None) -> object:
        if source == str(images[1]):
            raise KeyboardInterrupt
        return analyze(self, image, source=source)

    monkeypatch.setattr(Analyzer, "analyze", interrupted)
    out = tmp_path / "out"
    run = run_export(*images, "--stages", "C5", "--out", out, device=device)
    assert run.status == 130
    assert run.out == ""
    assert run.err == f"interrupted: 1 of 3 images exported (3 files) to {out}\n"
    assert files_in(out) == contract_names("x", stages=("C5",))


def test_ctrl_c_while_writing_leaves_no_file_of_that_image(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [write_image(tmp_path / f"{name}.png", seed=40 + i) for i, name in enumerate("xy")]
    original = core_export._new_temporary
    calls: list[Path] = []

    def interrupted(path: Path) -> tuple[Path, int]:
        calls.append(path)
        if len(calls) == 5:  # the second file of the second image
            raise KeyboardInterrupt
        return original(path)

    monkeypatch.setattr(core_export, "_new_temporary", interrupted)
    out = tmp_path / "out"
    run = run_export(*images, "--stages", "C5", "--out", out, device=device)
    assert run.status == 130
    assert run.err == f"interrupted: 1 of 2 images exported (3 files) to {out}\n"
    assert files_in(out) == contract_names("x", stages=("C5",))  # no temporary either


def test_ctrl_c_before_anything_is_written_leaves_no_folder(
    tmp_path: Path, device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Analyzer, "analyze", interrupted)
    image = write_image(tmp_path / "p.png")
    run = run_export(image, "--out", tmp_path / "out", device=device)
    assert run.status == 130
    assert run.err == f"interrupted: 0 of 1 images exported (0 files) to {tmp_path / 'out'}\n"
    assert not (tmp_path / "out").exists()


# --- --annotate ---


def test_annotate_adds_a_figure_beside_each_picture(tmp_path: Path, device: str) -> None:
    image = write_image(tmp_path / "cup.jpg", seed=50)
    out = tmp_path / "out"
    run = run_export(image, "--annotate", "--stages", "C4,C5", "--out", out, device=device)
    assert run.status == 0, run.err
    annotated = {
        "cup_resnet101_C4_annotated.png",
        "cup_resnet101_C5_annotated.png",
        "cup_resnet101_gradcam_C5_annotated.png",
    }
    assert files_in(out) == contract_names("cup", stages=("C4", "C5")) | annotated
    assert run.out == f"exported 1 of 1 images (7 files) to {out}\n"
    options = ExportOptions(stages=("C4", "C5"), annotate=True)
    assert set(output_names("cup", "resnet101", options)) == files_in(out)
    for name in annotated:
        with Image.open(out / name) as figure:
            assert "cup.jpg" in figure.text["title"]
            assert figure.text["source"] == str(image)
            assert "untrained weights" in figure.text["warning"]


# --- what reading an image skipped: a note, never a raw library warning ---


def test_an_image_with_oversized_metadata_is_exported_with_one_note(
    tmp_path: Path, device: str
) -> None:
    """A PNG whose ICC profile inflates past Pillow's 1 MiB limit (as in a field report):
    exported, with one ``note:`` line saying what was skipped, and no warning text."""
    from tests.oversized_metadata import with_huge_icc_profile

    plain = write_image(tmp_path / "plain.png")
    profiled = with_huge_icc_profile(plain, tmp_path / "profiled.png")
    out = tmp_path / "out"
    run = run_export(profiled, "--stages", "C5", "--out", out, device=device)
    assert run.status == 0, run.err
    assert run.err.startswith(f"note: {profiled}: ICC profile ignored")
    assert run.err.count("\n") == 1
    assert "Warning" not in run.err
    assert run.out == f"exported 1 of 1 images (3 files) to {out}\n"


# --- two good images and four bad inputs, end to end through python -m visualizer ---


class MixedRun(NamedTuple):
    result: subprocess.CompletedProcess[str]
    out: Path
    good: dict[str, Path]  # stem: image
    bad: dict[Path, str]  # input: what its reason says


@pytest.fixture(scope="module", autouse=True)
def mixed_running(
    tmp_path_factory: pytest.TempPathFactory, device: str
) -> Iterator[tuple[Path, dict[str, Path], dict[Path, str], Future]]:
    """The end-to-end run below, started with the module's first test: its 5 s (most of it
    importing torch and torchvision on one core) pass while the in-process tests run; its
    tests come last in the module, and wait for it (``mixed``)."""
    folder = tmp_path_factory.mktemp("mixed")
    good = {
        "photo": write_image(folder / "photo.png", seed=1),
        "snap": write_image(folder / "snap.jpg", seed=2),
    }
    (folder / "a folder").mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "x.jpg").write_text("this is not a picture\n")
    bad = {
        folder / "missing.png": "no such file",
        folder / "a folder": "no images in this folder",
        folder / "empty.png": "the file is empty",
        folder / "x.jpg": "not an image",
    }
    out = folder / "out"
    inputs = [good["photo"], *list(bad)[:2], good["snap"], *list(bad)[2:]]
    options = ["--out", str(out), "--weights", "random", "--device", device]
    with ThreadPoolExecutor(1, thread_name_prefix="test-mixed") as pool:
        yield (
            out,
            good,
            bad,
            pool.submit(
                subprocess.run,
                [sys.executable, "-m", "visualizer", "export", *map(str, inputs), *options],
                capture_output=True,
                text=True,
                check=False,
                timeout=180,
                env=dict(os.environ),  # as it is now, not as a test's monkeypatch leaves it
                cwd=os.getcwd(),  # likewise
            ),
        )


@pytest.fixture(scope="module")
def mixed(mixed_running) -> MixedRun:
    out, good, bad, running = mixed_running
    return MixedRun(running.result(), out, good, bad)


def test_a_failed_input_makes_the_exit_status_1(mixed: MixedRun) -> None:
    assert mixed.result.returncode == 1, mixed.result.stderr


def test_each_bad_input_is_one_error_line_naming_it(mixed: MixedRun) -> None:
    assert "Traceback" not in mixed.result.stderr
    lines = mixed.result.stderr.splitlines()
    assert len(lines) == len(mixed.bad), mixed.result.stderr
    for line, (path, reason) in zip(lines, mixed.bad.items(), strict=True):
        assert line.startswith(f"error: {path}: "), line
        assert reason in line


def test_the_good_images_are_all_exported_under_the_contract_names(mixed: MixedRun) -> None:
    expected = set().union(*(contract_names(stem) for stem in mixed.good))
    assert files_in(mixed.out) == expected  # nothing else: no file for a bad input, no .part
    for stem, image in mixed.good.items():
        grid = mixed.out / f"{stem}_resnet101_C1.png"
        with Image.open(grid) as picture:
            assert picture.text["source"] == str(image)
            assert picture.text["stage"] == "C1"
        with Image.open(mixed.out / f"{stem}_resnet101_gradcam_C5.png") as picture:
            assert picture.size == (224, 224)
        with (mixed.out / f"{stem}_resnet101_timings.csv").open(newline="") as file:
            rows = list(csv.reader(file))
        assert rows[0] == ["layer", "type", "milliseconds"]
        assert len(rows) > 300  # every leaf layer of ResNet101


def test_no_temporary_file_is_left(mixed: MixedRun) -> None:
    left = [name for name in files_in(mixed.out) if name.endswith(".part") or name[0] == "."]
    assert left == []


def test_stdout_has_a_summary_line(mixed: MixedRun) -> None:
    # Five images: the two good ones and three bad files; the empty folder holds none.
    summary = f"exported 2 of 5 images (14 files) to {mixed.out}"
    assert mixed.result.stdout.splitlines() == [summary]

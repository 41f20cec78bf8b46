"""``fmviz export --compare``: both networks' files, Grad-CAMs of one shared class, the comparison.

Each network is built once for the module (``Analyzer`` is shared between the in-process runs,
as in test_export.py). The class every Grad-CAM must explain is worked out here, from the
network's own logits for the image, not from what the export wrote.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image

from visualizer import core as engine
from visualizer.cli import main
from visualizer.core import Analyzer

STAGES = ("C1", "C2", "C3", "C4", "C5")
MODELS = ("vgg16", "resnet101")
SESSION_DEVICES = {"cpu", os.environ.get("FMVIZ_TEST_DEVICE", "cpu")}  # as ``device`` says


class Run(NamedTuple):
    """What one ``fmviz`` run gave: exit status, stdout, stderr."""

    status: int
    out: str
    err: str


@pytest.fixture(scope="module", autouse=True)
def shared_analyzers(networks) -> Iterator[None]:
    """Each network built once: the session's random ones (``networks``, shared with every
    folder's tests), any other kind once for this module."""
    built: dict[tuple[str, str, str], Analyzer] = {}

    def shared(model: str, weights: object, device: object, **_: object) -> Analyzer:
        if str(weights) == "random" and str(device) in SESSION_DEVICES:
            return networks.analyzer(model, str(device))
        key = (model, str(weights), str(device))
        if key not in built:
            built[key] = Analyzer(model, str(weights), str(device), progress=False)
        return built[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "Analyzer", shared)
        yield


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (40, 48)) -> Path:
    """A small random RGB picture, in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


def run_export(*words: str | Path, device: str) -> Run:
    """``fmviz export WORDS --weights random --device DEVICE``, in-process."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["export", *map(str, words), "--weights", "random", "--device", device]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return Run(status, out.getvalue(), err.getvalue())


def contract_names(stem: str, model: str, stages: tuple[str, ...], cam: str = "C5") -> set[str]:
    """The file names DESIGN.md §4 promises for one image and one network."""
    return {
        *(f"{stem}_{model}_{stage}.png" for stage in stages),
        f"{stem}_{model}_gradcam_{cam}.png",
        f"{stem}_{model}_timings.csv",
    }


def compare_names(stem: str, stages: tuple[str, ...], cam: str = "C5") -> set[str]:
    """Everything ``--compare`` writes for one image: both networks' files and the comparison."""
    return (
        contract_names(stem, "vgg16", stages, cam)
        | contract_names(stem, "resnet101", stages, cam)
        | {f"{stem}_compare_{stage}.png" for stage in stages}
        | {f"{stem}_compare_timings.csv"}
    )


def files_in(folder: Path) -> set[str]:
    """Every entry of ``folder``, hidden ones (temporaries) included."""
    return {path.name for path in folder.iterdir()}


def top1(model: str, image: Path, device: str) -> int:
    """The class ``model`` (random weights) ranks first for ``image``: its largest logit."""
    # engine.Analyzer is the module's shared one here (shared_analyzers)
    return int(torch.argmax(engine.Analyzer(model, "random", device).analyze(image).logits))


def label(index: int, device: str) -> str:
    return engine.Analyzer("resnet101", "random", device).categories[index]


def targets_in(out: Path, stem: str, stages: tuple[str, ...], cam: str = "C5") -> dict[str, str]:
    """The ``target`` text of every overlay and comparison PNG of ``stem``, by file name."""
    names = [f"{stem}_{model}_gradcam_{cam}.png" for model in MODELS]
    names += [f"{stem}_compare_{stage}.png" for stage in stages]
    found = {}
    for name in names:
        with Image.open(out / name) as picture:
            found[name] = picture.text["target"]
    return found


# --- --model vgg16: its top-1 for both networks ------------------------------------------------


class Exported(NamedTuple):
    run: Run
    out: Path
    images: dict[str, Path]  # stem: image


@pytest.fixture(scope="module")
def vgg_lead(tmp_path_factory: pytest.TempPathFactory, device: str) -> Exported:
    folder = tmp_path_factory.mktemp("vgg-lead")
    images = {
        "one": write_image(folder / "one.jpg", seed=1),
        "two": write_image(folder / "two.png"),
    }
    out = folder / "out"
    words = ["--compare", "--model", "vgg16", "--stages", "C1,C5", "--out", out]
    return Exported(run_export(*images.values(), *words, device=device), out, images)


def test_compare_exits_0_with_a_summary(vgg_lead: Exported) -> None:
    run = vgg_lead.run
    assert run.status == 0, run.err
    assert run.err == ""
    # Per image: 2 grids + overlay + CSV per network, then 2 comparison PNGs and their CSV.
    assert run.out == f"exported 2 of 2 images (22 files) to {vgg_lead.out}\n"


def test_compare_writes_both_networks_and_the_comparison(vgg_lead: Exported) -> None:
    expected = compare_names("one", ("C1", "C5")) | compare_names("two", ("C1", "C5"))
    assert files_in(vgg_lead.out) == expected  # nothing else: no .part left


def test_the_comparison_explains_the_top1_of_model(vgg_lead: Exported, device: str) -> None:
    """The comparison explains --model's top-1 for both; each network's own overlay keeps its
    own top-1, as without --compare (DESIGN §4)."""
    for stem, image in vgg_lead.images.items():
        lead, other = top1("vgg16", image, device), top1("resnet101", image, device)
        assert lead != other, "pick another image: both random networks agree"
        found = targets_in(vgg_lead.out, stem, ("C1", "C5"))
        assert found == {
            f"{stem}_vgg16_gradcam_C5.png": f"{lead} {label(lead, device)}",
            f"{stem}_resnet101_gradcam_C5.png": f"{other} {label(other, device)}",
            f"{stem}_compare_C1.png": f"{lead} {label(lead, device)}",
            f"{stem}_compare_C5.png": f"{lead} {label(lead, device)}",
        }


def test_the_comparison_png_names_both_networks(vgg_lead: Exported) -> None:
    for stem, image in vgg_lead.images.items():
        for stage in ("C1", "C5"):
            with Image.open(vgg_lead.out / f"{stem}_compare_{stage}.png") as picture:
                assert picture.mode == "RGB"
                text = dict(picture.text)
            assert text["model"] == "VGG16 | ResNet101"
            assert text["stage"] == stage
            assert text["gradcam stage"] == "C5"
            assert text["source"] == str(image)


def test_the_comparison_csv_has_both_networks(vgg_lead: Exported) -> None:
    with (vgg_lead.out / "one_compare_timings.csv").open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0][0] == "stage"
    assert [cell.split("_")[0] for cell in rows[0][1:]] == ["vgg16"] * 3 + ["resnet101"] * 3
    assert [row[0] for row in rows[1:]] == [*STAGES, "head", "total"]


def test_each_networks_own_files_stay_its_own(vgg_lead: Exported) -> None:
    for model in MODELS:
        with Image.open(vgg_lead.out / f"one_{model}_C1.png") as grid:
            assert grid.text["model"] == model
        with Image.open(vgg_lead.out / f"one_{model}_gradcam_C5.png") as picture:
            assert picture.text["model"] == model
            assert picture.size == (224, 224)


# --- the default --model (resnet101) -----------------------------------------------------------


def test_by_default_resnet101s_top1_is_explained(tmp_path: Path, device: str) -> None:
    image = write_image(tmp_path / "cat.jpg", seed=3)
    out = tmp_path / "out"
    run = run_export(image, "--compare", "--stages", "C5", "--out", out, device=device)
    assert run.status == 0, run.err
    assert files_in(out) == compare_names("cat", ("C5",))
    lead, other = top1("resnet101", image, device), top1("vgg16", image, device)
    assert lead != other, "pick another image: both random networks agree"
    found = targets_in(out, "cat", ("C5",))
    assert found == {
        "cat_vgg16_gradcam_C5.png": f"{other} {label(other, device)}",
        "cat_resnet101_gradcam_C5.png": f"{lead} {label(lead, device)}",
        "cat_compare_C5.png": f"{lead} {label(lead, device)}",
    }


# --- --target ------------------------------------------------------------------------------------


def test_target_7_is_explained_everywhere(tmp_path: Path, device: str) -> None:
    image = write_image(tmp_path / "dog.jpg", seed=4)
    out = tmp_path / "out"
    words = ["--compare", "--model", "vgg16", "--target", "7", "--cam-stage", "C4"]
    run = run_export(image, *words, "--stages", "C2,C3", "--out", out, device=device)
    assert run.status == 0, run.err
    assert files_in(out) == compare_names("dog", ("C2", "C3"), cam="C4")
    found = targets_in(out, "dog", ("C2", "C3"), cam="C4")
    assert len(found) == 4
    assert set(found.values()) == {f"7 {label(7, device)}"}, found
    for stage in ("C2", "C3"):
        with Image.open(out / f"dog_compare_{stage}.png") as picture:
            assert picture.text["gradcam stage"] == "C4"


# --- a bad image among good ones -----------------------------------------------------------------


def test_a_bad_image_fails_alone(tmp_path: Path, device: str) -> None:
    first = write_image(tmp_path / "first.png", seed=5)
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is not a picture\n")
    last = write_image(tmp_path / "last.jpg", seed=6)
    out = tmp_path / "out"
    run = run_export(first, bad, last, "--compare", "--stages", "C5", "--out", out, device=device)
    assert run.status == 1
    assert "Traceback" not in run.err
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"error: {bad}: ")
    assert "not an image" in lines[0]
    assert files_in(out) == compare_names("first", ("C5",)) | compare_names("last", ("C5",))
    assert run.out == f"exported 2 of 3 images (16 files) to {out}\n"

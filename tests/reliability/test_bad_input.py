"""The corpus of broken and awkward inputs (corpus.py) through the API and ``fmviz export``:
each bad file is one line that names it and says why, the awkward images are read as they
should be, and a file written to while it is read gives the old image, the new one or a clean
error. The same corpus goes through the window in tests/ui/test_bad_input.py."""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from models import WeightsError, build_model
from models.resnet import ResNet101
from models.weights import load_weights
from tests.reliability.corpus import (
    BAD_KEYS,
    CHECKPOINT_KEYS,
    GOOD_KEYS,
    NAME_MAX,
    ROOT_READS_ANYTHING,
    Corpus,
    ImageCase,
    noise,
    running_as_root,
)
from visualizer.core import Analyzer, ImageLoadError, load_image

Fmviz = Callable[..., Any]  # conftest's fmviz: words → Run(status, out, err)
# DESIGN.md §2: ResNet101's stage shapes at a 224×224 input.
RESNET_STAGES = {
    "C1": (64, 56, 56),
    "C2": (256, 56, 56),
    "C3": (512, 28, 28),
    "C4": (1024, 14, 14),
    "C5": (2048, 7, 7),
}


def case_of(corpus: Corpus, key: str) -> ImageCase:
    if key not in corpus.images:  # the unreadable file: not written as root
        assert running_as_root()
        pytest.skip(ROOT_READS_ANYTHING)
    return corpus.images[key]


def reason_of(message: str, case: ImageCase | Any) -> str:
    """The reason of a one-line ``"<file>: <reason>"`` message about ``case``."""
    assert message.isprintable(), f"not one clean line: {message!r}"
    named = case.shown if isinstance(case, ImageCase) else str(case.path)
    assert message.startswith(f"{named}: "), message
    return message[len(named) + 2 :]


@contextlib.contextmanager
def vanishing_on_open(path: Path) -> Iterator[None]:
    """``path`` is deleted the moment something opens it: gone between listing and reading."""
    real_open = builtins.open

    def opening(file: Any, *args: Any, **kwargs: Any) -> IO[Any]:
        if isinstance(file, (str, os.PathLike)) and Path(os.fspath(file)) == path:
            path.unlink(missing_ok=True)
        return real_open(file, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", opening)
        yield


def within(image: Image.Image, expected: Image.Image, tolerance: int) -> bool:
    """Same size, and no channel of a pixel further than ``tolerance`` from ``expected``."""
    if image.size != expected.size:
        return False
    difference = np.abs(np.asarray(image, dtype=int) - np.asarray(expected, dtype=int))
    return int(difference.max()) <= tolerance


# --- images through the API --------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
def test_each_bad_image_is_refused_in_one_line_naming_it(
    corpus: Corpus, resnet: Analyzer, key: str
) -> None:
    case = case_of(corpus, key)
    for read in (load_image, resnet.analyze):
        if case.spec.vanishes:
            assert case.path.name in os.listdir(case.path.parent)  # listed…
            case.path.unlink()  # …and gone before it is read
        with pytest.raises(ImageLoadError) as refused:
            read(case.path)
        assert isinstance(refused.value, ValueError)  # the documented base
        reason = reason_of(str(refused.value), case)
        assert re.search(case.spec.reason, reason), reason
        corpus.restore()


def test_a_file_that_vanishes_as_it_is_opened_is_no_such_file(corpus: Corpus) -> None:
    """Between load_image's own checks and its opening the file: the narrowest window."""
    case = corpus.images["vanishing"]
    with vanishing_on_open(case.path), pytest.raises(ImageLoadError) as refused:
        load_image(case.path)
    assert not case.path.exists()
    assert reason_of(str(refused.value), case) == "no such file"


@pytest.mark.skipif(running_as_root(), reason=ROOT_READS_ANYTHING)
def test_the_corpus_has_an_unreadable_file_where_it_can(corpus: Corpus) -> None:
    assert "unreadable" in corpus.images
    assert not os.access(corpus.images["unreadable"].path, os.R_OK)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_each_awkward_image_reads_as_it_should(corpus: Corpus, key: str) -> None:
    case = corpus.images[key]
    loaded = load_image(case.path)
    assert loaded.mode == "RGB"
    assert within(loaded, case.spec.expected(), case.spec.tolerance)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_each_awkward_image_is_analysed(corpus: Corpus, resnet: Analyzer, key: str) -> None:
    case = corpus.images[key]
    result = resnet.analyze(case.path)
    # What the model saw is what it sees of the picture built independently.
    x, view = resnet.preprocessing(case.spec.expected())
    if case.spec.tolerance == 0:
        assert torch.equal(result.input, x)
    assert within(result.view, view, case.spec.tolerance + 1)
    assert result.source == os.fspath(case.path)
    assert {name: tuple(stage.shape) for name, stage in result.stages.items()} == RESNET_STAGES
    assert all(bool(torch.isfinite(stage).all()) for stage in result.stages.values())
    probabilities = [p for _, _, p in result.topk]
    assert len(probabilities) == 5
    assert probabilities == sorted(probabilities, reverse=True)


# --- checkpoints through the API ---------------------------------------------------------------

LOADERS: dict[str, Callable[[Path], object]] = {
    "build_model": lambda path: build_model("resnet101", path),
    "load_weights": lambda path: load_weights(ResNet101, path),
    "Analyzer": lambda path: Analyzer("resnet101", path, "cpu", progress=False),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("key", CHECKPOINT_KEYS)
def test_each_bad_checkpoint_is_refused_in_one_line_naming_it(
    corpus: Corpus, key: str, loader: str
) -> None:
    case = corpus.checkpoints[key]
    with pytest.raises(WeightsError) as refused:
        LOADERS[loader](case.path)
    reason = reason_of(str(refused.value), case)
    assert re.search(case.spec.reason, reason), reason
    assert not corpus.marker.exists()


# --- fmviz export --------------------------------------------------------------------------------


def entries(folder: Path) -> set[str]:
    """Every name in ``folder``, hidden ones included."""
    return set(os.listdir(folder))


class Exported(NamedTuple):
    run: Any  # conftest's Run: status, out, err
    out: Path


@pytest.fixture
def exported(corpus: Corpus, fmviz: Fmviz, device: str, tmp_path: Path) -> Exported:
    """``fmviz export`` of the whole corpus at once, the vanishing file gone as it is read."""
    out = tmp_path / "out"
    words = [*(case.path for case in corpus.images.values()), "--out", out, "--stages", "C5"]
    with vanishing_on_open(corpus.images["vanishing"].path):
        run = fmviz("export", *words, "--weights", "random", "--device", device)
    return Exported(run, out)


def test_export_of_the_corpus(corpus: Corpus, exported: Exported) -> None:
    run, out = exported
    assert run.status == 1
    assert "Traceback" not in run.err

    # One error line per bad file, in the order given, each naming its file and saying why.
    lines = run.err.splitlines()
    assert len(lines) == len(corpus.bad), run.err
    for line, case in zip(lines, corpus.bad, strict=True):
        assert line.startswith("error: "), line
        reason = reason_of(line.removeprefix("error: "), case)
        # A folder named x.jpg is a folder to fmviz export, as to the window: its images are
        # taken, and it has none.
        expected = "no images in this folder" if case.key == "folder-named-jpg" else None
        assert re.search(expected or case.spec.reason, reason), line

    # The good ones exported, each as a grid, an overlay and timings, under names that fit;
    # the folder is no image of its own.
    total = len(corpus.images) - 1
    done = len(corpus.good)
    assert run.out == f"exported {done} of {total} images ({3 * done} files) to {out}\n"
    names = entries(out)
    assert len(names) == 3 * done
    assert all(len(os.fsencode(name)) <= NAME_MAX for name in names)
    assert not [name for name in names if name.startswith(".") or name.endswith(".part")]
    sources = {}
    for name in names:
        if name.endswith("_resnet101_C5.png"):
            stem = name.removesuffix("_resnet101_C5.png")
            assert {f"{stem}_resnet101_gradcam_C5.png", f"{stem}_resnet101_timings.csv"} <= names
            with Image.open(out / name) as grid:
                sources[grid.text["source"]] = stem
    escaped = {case.key: str(case.path) for case in corpus.good}
    escaped["non-utf-8-name"] = f"{corpus.image_folder}/caf\\udce9 \\udcff.png"
    assert set(sources) == set(escaped.values())
    for case in corpus.good:
        stem = sources[escaped[case.key]]
        assert case.path.stem.startswith(stem)
        assert len(stem) >= min(len(case.path.stem), 100)  # cut to fit, if it had to be


def test_export_of_a_file_too_long_to_name_its_outputs_after(
    tmp_path: Path, fmviz: Fmviz, device: str
) -> None:
    """A name of NAME_MAX bytes leaves no room for "_resnet101_C5.png": the stem is cut."""
    image = tmp_path / ("n" * (NAME_MAX - 4) + ".png")
    noise(20, 20).save(image)
    out = tmp_path / "out"
    words = ["--out", out, "--stages", "C5", "--weights", "random", "--device", device]
    run = fmviz("export", image, *words)
    assert (run.status, run.err) == (0, "")
    names = entries(out)
    assert len(names) == 3
    for name in names:
        assert len(os.fsencode(name)) <= NAME_MAX - len(".12345678.part") - 1  # its temporary
        assert name.startswith("n" * 100)


@pytest.mark.parametrize("key", CHECKPOINT_KEYS)
def test_export_with_each_bad_checkpoint_is_one_error_line(
    corpus: Corpus, fmviz: Fmviz, device: str, tmp_path: Path, key: str
) -> None:
    case = corpus.checkpoints[key]
    image = corpus.images["plain"].path
    out = tmp_path / "out"
    words = ["--out", out, "--model", "resnet101", "--weights", case.path, "--device", device]
    run = fmviz("export", image, *words)
    assert run.status == 1
    assert run.out == ""
    assert run.err.endswith("\n")
    assert run.err.count("\n") == 1, run.err
    assert run.err.startswith("error: ")
    reason = reason_of(run.err.removeprefix("error: ").rstrip("\n"), case)
    assert re.search(case.spec.reason, reason), reason
    assert not out.exists() or entries(out) == set()
    assert not corpus.marker.exists()


# --- a file written to while it is read ----------------------------------------------------------


def versions(kind: str) -> dict[str, bytes]:
    """The old and the new content of a file, as ``kind``: two pictures of one size, so that
    (BMP, JPEG) pixels read from the new file after a header read from the old one decode."""
    return {"old": _encoded(noise(96, 64, seed=0), kind), "new": _encoded(noise(96, 64, 1), kind)}


def timestamps_tell_writes_apart(folder: Path) -> bool:
    """Whether two writes a moment apart give a file two modification times here."""
    probe = folder / "probe"
    times = set()
    for _ in range(5):
        probe.write_bytes(b"x")
        times.add(os.stat(probe).st_mtime_ns)
    probe.unlink()
    return len(times) == 5


def _encoded(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path`` in place, as most programs that do not save atomically do."""
    with path.open("r+b") as file:
        file.truncate(0)
        file.write(data)


def replaced(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically: a new file renamed over it."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def cut_short(path: Path, data: bytes) -> None:
    in_place(path, data[: len(data) // 3])


WRITERS = {"in-place": in_place, "replaced": replaced, "cut-short": cut_short}


def outcome(analyzer: Analyzer, path: Path, references: dict[str, torch.Tensor]) -> str:
    """Which version ``analyze`` saw: "old", "new", or "error" (a clean one-line refusal)."""
    try:
        result = analyzer.analyze(path)
    except ImageLoadError as error:
        message = str(error)
        assert message.isprintable(), message
        assert message.startswith(f"{path}: "), message
        return "error"
    seen = [name for name, x in references.items() if torch.equal(result.input, x)]
    assert seen, "the analysis saw neither the old image nor the new one"
    return seen[0]


@pytest.mark.parametrize("kind", ["BMP", "JPEG", "PNG"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_an_image_overwritten_while_it_is_read(
    tmp_path: Path, resnet: Analyzer, monkeypatch: pytest.MonkeyPatch, kind: str, writer: str
) -> None:
    """Another thread rewrites the file after its header was read, before its pixels are."""
    data = versions(kind)
    path = tmp_path / f"changing.{kind.lower()}"
    path.write_bytes(data["old"])
    os.utime(path, ns=(10**18, 10**18))  # an old file, whatever the clock's granularity
    references = {
        name: resnet.preprocessing(_decoded(content))[0] for name, content in data.items()
    }
    real_load = ImageFile.ImageFile.load
    rewrites = []

    def load(image: ImageFile.ImageFile) -> Any:
        if not rewrites:
            rewrites.append(writer)
            thread = threading.Thread(target=WRITERS[writer], args=(path, data["new"]))
            thread.start()
            thread.join()
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    seen = outcome(resnet, path, references)
    assert rewrites == [writer]
    if writer == "replaced":
        assert seen == "old"  # the file being read is the old one, whole, to the end
    monkeypatch.undo()
    if writer == "cut-short":
        with pytest.raises(ImageLoadError):
            load_image(path)
    else:
        assert np.array_equal(load_image(path), _decoded(data["new"]))


def test_an_image_overwritten_during_the_forward_pass(tmp_path: Path, resnet: Analyzer) -> None:
    data = versions("PNG")
    path = tmp_path / "changing.png"
    path.write_bytes(data["old"])
    references = {
        name: resnet.preprocessing(_decoded(content))[0] for name, content in data.items()
    }

    def rewrite(*_args: object) -> None:
        thread = threading.Thread(target=in_place, args=(path, data["new"]))
        thread.start()
        thread.join()

    handle = resnet.model.register_forward_pre_hook(rewrite)
    try:
        assert outcome(resnet, path, references) == "old"
    finally:
        handle.remove()
    assert path.read_bytes() == data["new"]


def test_an_image_rewritten_over_and_over_while_it_is_read(tmp_path: Path) -> None:
    """A writer thread keeps rewriting the file in place while it is read 150 times: every read
    gives the old picture, the new one, or a clean one-line error, never a mix or a crash."""
    if not timestamps_tell_writes_apart(tmp_path):
        pytest.skip("this file system's timestamps cannot tell writes a moment apart")
    data = versions("BMP")
    pictures = {name: np.asarray(_decoded(content)) for name, content in data.items()}
    path = tmp_path / "busy.bmp"
    path.write_bytes(data["old"])
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            for content in data.values():
                in_place(path, content)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    seen: dict[str, int] = {"old": 0, "new": 0}
    refusals: list[str] = []
    try:
        for _ in range(150):
            try:
                loaded = np.asarray(load_image(path))
            except ImageLoadError as error:
                refusals.append(str(error))
                continue
            names = [
                n for n, p in pictures.items() if p.shape == loaded.shape and (p == loaded).all()
            ]
            assert names, "a picture that is neither the old one nor the new one"
            seen[names[0]] += 1
    finally:
        stop.set()
        writer.join()
    assert sum(seen.values()) + len(refusals) == 150
    for message in refusals:
        assert message.isprintable(), message
        assert message.startswith(f"{path}: "), message


def _decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")

"""Class names for your own network (issue 14): every labels format ``read_labels`` accepts,
labels stored in the checkpoint, the defaults, and every refusal as one line naming the file."""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.finetuned import nested, picture, reference_network, save, state_of
from visualizer.core import Analyzer, LabelsError
from visualizer.core.labels import read_labels

NAMES = ("akiec", "bcc", "bkl", "mel", "nv")  # five kinds of skin lesion
SHUFFLED = (3, 0, 4, 1, 2)  # an order other than the indices'


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def refused(path: Path) -> str:
    """Why ``read_labels`` refuses ``path``: one ``LabelsError`` line naming the file."""
    with pytest.raises(LabelsError) as error:
        read_labels(path)
    message = str(error.value)
    assert "\n" not in message
    assert path.name in message
    return message


# --- files ------------------------------------------------------------------------------------

FILES: dict[str, tuple[str, str | bytes]] = {
    "text": ("labels.txt", "akiec\nbcc\nbkl\nmel\nnv\n"),
    "text-without-final-newline": ("labels.txt", "akiec\nbcc\nbkl\nmel\nnv"),
    "text-crlf": ("labels.txt", "akiec\r\nbcc\r\nbkl\r\nmel\r\nnv\r\n"),
    "text-utf8-bom": ("labels.txt", "\ufeffakiec\nbcc\nbkl\nmel\nnv\n".encode()),
    "json-list": ("labels.json", json.dumps(list(NAMES))),
    "json-index-to-name": (
        "idx_to_class.json",
        json.dumps({str(i): NAMES[i] for i in SHUFFLED}, indent=2),
    ),
    "json-name-to-index": ("class_to_idx.json", json.dumps({NAMES[i]: i for i in SHUFFLED})),
    "csv-with-header": (
        "labels.csv",
        "index,name\n" + "".join(f"{i},{NAMES[i]}\n" for i in range(5)),
    ),
    "csv-without-header": ("labels.csv", "".join(f"{i},{NAMES[i]}\n" for i in range(5))),
    "csv-out-of-order": ("labels.csv", "".join(f"{i},{NAMES[i]}\n" for i in SHUFFLED)),
}


@pytest.mark.parametrize("kind", list(FILES))
def test_every_format_gives_the_names_in_index_order(kind: str, tmp_path: Path) -> None:
    name, content = FILES[kind]
    assert read_labels(write(tmp_path / name, content)) == NAMES


def test_names_keep_their_spaces_and_commas(tmp_path: Path) -> None:
    names = ("great white shark", "tench, Tinca tinca", "café crème")
    text = write(tmp_path / "names.txt", "\n".join(names) + "\n")
    assert read_labels(text) == names
    table = tmp_path / "names.csv"
    with table.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["index", "name"])
        writer.writerows(enumerate(names))
    assert read_labels(table) == names
    assert read_labels(str(table)) == names  # a str path too


def _image_folder(root: Path, classes: list[str]) -> dict[str, int]:
    """torchvision's ``ImageFolder`` on a folder of one tiny image per class: its
    ``class_to_idx``, as a training script saves it."""
    from torchvision.datasets import ImageFolder

    for name in classes:
        (root / name).mkdir(parents=True)
        Image.new("RGB", (4, 4), (10, 20, 30)).save(root / name / "a.png")
    return ImageFolder(root).class_to_idx


def test_imagefolders_class_to_idx_as_json(tmp_path: Path) -> None:
    class_to_idx = _image_folder(tmp_path / "train", ["tulip", "daisy", "rose"])
    assert class_to_idx == {"daisy": 0, "rose": 1, "tulip": 2}
    path = write(tmp_path / "class_to_idx.json", json.dumps(class_to_idx))
    assert read_labels(path) == ("daisy", "rose", "tulip")


def test_class_to_idx_whose_names_are_numbers(tmp_path: Path) -> None:
    """Folders named by number sort as text in ImageFolder ("10" before "2"): the file maps
    names to indices, and must not be read as indices to names."""
    class_to_idx = _image_folder(tmp_path / "train", ["2", "10", "3"])
    assert class_to_idx == {"10": 0, "2": 1, "3": 2}
    path = write(tmp_path / "class_to_idx.json", json.dumps(class_to_idx))
    assert read_labels(path) == ("10", "2", "3")


# --- refusals of a file -----------------------------------------------------------------------

BAD_FILES: dict[str, tuple[str, str | bytes]] = {
    "empty": ("labels.txt", ""),
    "only-blank-lines": ("labels.txt", "\n\n  \n"),
    "csv-duplicate-index": ("labels.csv", "0,akiec\n1,bcc\n1,bkl\n2,mel\n"),
    "csv-missing-index": ("labels.csv", "0,akiec\n1,bcc\n3,mel\n"),
    "json-missing-index": ("labels.json", json.dumps({"0": "akiec", "1": "bcc", "3": "mel"})),
    "json-duplicate-index": ("labels.json", json.dumps({"akiec": 0, "bcc": 1, "bkl": 1})),
    "json-broken": ("labels.json", '["akiec", "bcc", '),
    "json-number": ("labels.json", "42"),
    "json-empty-list": ("labels.json", "[]"),
    "binary": ("labels.txt", bytes(range(256)) * 4),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_file_is_one_line_naming_it(kind: str, tmp_path: Path) -> None:
    name, content = BAD_FILES[kind]
    refused(write(tmp_path / name, content))


def test_an_image_given_as_labels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.png"
    picture(32, 24).save(path)
    refused(path)


def test_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "labels.d"
    folder.mkdir()
    refused(folder)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    refused(tmp_path / "no-such-labels.txt")


# --- labels with a network --------------------------------------------------------------------


@pytest.fixture(scope="module")
def five_classes(
    release_after_last_use: Callable[..., None], request: pytest.FixtureRequest
) -> Callable[[], dict]:
    """The state dict of a five-class ResNet101 (torchvision's, seeded); let go after the
    module's last test that uses it."""
    cached = functools.cache(lambda: state_of(reference_network("resnet101", 5)))
    release_after_last_use(request.fixturename, cached.cache_clear, each_module=True)
    return cached


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """Where a test writes its checkpoints (0.17 GB each): emptied after the test."""
    yield tmp_path
    for path in tmp_path.iterdir():
        if path.is_file():
            path.unlink()


def analyzer(weights: Path, **options: object) -> Analyzer:
    return Analyzer(
        "resnet101", weights, device="cpu", progress=False, warm_up=False, timings=False, **options
    )


STORED: dict[str, object] = {
    "classes": list(NAMES),
    "class_names": tuple(NAMES),
    "labels": list(NAMES),
    "idx_to_class": {i: NAMES[i] for i in SHUFFLED},  # integer keys, as a script inverts them
    "class_to_idx": {NAMES[i]: i for i in SHUFFLED},
}


@pytest.mark.parametrize("key", list(STORED))
def test_labels_stored_in_the_checkpoint_are_found(key: str, five_classes, folder: Path) -> None:
    path = save(
        folder / "ft5.pth", nested(five_classes(), "resnet101", "model", {key: STORED[key]})
    )
    found = analyzer(path)
    assert found.categories == list(NAMES)
    assert "checkpoint" in found.labels_source
    assert key in found.labels_source
    result = found.analyze(picture())
    assert [label for _, label, _ in result.topk] == [NAMES[i] for i, _, _ in result.topk]
    assert result.labels_source == found.labels_source


def test_labels_stored_in_the_checkpoint_of_another_count_are_one_error(
    five_classes, folder: Path
) -> None:
    path = save(
        folder / "ft5.pth", nested(five_classes(), "resnet101", "model", {"classes": list("abcd")})
    )
    with pytest.raises(LabelsError) as error:
        analyzer(path)
    message = str(error.value)
    assert "\n" not in message
    assert "classes" in message
    rest = message.replace(str(path), "<file>")
    assert re.search(r"\b4\b", rest), message
    assert re.search(r"\b5\b", rest), message


def test_a_labels_file_names_the_classes(five_classes, folder: Path) -> None:
    path = save(folder / "ft5.pth", five_classes())
    labels = write(folder / "lesions.txt", "\n".join(NAMES) + "\n")
    found = analyzer(path, labels=labels)
    assert found.categories == list(NAMES)
    assert "lesions.txt" in found.labels_source
    result = found.analyze(picture())
    assert len(result.topk) == 5
    assert [label for _, label, _ in result.topk] == [NAMES[i] for i, _, _ in result.topk]


def test_a_labels_file_wins_over_the_checkpoints(five_classes, folder: Path) -> None:
    path = save(
        folder / "ft5.pth", nested(five_classes(), "resnet101", "model", {"classes": list("abcde")})
    )
    labels = write(folder / "lesions.json", json.dumps(list(NAMES)))
    found = analyzer(path, labels=labels)
    assert found.categories == list(NAMES)
    assert "lesions.json" in found.labels_source


def test_names_given_as_a_sequence(five_classes, folder: Path) -> None:
    found = analyzer(save(folder / "ft5.pth", five_classes()), labels=list(NAMES))
    assert found.categories == list(NAMES)


def test_without_labels_the_classes_are_numbered(five_classes, folder: Path) -> None:
    found = analyzer(save(folder / "ft5.pth", five_classes()))
    assert found.categories == ["class 0", "class 1", "class 2", "class 3", "class 4"]
    assert found.labels_source.startswith("none")  # api.md: "none"; the engine: "none: numbered"
    result = found.analyze(picture())
    assert {label for _, label, _ in result.topk} == set(found.categories)


@pytest.mark.parametrize("count", [4, 6])
def test_a_labels_file_of_another_count_is_one_error_naming_both(
    count: int, five_classes, folder: Path
) -> None:
    path = save(folder / "ft5.pth", five_classes())
    labels = write(folder / "lesions.txt", "".join(f"lesion {i}\n" for i in range(count)))
    with pytest.raises(LabelsError) as error:
        analyzer(path, labels=labels)
    message = str(error.value)
    assert "\n" not in message
    assert "lesions.txt" in message
    rest = message.replace(str(labels), "<file>")
    assert re.search(rf"\b{count}\b", rest), message
    assert re.search(r"\b5\b", rest), message


def test_names_of_another_count_are_one_error_naming_both(five_classes, folder: Path) -> None:
    with pytest.raises(LabelsError, match=r"\b2\b.*\b5\b|\b5\b.*\b2\b"):
        analyzer(save(folder / "ft5.pth", five_classes()), labels=["benign", "malignant"])


def test_a_bad_labels_file_stops_the_analyzer(five_classes, folder: Path) -> None:
    path = save(folder / "ft5.pth", five_classes())
    labels = write(folder / "lesions.csv", "0,akiec\n0,bcc\n")
    with pytest.raises(LabelsError, match=r"lesions\.csv"):
        analyzer(path, labels=labels)


def test_a_thousand_classes_without_labels_are_imagenets(folder: Path) -> None:
    import torchvision

    state = state_of(reference_network("resnet101", 1000))
    found = analyzer(save(folder / "ft1000.pth", state))
    del state
    assert found.categories == list(
        torchvision.models.ResNet101_Weights.IMAGENET1K_V2.meta["categories"]
    )
    assert "ImageNet" in found.labels_source

"""``fmviz index``: the command's files, exit statuses and messages; an interrupted run resumed
(after a kill and after Ctrl+C); the Ray backend on a local Ray instance against the local one.

The engine's results are checked against brute-force references in tests/core/test_atlas.py;
here the command and the backends are, on small generated images and a small input size
(``--resize 64 --crop 64``) so that each run takes a second or two.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from visualizer.cli import main
from visualizer.core.atlas.store import (
    CHANNEL_COLUMNS,
    CHANNELS_FILE,
    METADATA_FILE,
    PARTIAL_FILE,
    TOPK_FILE,
)

SMALL = ["--weights", "random", "--device", "cpu", "--resize", "64", "--crop", "64"]
CONTRACT_COLUMNS = [
    "stage", "channel", "rank", "score", "source", "y", "x",
    "box_left", "box_top", "box_right", "box_bottom",
]  # fmt: skip


def make_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` images of varied sizes: a bright shape at a random place on noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        height, width = int(rng.integers(48, 120)), int(rng.integers(48, 120))
        pixels = (rng.random((height, width, 3)) * 80).astype(np.uint8)
        top, left = int(rng.integers(0, height - 16)), int(rng.integers(0, width - 16))
        pixels[top : top + 16, left : left + 16] = rng.integers(150, 255, 3, dtype=np.uint8)
        path = folder / f"image{number:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dataset")
    make_images(folder / "photos", 20)
    (folder / "photos" / "broken.jpg").write_bytes(b"not a picture")
    return folder / "photos"


@pytest.fixture(scope="module")
def reference(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted local run: K 3, batches of 4."""
    out = tmp_path_factory.mktemp("reference")
    status = main(["index", str(images), "--out", str(out), *SMALL, "--top", "3",
                   "--batch-size", "4", "--workers", "0"])  # fmt: skip
    assert status == 1  # one file refused
    return out


def assert_same_index(first: Path, second: Path) -> None:
    """The same top-K rows exactly, the same statistics up to float64 rounding, the same
    refusals."""
    assert pq.read_table(first / TOPK_FILE).equals(pq.read_table(second / TOPK_FILE))
    ours, theirs = pq.read_table(first / CHANNELS_FILE), pq.read_table(second / CHANNELS_FILE)
    assert ours.column("stage").equals(theirs.column("stage"))
    for name in CHANNEL_COLUMNS[1:]:
        np.testing.assert_allclose(
            ours.column(name).to_numpy(), theirs.column(name).to_numpy(), rtol=1e-9, atol=1e-12
        )
    meta = [
        json.loads((folder / METADATA_FILE).read_text())["images"] for folder in (first, second)
    ]
    assert meta[0] == meta[1]


def test_index_writes_the_contract_tables_and_reports_a_bad_file(
    reference: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = pq.read_table(reference / TOPK_FILE)
    assert top.column_names == CONTRACT_COLUMNS
    channels = pq.read_table(reference / CHANNELS_FILE)
    assert channels.column_names == list(CHANNEL_COLUMNS)
    # ResNet101: 64 + 256 + 512 + 1024 + 2048 channels, 3 images each.
    assert top.num_rows == 3904 * 3
    assert channels.num_rows == 3904
    assert set(top.column("stage").to_pylist()) == {"C1", "C2", "C3", "C4", "C5"}
    assert set(channels.column("images").to_pylist()) == {20}
    metadata = json.loads((reference / METADATA_FILE).read_text())
    assert metadata["network"]["model"] == "resnet101"
    assert metadata["network"]["weights"].startswith("random")
    assert metadata["preprocessing"]["crop"] == 64
    assert metadata["images"]["counted"] == 20
    [refusal] = metadata["images"]["refused"]
    assert refusal["source"] == str(images / "broken.jpg")
    assert "not an image" in refusal["reason"]
    assert not (reference / PARTIAL_FILE).exists()
    # The table's own metadata says the same.
    assert json.loads(top.schema.metadata[b"fmviz"]) == metadata
    # Rerun, to see the messages: one error line for the bad file, a summary on stdout.
    capsys.readouterr()
    again = reference.parent / "again"
    status = main(["index", str(images), "--out", str(again), *SMALL, "--top", "3",
                   "--batch-size", "4", "--workers", "0", "--stages", "C5"])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 1
    assert err.strip() == f"error: {images / 'broken.jpg'}: {refusal['reason']}"
    assert out.startswith("indexed 20 images (1 refused)")
    assert "Traceback" not in err


def test_any_layer_can_be_indexed(images: Path, tmp_path: Path) -> None:
    status = main(["index", str(images / "image000.png"), str(images / "image001.png"),
                   "--out", str(tmp_path), *SMALL, "--stages", "layer3.4.conv2,c2"])  # fmt: skip
    assert status == 0
    top = pq.read_table(tmp_path / TOPK_FILE)
    assert top.column("stage").unique().to_pylist() == ["layer3.4.conv2", "C2"]
    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert metadata["layers"]["layer3.4.conv2"]["shape"] == [256, 4, 4]
    assert metadata["layers"]["C2"]["module"] == "layer1"


@pytest.mark.parametrize(
    "case",
    [
        (["--stages", "C9"], 2, "unknown layer 'C9'"),
        (["--address", "auto"], 2, "--address needs --backend ray"),
        (["--workers", "-1"], 2, "--workers: must be 0 or more"),
    ],
)
def test_bad_usage_is_one_line(
    images: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: tuple[list[str], int, str],
) -> None:
    arguments, status, message = case
    assert main(["index", str(images), "--out", str(tmp_path), *SMALL, *arguments]) == status
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / TOPK_FILE).exists()


def test_a_missing_source_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["index", str(missing), "--out", str(tmp_path / "out"), *SMALL]) == 1
    assert capsys.readouterr().err.strip() == f"error: {missing}: no such file or folder"


def test_resume_after_a_kill_gives_the_same_index(
    images: Path, reference: Path, tmp_path: Path
) -> None:
    """Killed (SIGKILL) once its progress has been saved, then resumed: the same index as an
    uninterrupted run's."""
    out = tmp_path / "index"
    command = [sys.executable, "-m", "visualizer", "index", str(images), "--out", str(out),
               *SMALL, "--top", "3", "--batch-size", "4", "--workers", "0",
               "--save-every", "0"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / PARTIAL_FILE).exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no progress saved"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / TOPK_FILE).exists()
    resumed = subprocess.run(
        [*command, "--resume"], capture_output=True, text=True, timeout=120, check=False
    )
    assert resumed.returncode == 1, resumed.stderr  # the broken file, as before
    assert "from the interrupted run" in resumed.stdout
    assert_same_index(reference, out)
    assert not (out / PARTIAL_FILE).exists()


def test_ctrl_c_saves_the_progress_and_resume_checks_the_settings(
    images: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from visualizer.core.atlas import indexing

    real = indexing._local  # the batches, interrupted after the second

    def interrupted(*args: object, **kwargs: object):
        for count, result in enumerate(real(*args, **kwargs)):
            if count == 2:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(indexing, "_local", interrupted)
    arguments = ["index", str(images), "--out", str(tmp_path), *SMALL, "--top", "3",
                 "--batch-size", "4", "--workers", "0"]  # fmt: skip
    assert main(arguments) == 130
    assert "add --resume to continue" in capsys.readouterr().err
    assert (tmp_path / PARTIAL_FILE).exists()
    assert not (tmp_path / TOPK_FILE).exists()
    monkeypatch.setattr(indexing, "_local", real)
    # Other settings than the interrupted run's: refused, the progress kept.
    assert main([*arguments, "--resume", "--top", "4"]) == 1
    err = capsys.readouterr().err
    assert "the interrupted run used other top" in err
    assert (tmp_path / PARTIAL_FILE).exists()
    assert main([*arguments, "--resume"]) == 1
    assert "8 from the interrupted run" in capsys.readouterr().out
    assert_same_index(reference, tmp_path)


def test_the_ray_backend_without_ray_says_how_to_get_it(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert main(["index", str(images), "--out", str(tmp_path), *SMALL, "--backend", "ray"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: the Ray backend needs Ray: pip install 'fmviz[ray]'"
    )


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance on this machine's CPUs, for the module's Ray tests."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_and_local_give_the_same_index(
    ray_instance: object, images: Path, reference: Path, tmp_path: Path
) -> None:
    """Ray Data (reading tasks, an actor pool holding the network, merged on the driver) on a
    local Ray instance: the same index as the local backend, refusals included."""
    status = main(["index", str(images), "--out", str(tmp_path), *SMALL, "--top", "3",
                   "--batch-size", "4", "--workers", "2", "--backend", "ray"])  # fmt: skip
    assert status == 1
    assert_same_index(reference, tmp_path)
    assert ray_instance.is_initialized()  # an instance the caller started is left running


def test_saved_progress_is_not_thrown_away_unasked(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A run over an interrupted one's folder without --resume is refused (the progress of
    hours is not lost to a forgotten option); a damaged progress file is one line naming it."""
    from visualizer.core.atlas import indexing

    real = indexing._local

    def interrupted(*args: object, **kwargs: object):
        yield next(iter(real(*args, **kwargs)))
        raise KeyboardInterrupt

    monkeypatch.setattr(indexing, "_local", interrupted)
    arguments = ["index", str(images), "--out", str(tmp_path), *SMALL, "--stages", "C5",
                 "--batch-size", "4", "--workers", "0"]  # fmt: skip
    assert main(arguments) == 130
    monkeypatch.setattr(indexing, "_local", real)
    saved = (tmp_path / PARTIAL_FILE).read_bytes()
    capsys.readouterr()
    assert main(arguments) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / PARTIAL_FILE}: an interrupted run's progress is saved here: add "
        "--resume to continue it, or delete the file to start again"
    )
    assert (tmp_path / PARTIAL_FILE).read_bytes() == saved
    (tmp_path / PARTIAL_FILE).write_bytes(saved[: len(saved) // 2])
    assert main([*arguments, "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / PARTIAL_FILE}: damaged, cannot resume from it (")
    assert len(err.strip().splitlines()) == 1


def test_an_unwritable_out_and_an_empty_list_are_named(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    source = str(images / "image000.png")
    assert main(["index", source, "--out", str(taken / "index"), *SMALL, "--stages", "C5"]) == 1
    assert capsys.readouterr().err.startswith(f"error: {taken / 'index'}: ")
    listing = tmp_path / "empty.txt"
    listing.write_text("# nothing yet\n\n")
    out = tmp_path / "out"
    assert main(["index", str(listing), "--out", str(out), *SMALL]) == 1
    assert capsys.readouterr().err.strip() == f"error: {listing}: lists no images"
    assert not out.exists()

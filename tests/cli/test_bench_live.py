"""``fmviz bench --live``: two small real runs (ResNet101, random weights, three analysed
frames a run, a one-second 160×120 clip), read as JSON and as text; its errors.

The decode-only run is shortened (``DECODE_S``) to keep the file fast; the figures are not
judged, only checked for sense: the player's counts add up, rates and shares are in range.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

from visualizer.bench import live
from visualizer.bench.live import DecodeRun, LiveBenchReport, LoopRun, report_lines
from visualizer.cli import main

RATE = 30
CLIP_FRAMES = 30
FRAMES = 3


class BenchRun(NamedTuple):
    status: int
    out: str
    err: str


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of the bench's moving shapes, 160×120 at 30 fps."""
    folder = tmp_path_factory.mktemp("bench-live")
    return live.make_clip(folder / "clip.mp4", size=(160, 120), rate=RATE, seconds=1)


def bench(argv: list[str]) -> BenchRun:
    """``fmviz bench --live`` with ``argv`` in this process, the decode-only run shortened."""
    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        patch.setattr(live, "DECODE_S", 0.3)
        status = main(["bench", "--live", *argv])
    return BenchRun(status, out.getvalue(), err.getvalue())


def live_argv(clip: Path, device: str) -> list[str]:
    return ["--model", "resnet101", "--weights", "random", "--device", device,
            "--frames", str(FRAMES), "--video", str(clip)]  # fmt: skip


@pytest.fixture(scope="module")
def results(clip: Path, device: str) -> dict[str, Any]:
    run = bench([*live_argv(clip, device), "--json"])
    assert run.status == 0, run.err
    assert "error" not in run.err
    assert not [thread for thread in threading.enumerate() if thread.name == "fmviz-live"]
    return json.loads(run.out)


@pytest.fixture(scope="module")
def text_run(clip: Path, device: str) -> BenchRun:
    """The text report, recording too."""
    return bench([*live_argv(clip, device), "--record", "--stage", "c3"])


def test_the_json_names_the_run(results: dict[str, Any], clip: Path, device: str) -> None:
    assert results["bench"] == "live"
    assert (results["model"], results["network"]) == ("resnet101", "ResNet101")
    assert results["weights"].startswith("random")
    assert results["device"].startswith("CPU" if device == "cpu" else "CUDA")
    assert (results["stage"], results["cam_stage"]) == ("C1", "C5")
    assert (results["frames"], results["record"]) == (FRAMES, False)
    video = results["video"]
    assert (video["source"], video["generated"], video["name"]) == (str(clip), False, "clip.mp4")
    assert (video["size"], video["rate"], video["frames"]) == ([160, 120], RATE, CLIP_FRAMES)
    assert results["recorded_frames"] is None
    assert set(results["versions"]) == {"torch", "av"}


@pytest.mark.parametrize("name", ["realtime", "fastest"])
def test_each_run_counts_add_up(results: dict[str, Any], name: str) -> None:
    run = results[name]
    assert run["realtime"] is (name == "realtime")
    assert run["analysed"] == FRAMES
    assert run["analysed"] <= run["captured"]
    assert run["waiting"] in (0, 1)
    assert run["dropped"] == run["captured"] - run["analysed"] - run["waiting"]
    assert run["plays"] >= 1
    assert run["record_ms"] is None


@pytest.mark.parametrize("name", ["realtime", "fastest"])
def test_each_runs_rates_and_shares_make_sense(results: dict[str, Any], name: str) -> None:
    run = results[name]
    assert run["analysed_fps"] > 0
    assert run["analysed_fps"] == pytest.approx(run["analysed"] / run["seconds"])
    assert run["captured_fps"] > 0
    assert run["captured_fps"] == pytest.approx(run["captured"] / run["capture_seconds"])
    assert run["capture_seconds"] >= run["seconds"]
    assert 0 < run["analysis_ms"]["median"] <= run["analysis_ms"]["p90"]
    # Each frame's cycle holds its analysis, so the cycles' order statistics are the larger.
    assert run["cycle_ms"]["median"] >= run["analysis_ms"]["median"]
    assert 0 < run["analysis_share"] <= 1
    assert 0 < run["analysis_share_median"] <= run["work_share_median"] <= 1
    assert run["limited_by"].startswith(("the analysis", "the video's rate", "decoding"))


def test_in_real_time_frames_come_no_faster_than_the_video_plays(
    results: dict[str, Any],
) -> None:
    run = results["realtime"]
    # Each play gives its first frame at once, then one every 1/RATE s.
    assert run["captured"] <= RATE * run["capture_seconds"] + run["plays"]


def test_decoding_alone_is_measured(results: dict[str, Any]) -> None:
    decode = results["decode"]
    assert decode["frames"] > 0
    assert decode["fps"] == pytest.approx(decode["frames"] / decode["seconds"])
    assert decode["plays"] >= 1
    assert results["analysis_limit_fps"] > 0


def test_p14_is_the_fastest_runs_analysed_fps(results: dict[str, Any], device: str) -> None:
    entry = results["P14"]
    assert (entry["target"], entry["compare"], entry["unit"]) == (30.0, "≥", "fps")
    assert entry["ratio"] == results["fastest"]["analysed_fps"]
    assert "Grad-CAM" in entry["what"]
    if device == "cpu":
        assert entry["ok"] is None
        assert "GPU target" in entry["note"]
        assert results["ratios"] == results["targets"] == results["met"] == {}
    else:
        assert entry["ok"] == (entry["ratio"] >= 30)
        assert results["met"] == {"P14": entry["ok"]}


def test_the_text_report_shows_the_runs_the_recording_and_p14(
    text_run: BenchRun, device: str
) -> None:
    assert text_run.status == 0, text_run.err
    out = text_run.out
    assert out.startswith("fmviz live loop: ResNet101 on ")
    assert "grid C3, Grad-CAM at C5" in out
    assert "decode only" in out
    assert "record ms" in out
    lines = out.splitlines()
    for name in ("real time (30 fps)", "as fast as decoded"):
        (row,) = [line for line in lines if line.startswith(name)]
        assert "—" not in row  # the recording's figures are there
    (recorded,) = [line for line in lines if line.startswith("recorded:")]
    assert recorded.startswith(f"recorded: {2 * FRAMES + 1} frames")
    (p14,) = [line for line in lines if line.startswith("P14")]
    assert "(target ≥ 30 fps, " in p14
    assert "analysed fps ResNet101 with grid and Grad-CAM" in p14
    if device == "cpu":
        assert "a GPU target: shown, not judged, on CPU" in p14


def test_p14_is_judged_for_resnet101_on_cuda() -> None:
    """The report's verdict, from figures made up: 40 analysed frames a second on CUDA."""
    fastest = LoopRun(realtime=False, captured=200, taken=40, dropped=159, waiting=1, plays=1,
                      capture_s=1.2, analysis_ms=[24.0] * 40, record_ms=[0.0] * 40,
                      cycles_s=[0.025] * 40)  # fmt: skip
    realtime = LoopRun(realtime=True, captured=36, taken=35, dropped=0, waiting=1, plays=1,
                       capture_s=1.2, analysis_ms=[20.0] * 35, record_ms=[0.0] * 35,
                       cycles_s=[1 / 30] * 35)  # fmt: skip
    report = LiveBenchReport(
        model="resnet101",
        network="ResNet101",
        weights="random",
        device="CUDA (NVIDIA H200)",
        stage="C1",
        cam_stage="C5",
        video={
            "source": "generated moving shapes",
            "generated": True,
            "name": "shapes.mp4",
            "size": [640, 480],
            "rate": 30.0,
            "frames": 300,
        },
        frames=40,
        record=False,
        warmup_ms=500.0,
        decode=DecodeRun(frames=1000, seconds=2.0, plays=4),
        realtime=realtime,
        fastest=fastest,
    )
    results = report.as_json()
    assert results["fastest"]["limited_by"] == "the analysis"  # 24 ms of each 25
    assert results["realtime"]["limited_by"] == "the video's rate (30 fps)"
    assert results["P14"]["ratio"] == pytest.approx(40.0)
    assert results["P14"]["ok"] is True
    assert "note" not in results["P14"]
    assert results["met"] == {"P14": True}
    (p14,) = [line for line in report_lines(results) if line.startswith("P14")]
    assert p14.startswith("P14    40.0 fps (target ≥ 30 fps, ok): ")
    vgg = LiveBenchReport(**{**report.__dict__, "model": "vgg16", "network": "VGG16"})
    assert "a ResNet101 target" in vgg.as_json()["P14"]["note"]
    slow = LiveBenchReport(**{**report.__dict__, "fastest": realtime})
    (p14,) = [line for line in report_lines(slow.as_json()) if line.startswith("P14")]
    assert "under target" in p14


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda folder: folder / "missing.mp4", "no such file"),
        (lambda folder: folder, "a folder, not a video file"),
        (lambda folder: _write(folder / "notes.mp4", b"not a video at all\n"), "cannot be opened"),
    ],
    ids=["missing", "folder", "not-a-video"],
)
def test_a_video_that_cannot_be_played_is_one_error_line(
    make: Any, reason: str, tmp_path: Path, device: str
) -> None:
    video = make(tmp_path)
    run = bench(["--device", device, "--weights", "random", "--frames", "2", "--video", str(video)])
    assert run.status == 1
    assert run.err.startswith(f"error: {video}: {reason}")
    assert run.err.count("\n") == 1
    assert run.out == ""


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--device", "cuda"], "error: CUDA is not available"),
        (["--weights", "/nonexistent/weights.pth"], "error: /nonexistent/weights.pth: no such"),
    ],
    ids=["no-cuda", "no-weights-file"],
)
def test_a_network_that_cannot_be_built_is_one_error_line(
    options: list[str], says: str, clip: Path
) -> None:
    if "cuda" in options and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = bench(["--frames", "2", "--video", str(clip), *options])
    assert run.status == 1
    assert run.err.startswith(says)
    assert run.err.count("\n") == 1
    assert run.out == ""


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--live", "--frames", "0"], "--frames: must be at least 1"),
        (["bench", "--live", "--stage", "C9"], "is not a stage"),
        (["bench", "--video", "clip.mp4"], "--video needs --live"),
        (["bench", "--frames", "3"], "--frames needs --live"),
        (["bench", "--index", "--record"], "--record needs --live"),
        (["bench", "--live", "--index"], "--live and --index measure different things"),
        (["bench", "--live", "--runs", "2"], "--live and --runs measure different things"),
        (["bench", "--live", "--images", "5"], "--images needs --index"),
    ],
)
def test_live_options_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

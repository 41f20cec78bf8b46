"""The live view in the window: a generated video played, its newest frame analysed."""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt, QTimer

from tests.videos import decoded_frames, write_shapes_video

TIMEOUT_MS = 60_000


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """1.6 s of moving shapes at 25 fps."""
    return write_shapes_video(tmp_path / "shapes.mp4", frames=40, size=(160, 120))


def open_files() -> set[str]:
    folder = Path("/proc/self/fd")
    links = set()
    for entry in folder.iterdir() if folder.is_dir() else ():
        try:
            links.add(os.readlink(entry))
        except OSError:
            continue
    return links


def play(window, qtbot, video: Path, **options) -> list:
    """Start ``video`` live; the frames shown, as they come (a list that grows)."""
    shown: list = []
    window.live.frame_shown.connect(shown.append)
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.live.open(str(video), **options)
    return shown


def test_frames_are_analysed_newest_first_in_order_with_drops_counted(
    open_window, qtbot, video: Path
) -> None:
    window = open_window([], wait=False)
    ticks: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    heartbeat.start()
    shown = play(window, qtbot, video)
    with qtbot.waitSignal(window.live.ended, timeout=TIMEOUT_MS):
        pass
    heartbeat.stop()
    indices = [frame.index for frame in shown]
    stats = window.live.player.stats()
    assert indices == sorted(set(indices)), "frames shown out of order, or twice"
    assert indices[-1] == 39  # the last frame waits in the slot, and is analysed
    assert stats.captured == 40
    assert stats.taken == len(shown) == window.live.analysed
    assert stats.captured == stats.taken + stats.dropped
    assert stats.dropped > 0  # ResNet101 on this CPU is slower than 25 fps
    assert "ended: 40 frames" in window.live_bar.stats.text()
    assert f"dropped {stats.dropped}" in window.live_bar.stats.text()
    assert window.windowTitle() == "fmviz — shapes.mp4 (live) — ResNet101"
    assert window.live_bar.play.text() == "Play again"
    # The view on screen is the last frame's, as an image of it would be shown.
    assert window.data is shown[-1].data
    gaps = np.diff(ticks)
    assert gaps.max() < 0.5, f"the event loop stalled for {gaps.max():.2f} s while live"


def test_a_snapshot_is_the_frame_and_its_view_equals_analyze(
    open_window, qtbot, video: Path, analyzer_of
) -> None:
    window = open_window([], wait=False)
    shown = play(window, qtbot, video)
    window.live.pause()
    qtbot.waitUntil(lambda: window.live._pending is None, timeout=TIMEOUT_MS)
    frame = window.live.last
    picture = window.live.snapshot()
    assert picture.key in window.pictures
    assert not picture.live
    reference = decoded_frames(video)[frame.index]
    np.testing.assert_array_equal(np.asarray(picture.image), reference)
    assert shown[-1] is frame
    again = window.live.snapshot()  # the same frame kept twice: two names, no export overwritten
    assert picture.name == f"shapes_frame{frame.index:05d}"
    assert again.name == f"{picture.name}_2"
    assert again.key in window.pictures
    assert again.key != picture.key
    labels = [window.strip.item(row).text() for row in range(window.strip.count())]
    assert len(set(labels)) == len(labels), labels  # told apart in the strip too,
    assert window.strip.textElideMode() == Qt.TextElideMode.ElideMiddle  # however narrow
    # Selected, the snapshot is analysed in full as an image, and shown (live frames stop).
    with qtbot.waitSignal(window.view_shown, timeout=TIMEOUT_MS):
        window.select_picture(picture.key)
    assert not window.live.showing
    expected = analyzer_of("resnet101").analyze(Image.fromarray(reference))
    np.testing.assert_allclose(window.data.activation, expected.stages["C1"].numpy(), atol=1e-5)
    assert [row[0] for row in window.data.topk] == [row[0] for row in expected.topk]
    np.testing.assert_allclose(frame.data.activation, expected.stages["C1"].numpy(), atol=1e-5)
    assert window.windowTitle().startswith(f"fmviz — {picture.name} — ")


def test_pause_holds_the_frame_and_step_shows_the_next(open_window, qtbot, video: Path) -> None:
    window = open_window([], wait=False)
    shown = play(window, qtbot, video)
    window.live.pause()
    qtbot.waitUntil(lambda: window.live._pending is None, timeout=TIMEOUT_MS)
    before = window.live.player.stats()
    count = len(shown)
    qtbot.wait(400)  # 10 frames' time at 25 fps
    after = window.live.player.stats()
    assert after.captured == before.captured
    assert len(shown) == count
    assert window.live_bar.play.text() == "Play"
    for _ in range(2):
        with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
            window.live.step()
        captured = window.live.player.stats().captured
        assert shown[-1].index == captured - 1  # the frame let through, no later one
    assert shown[-1].index == shown[-2].index + 1
    # A stage chosen while paused shows the same frame at that stage.
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.show_stage("C4")
    assert shown[-1].index == shown[-2].index
    assert shown[-1].data.options.stage == "C4"
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.live.play()
    assert shown[-1].index > shown[-2].index


def test_closing_during_playback_leaves_no_thread_and_no_open_file(
    open_window, qtbot, video: Path
) -> None:
    window = open_window([], wait=False)
    play(window, qtbot, video)
    assert str(video) in open_files()
    assert any(thread.name == "fmviz-live" for thread in threading.enumerate())
    started = time.perf_counter()
    window.close()
    assert time.perf_counter() - started < 5
    assert not any(thread.name.startswith("fmviz-") for thread in threading.enumerate())
    assert str(video) not in open_files()


def test_stopping_goes_back_to_the_image(open_window, qtbot, video: Path, picture_file) -> None:
    image = picture_file("still.png")
    window = open_window([image])
    play(window, qtbot, video)
    assert window.live_bar.isVisible()
    with qtbot.waitSignal(window.view_shown, timeout=TIMEOUT_MS):
        window.live.stop()
    assert not window.live_bar.isVisible()
    assert not window.live.active
    assert window.data.picture == window.current
    assert window.windowTitle() == "fmviz — still.png — ResNet101"
    qtbot.waitUntil(lambda: str(video) not in open_files(), timeout=5_000)


def test_a_camera_lost_while_an_image_is_shown_is_said_at_once(
    open_window, qtbot, video: Path, picture_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    """And Play then opens it again, though a frame captured before the pause was waiting."""
    from visualizer.core.live import LiveSourceError, VideoSource

    second_frame, unplugged = threading.Event(), threading.Event()
    opened: list[VideoSource] = []

    def camera(_spec):  # the video, read as a camera's frames are; lost after two frames
        source = VideoSource(str(video))
        source.is_camera = True
        decode, calls = source._next_frame, []

        def next_frame():
            calls.append(None)
            if len(calls) == 1:
                second_frame.wait(TIMEOUT_MS / 1000)
                return decode()
            unplugged.wait(TIMEOUT_MS / 1000)
            raise LiveSourceError("Fake Cam: frame 2: No such device")

        source._next_frame = next_frame
        opened.append(source)
        return source

    monkeypatch.setattr("visualizer.core.live.open_source", camera)
    window = open_window([picture_file("still.png")])
    try:
        window.live.open("Fake Cam")
        qtbot.waitUntil(lambda: window.live._pending is not None, timeout=TIMEOUT_MS)
        second_frame.set()  # captured while the first is analysed: it waits in the slot
        deadline = time.monotonic() + 10
        while window.live.player.stats().captured < 2 and time.monotonic() < deadline:
            time.sleep(0.001)  # no event processed: the first frame's analysis is not taken
        window.select_picture(window.current)  # the strip's image: live pauses
        qtbot.waitUntil(lambda: window.live._pending is None, timeout=TIMEOUT_MS)
        with qtbot.waitSignal(window.live.ended, timeout=TIMEOUT_MS):
            unplugged.set()
    finally:
        second_frame.set()
        unplugged.set()
    assert window.errors.messages == ["Fake Cam: frame 2: No such device"]
    assert window.data.picture == window.current  # the image stays shown
    assert window.live_bar.play.text() == "Play again"
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.live.play()
    assert len(opened) == 2  # opened again, not resumed


def test_no_camera_is_one_line_and_nothing_else_changes(
    open_window, qtbot, monkeypatch: pytest.MonkeyPatch, picture_file
) -> None:
    monkeypatch.setattr("visualizer.core.live.sources.list_cameras", list)
    window = open_window([picture_file("still.png")])
    title, data = window.windowTitle(), window.data
    with qtbot.waitSignal(window.live.failed, timeout=TIMEOUT_MS):
        window.live.open(None)
    assert window.errors.messages == [
        "no camera found on this machine (fmviz --live FILE plays a video file instead)"
    ]
    assert not window.live_bar.isVisible()
    assert not window.live.active
    assert (window.windowTitle(), window.data) == (title, data)


def test_a_video_dropped_plays_live(open_window, qtbot, video: Path) -> None:
    window = open_window([], wait=False)
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.add_files([str(video)])
    assert window.live.showing
    assert window.live.name == "shapes.mp4"
    assert all(picture.name != "shapes.mp4" for picture in window.pictures.values())
    assert window.errors.messages == []  # not read as an image


def test_videos_dropped_together_play_one_after_the_other(
    open_window, qtbot, video: Path, tmp_path: Path
) -> None:
    window = open_window([], wait=False)
    other = write_shapes_video(tmp_path / "other.mkv", frames=10, size=(96, 64))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"no video here" * 50)
    shown: list = []
    sources: list[str] = []
    window.live.frame_shown.connect(shown.append)
    window.live.frame_shown.connect(lambda _frame: sources.append(window.live_bar.source.text()))
    ends: list[str] = []
    window.live.ended.connect(lambda: ends.append(window.live.name))
    window.add_files([str(video), str(broken), str(other)])
    qtbot.waitUntil(lambda: len(ends) == 2, timeout=TIMEOUT_MS)

    assert ends == ["shapes.mp4", "other.mkv"]
    names = [frame.picture.name.split("_frame")[0] for frame in shown]
    first = names.index("other")  # the first frame of the second video played
    assert names == ["shapes"] * first + ["other"] * (len(names) - first)
    assert shown[first].index == 0  # each video from its start
    assert sources[0] == "shapes.mp4 · 160×120 · 25 fps · video 1 of 3"
    assert sources[-1] == "other.mkv · 96×64 · 25 fps · video 3 of 3"
    assert len(window.errors.messages) == 1  # the broken one, and the next played all the same
    assert window.errors.messages[0].startswith(f"{broken}: cannot be opened (")
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.live.play()  # again: the list from its first video
    assert window.live.name == "shapes.mp4"
    assert window.live.queue == [str(broken), str(other)]
    window.live.stop()
    assert (window.live.playlist, window.live.queue) == ([], [])


def test_a_list_is_replaced_only_once_another_source_opens(
    open_window, qtbot, video: Path, tmp_path: Path
) -> None:
    """A video chosen that cannot be opened leaves the list playing as it was; a list dropped
    while another video plays starts with its first video, whenever that one ends."""
    window = open_window([], wait=False)
    other = write_shapes_video(tmp_path / "other.mkv", frames=10, size=(96, 64))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"no video here" * 50)
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.live.open_all([str(video), str(other)])
    window.live.pause()
    with qtbot.waitSignal(window.live.failed, timeout=TIMEOUT_MS):
        window.live.open(str(broken))
    assert window.live.queue == [str(other)]
    assert window.live_bar.source.text().endswith("video 1 of 2")

    # A list dropped on a source that then ends: the list from its first video.
    window.live.open(str(other))
    qtbot.waitUntil(lambda: window.live.name == "other.mkv", timeout=TIMEOUT_MS)
    assert window.live.playlist == []
    with qtbot.waitSignal(window.live.ended, timeout=TIMEOUT_MS):
        pass
    names: list[str] = []
    window.live.frame_shown.connect(lambda frame: names.append(frame.picture.name))
    window.live.player.close()  # as if it had ended before the list's first video opened
    window.live.open_all([str(video), str(other)])
    window.live._ended_said = False
    window.live._ended()
    qtbot.waitUntil(lambda: bool(names), timeout=TIMEOUT_MS)
    assert names[0].startswith("shapes_frame")
    assert window.live_bar.source.text().endswith("video 1 of 2")


def test_a_frame_is_named_after_its_source_without_dots() -> None:
    from visualizer.ui.live_jobs import frame_name

    assert frame_name("clip.mp4", 12) == "clip_frame00012"
    assert frame_name("run.2024.mkv", 3) == "run_2024_frame00003"
    assert frame_name("USB2.0 HD UVC WebCam", 7) == "USB2_0_HD_UVC_WebCam_frame00007"
    assert frame_name("///", 0) == "live_frame00000"


def test_a_snapshot_named_as_an_image_of_the_strip_gets_a_name_of_its_own(
    open_window, qtbot, video: Path, picture_file
) -> None:
    window = open_window([], wait=False)
    play(window, qtbot, video)
    window.live.pause()
    qtbot.waitUntil(lambda: window.live._pending is None, timeout=TIMEOUT_MS)
    name = window.live.last.picture.name
    window.add_files([picture_file(f"{name}.png")])  # exported as the snapshot would be
    qtbot.waitUntil(lambda: any(p.name == f"{name}.png" for p in window.pictures.values()))
    assert window.live.snapshot().name == f"{name}_2"


def test_the_recording_holds_each_analysed_frame_and_its_top5(
    open_window, qtbot, video: Path, tmp_path: Path
) -> None:
    window = open_window([], wait=False)
    recording = tmp_path / "out" / "live.mkv"
    recording.parent.mkdir()
    shown = play(window, qtbot, video, record=str(recording))
    with qtbot.waitSignal(window.live.ended, timeout=TIMEOUT_MS):
        pass
    qtbot.waitUntil(recording.exists, timeout=TIMEOUT_MS)
    qtbot.waitUntil(recording.with_suffix(".csv").exists, timeout=TIMEOUT_MS)
    frames = decoded_frames(recording)
    assert len(frames) == len(shown)
    with recording.with_suffix(".csv").open(newline="") as table:
        rows = list(csv.DictReader(table))
    assert [int(row["frame"]) for row in rows[::5]] == [frame.index for frame in shown]
    assert [int(row["class"]) for row in rows[:5]] == [row[0] for row in shown[0].data.topk]
    assert sorted(path.name for path in recording.parent.iterdir()) == ["live.csv", "live.mkv"]
    # The first panel of the recorded frame is the input as the network saw it.
    view = shown[-1].data.view
    first = frames[-1][: view.shape[0], : view.shape[1]].astype(int)
    assert np.abs(first - view).mean() < 8


def test_a_recording_goes_on_through_the_videos_of_a_list(
    open_window, qtbot, tmp_path: Path
) -> None:
    window = open_window([], wait=False)
    first = write_shapes_video(tmp_path / "first.mp4", frames=100, size=(160, 120))  # 4 s
    other = write_shapes_video(tmp_path / "other.mkv", frames=10, size=(96, 64))
    play(window, qtbot, other)  # the network loaded: the list's frames are analysed at once
    with qtbot.waitSignal(window.live.ended, timeout=TIMEOUT_MS):
        pass
    recording = tmp_path / "out" / "list.mkv"
    recording.parent.mkdir()
    shown: list = []
    window.live.frame_shown.connect(shown.append)
    recording_at_end: list[bool] = []
    window.live.ended.connect(lambda: recording_at_end.append(window.live.recorder is not None))
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.live.open_all([str(first), str(other)])
    window.live.start_recording(str(recording))
    first_recorded = window.live._pending  # frames analysed from now on are recorded
    qtbot.waitUntil(lambda: len(recording_at_end) == 2, timeout=TIMEOUT_MS)
    qtbot.waitUntil(recording.with_suffix(".csv").exists, timeout=TIMEOUT_MS)

    assert recording_at_end == [True, False]  # one recording, finished once the list ended
    recorded = shown[2 if first_recorded is not None else 1 :]
    assert {frame.picture.name[:6] for frame in recorded} == {"first_", "other_"}
    assert len(decoded_frames(recording)) == len(recorded)
    with recording.with_suffix(".csv").open(newline="") as table:
        rows = list(csv.DictReader(table))[::5]
    # Numbers and times go on from one video to the next: the second's frame 0 is frame 100
    # (the first has 100), 1/25 s after the first's last frame (3.96 s).
    second = [frame.picture.name.startswith("other") for frame in recorded]
    expected = [(frame.index + 100 * later, frame.time + 4.0 * later)
                for frame, later in zip(recorded, second, strict=True)]  # fmt: skip
    assert [int(row["frame"]) for row in rows] == [index for index, _ in expected]
    np.testing.assert_allclose([float(row["time"]) for row in rows],
                               [time for _, time in expected], atol=1e-6)  # fmt: skip
    assert sorted(path.name for path in recording.parent.iterdir()) == ["list.csv", "list.mkv"]


def test_a_video_ending_while_an_image_is_shown_is_said_and_play_goes_on_with_the_list(
    open_window,
    qtbot,
    video: Path,
    *,
    tmp_path: Path,
    picture_file,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from visualizer.ui import live

    last_in_analysis, release = threading.Event(), threading.Event()
    analyse = live.analyse_frame

    def held_at_the_last_frame(session, spec, picture, options, frame, **kwargs):
        if frame.index == 39:
            last_in_analysis.set()
            release.wait(TIMEOUT_MS / 1000)
        return analyse(session, spec, picture, options, frame, **kwargs)

    monkeypatch.setattr(live, "analyse_frame", held_at_the_last_frame)
    other = write_shapes_video(tmp_path / "other.mkv", frames=10, size=(96, 64))
    window = open_window([picture_file("still.png")])
    try:
        with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
            window.live.open_all([str(video), str(other)])
        qtbot.waitUntil(last_in_analysis.is_set, timeout=TIMEOUT_MS)
        window.select_picture(window.current)  # the strip's image, while the last frame is
        with qtbot.waitSignal(window.live.ended, timeout=TIMEOUT_MS):  # analysed
            release.set()
    finally:
        release.set()
    assert window.live_bar.play.text() == "Play again"
    assert window.live.name == "shapes.mp4"  # the list waits: the image stays shown
    qtbot.waitUntil(lambda: window.data.picture == window.current, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.live.frame_shown, timeout=TIMEOUT_MS):
        window.live.play()
    assert window.live.name == "other.mkv"  # Play goes on with the next video
    assert window.live_bar.source.text().endswith("video 2 of 2")


def test_a_control_changed_while_a_frame_is_analysed_is_not_lost(
    open_window, qtbot, video: Path
) -> None:
    window = open_window([], wait=False)
    shown = play(window, qtbot, video)
    window.live.pause()
    qtbot.waitUntil(lambda: window.live._pending is None, timeout=TIMEOUT_MS)
    window.live.step()
    qtbot.waitUntil(lambda: window.live._pending is not None, timeout=TIMEOUT_MS)
    window.show_stage("C3")  # while the stepped frame is on its way, at C1
    qtbot.waitUntil(lambda: shown[-1].data.options.stage == "C3", timeout=TIMEOUT_MS)
    assert shown[-1].index == shown[-2].index  # the same frame, shown again at C3


def test_a_video_that_failed_to_open_is_not_played_again(
    open_window, qtbot, video: Path, tmp_path: Path
) -> None:
    window = open_window([], wait=False)
    play(window, qtbot, video)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"no video here" * 50)
    with qtbot.waitSignal(window.live.failed, timeout=TIMEOUT_MS):
        window.live.open(str(broken))
    assert window.live.spec == str(video)  # Play again replays the one that plays
    assert window.live.active
    assert window.errors.messages[-1].startswith(f"{broken}: cannot be opened (")

"""Live analysis's engine: video sources, the capture thread and its one-frame slot, recordings.

References are independent of fmviz's reader and writer: PyAV decoding the files directly
(``tests.videos.decoded_frames``), numpy, the CSV read back with the csv module. The videos
are short and small, written by the tests themselves; real-time pacing is checked with lower
bounds only (a frame never comes before its time), as the machine may be busy.
"""

from __future__ import annotations

import csv
import os
import threading
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from tests.videos import decoded_frames, shapes_frame, write_shapes_video
from visualizer.core.live import (
    Camera,
    LiveSourceError,
    Player,
    RateMeter,
    Recorder,
    RecordingError,
    VideoSource,
    compose,
    csv_path_for,
    find_source,
    list_cameras,
    open_source,
)
from visualizer.core.live import sources as live_sources
from visualizer.core.live.recorder import GAP, GAP_COLOR, GRID_BOX

pytestmark = pytest.mark.timeout(60)

FRAMES = 30
RATE = 25
SIZE = (160, 120)
WAIT_S = 5.0  # for things between threads that take milliseconds
EARLY_S = 0.003  # how early a real-time frame may seem to come (clock reads, rounding)


# --- helpers ----------------------------------------------------------------------------------


def open_descriptors(path: str | os.PathLike[str]) -> list[str]:
    """This process's file descriptors open on ``path``."""
    target = os.path.realpath(path)
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if link == target:
            found.append(fd)
    return found


def wait_until(condition, timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


_EARLIER_THREADS: set[threading.Thread] = set()


@pytest.fixture(autouse=True)
def _earlier_threads():
    """Capture threads that were there before the test (another test's): not its own."""
    _EARLIER_THREADS.clear()
    _EARLIER_THREADS.update(live_threads(earlier=True))


def live_threads(*, earlier: bool = False) -> list[threading.Thread]:
    """The capture threads running (those of this test, unless ``earlier``)."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.name == "fmviz-live" and (earlier or thread not in _EARLIER_THREADS)
    ]


def realtime_player(clip) -> tuple[Player, list[tuple[int, float, float]]]:
    """A real-time player of ``clip`` whose frames are taken as they come: each frame's
    index, time and monotonic arrival (s) are appended to the list returned with it."""
    arrivals: list[tuple[int, float, float]] = []
    player: Player

    def on_frame() -> None:
        frame = player.take()
        if frame is not None:
            arrivals.append((frame.index, frame.time, time.monotonic()))

    player = Player(open_source(str(clip)), realtime=True, on_frame=on_frame)
    return player, arrivals


def drain(player: Player, *, delay: float = 0.0, timeout: float = WAIT_S) -> list:
    """Take frames until the player has ended, sleeping ``delay`` after each frame taken."""
    taken = []
    deadline = time.monotonic() + timeout
    while not player.stats().ended:
        assert time.monotonic() < deadline, f"not ended after {timeout} s: {player.stats()}"
        frame = player.take()
        if frame is None:
            time.sleep(0.0005)
            continue
        taken.append(frame)
        time.sleep(delay)
    return taken


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message and message == message.strip()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def clip(clips: Path) -> Path:
    """30 frames at 25 fps, 160×120, MPEG-4 in MP4."""
    return write_shapes_video(clips / "shapes.mp4", frames=FRAMES, rate=RATE, size=SIZE)


@pytest.fixture(scope="module")
def reference(clip: Path) -> list[np.ndarray]:
    return decoded_frames(clip)


@pytest.fixture(scope="module")
def fast_clip(clips: Path) -> Path:
    """20 frames at 50 fps (0.4 s), for real-time playing."""
    return write_shapes_video(clips / "fast.mp4", frames=20, rate=50, size=SIZE)


@pytest.fixture(scope="module")
def long_clip(clips: Path) -> Path:
    """40 frames at 50 fps (0.8 s)."""
    return write_shapes_video(clips / "long.mp4", frames=40, rate=50, size=SIZE)


# --- VideoSource ------------------------------------------------------------------------------


def test_video_source_gives_every_frame_in_order_as_pyav_decodes_it(clip, reference):
    assert len(reference) == FRAMES
    with VideoSource(str(clip)) as source:
        assert source.size == SIZE
        assert source.rate == RATE
        assert source.frame_count == FRAMES
        assert not source.is_camera
        assert source.name == "shapes.mp4"
        frames = list(source.frames())
    assert [frame.index for frame in frames] == list(range(FRAMES))
    assert [frame.time for frame in frames] == pytest.approx(
        [index / RATE for index in range(FRAMES)], abs=1e-6
    )
    assert frames[0].time == 0.0
    for frame, expected in zip(frames, reference, strict=True):
        assert frame.image.mode == "RGB"
        assert frame.image.size == SIZE
        np.testing.assert_array_equal(np.asarray(frame.image), expected)
    # The reference itself is the shapes video (MPEG-4 at q 2: close, not exact).
    assert np.abs(reference[7].astype(int) - shapes_frame(7, SIZE)).mean() < 4


def test_video_source_describes_itself(clip, clips):
    with VideoSource(str(clip)) as source:
        assert source.describe() == "shapes.mp4 · 160×120 · 25 fps"
    other = write_shapes_video(clips / "other.mkv", frames=3, rate=50, size=(96, 64))
    with VideoSource(str(other)) as source:
        assert source.describe() == "other.mkv · 96×64 · 50 fps"


@pytest.mark.parametrize(("rotation", "turns"), [(90, 1), (-90, -1), (180, 2)])
def test_video_source_applies_the_display_rotation(clips, rotation, turns):
    """The display matrix's angle is counter-clockwise: 90° shows the stored picture turned
    a quarter to the left (``np.rot90(k=1)``), as FFmpeg's players show it."""
    path = write_shapes_video(
        clips / f"rotated{rotation}.mp4", frames=4, rate=RATE, size=SIZE, rotation=rotation
    )
    reference = decoded_frames(path)
    assert reference[0].shape == (SIZE[1], SIZE[0], 3)  # PyAV's decode is not rotated
    with VideoSource(str(path)) as source:
        size = source.size  # as shown, before a frame is asked for
        frames = list(source.frames())
    assert len(frames) == 4
    assert size == frames[0].image.size
    for frame, stored in zip(frames, reference, strict=True):
        expected = np.rot90(stored, k=turns)
        assert np.asarray(frame.image).shape == expected.shape
        np.testing.assert_array_equal(np.asarray(frame.image), expected)
    if rotation != 180:
        assert frames[0].image.size == (SIZE[1], SIZE[0])  # width and height swapped
        # and not turned the other way
        assert not np.array_equal(np.asarray(frames[0].image), np.rot90(reference[0], k=-turns))


def test_closing_a_video_source_releases_the_file(clip):
    source = VideoSource(str(clip))
    assert open_descriptors(clip), "the check below would prove nothing"
    frames = source.frames()
    next(frames)  # part read
    source.close()
    assert open_descriptors(clip) == []


def test_a_video_source_used_as_a_context_manager_releases_the_file(clip):
    with VideoSource(str(clip)) as source:
        assert open_descriptors(clip)
        assert len(list(source.frames())) == FRAMES
    assert open_descriptors(clip) == []


def test_frames_over_the_pixel_limit_are_refused(clip, monkeypatch):
    monkeypatch.setattr(live_sources, "MAX_FRAME_PIXELS", SIZE[0] * SIZE[1] - 1)
    with pytest.raises(LiveSourceError) as caught:
        VideoSource(str(clip))
    message = str(caught.value)
    assert str(clip) in message
    assert one_line(message)
    assert str(SIZE[0] * SIZE[1] - 1) in message  # the limit
    assert open_descriptors(clip) == []
    # At the limit exactly: allowed.
    monkeypatch.setattr(live_sources, "MAX_FRAME_PIXELS", SIZE[0] * SIZE[1])
    with VideoSource(str(clip)) as source:
        assert source.size == SIZE


def test_a_file_without_video_is_refused(tmp_path):
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(np.zeros(800, np.int16).tobytes())
    with pytest.raises(LiveSourceError) as caught:
        VideoSource(str(path))
    message = str(caught.value)
    assert str(path) in message
    assert "no video" in message
    assert one_line(message)
    assert open_descriptors(path) == []


@pytest.mark.parametrize("input_format", ["v4l2", "nosuchformat"])
def test_a_camera_that_cannot_be_opened_is_a_live_source_error(input_format):
    """Whatever FFmpeg says (no such device, or no such input format in this build: the
    /dev/video* nodes ``list_cameras`` falls back to are opened with v4l2 even where FFmpeg
    does not have it), the message says which camera."""
    camera = Camera("/dev/fmviz-no-such-video9", "Fake Cam", input_format)
    with pytest.raises(LiveSourceError) as caught:
        VideoSource(camera.device, camera=camera)
    message = str(caught.value)
    assert "Fake Cam" in message
    assert one_line(message)


# --- open_source ------------------------------------------------------------------------------


class FakeVideoSource:
    """Stands in for ``VideoSource`` where a camera would be opened."""

    def __init__(self, target: str, *, camera: Camera | None = None) -> None:
        self.target = target
        self.camera = camera


CAMERAS = [
    Camera("/dev/video0", "Integrated Webcam", "v4l2"),
    Camera("/dev/video2", "Acme USB Camera", "v4l2"),
]


@pytest.fixture
def no_camera(monkeypatch):
    monkeypatch.setattr(live_sources, "list_cameras", lambda: [])


@pytest.fixture
def fake_cameras(monkeypatch):
    monkeypatch.setattr(live_sources, "list_cameras", lambda: list(CAMERAS))
    monkeypatch.setattr(live_sources, "VideoSource", FakeVideoSource)


def test_open_source_plays_an_existing_file(clip, no_camera):
    source = open_source(str(clip))
    try:
        assert isinstance(source, VideoSource)
        assert not source.is_camera
        assert source.name == "shapes.mp4"
        assert len(list(source.frames())) == FRAMES
    finally:
        source.close()


def test_open_source_plays_a_file_even_where_there_are_cameras(clip, fake_cameras, monkeypatch):
    monkeypatch.setattr(live_sources, "VideoSource", VideoSource)
    with open_source(str(clip)) as source:
        assert isinstance(source, VideoSource)
        assert source.source == str(clip)


@pytest.mark.parametrize("cameras", [False, True], ids=["no-camera", "cameras"])
def test_open_source_names_a_missing_file(tmp_path, monkeypatch, cameras):
    monkeypatch.setattr(live_sources, "list_cameras", lambda: list(CAMERAS) if cameras else [])
    monkeypatch.setattr(live_sources, "VideoSource", FakeVideoSource)
    spec = str(tmp_path / "x" / "clip.mp4")
    with pytest.raises(LiveSourceError) as caught:
        open_source(spec)
    message = str(caught.value)
    assert spec in message
    assert one_line(message)
    assert "no such file" in message


def test_open_source_refuses_a_folder(tmp_path, no_camera):
    with pytest.raises(LiveSourceError) as caught:
        open_source(str(tmp_path))
    assert str(tmp_path) in str(caught.value)
    assert "folder" in str(caught.value)
    assert one_line(str(caught.value))


def test_open_source_refuses_a_file_that_is_not_a_video(tmp_path, no_camera):
    path = tmp_path / "notes.mp4"
    path.write_text("these are notes, not a video\n" * 50)
    with pytest.raises(LiveSourceError) as caught:
        open_source(str(path))
    message = str(caught.value)
    assert str(path) in message
    assert one_line(message)
    assert open_descriptors(path) == []


@pytest.mark.parametrize("spec", [None, ""])
def test_open_source_without_a_camera_says_so(no_camera, spec):
    with pytest.raises(LiveSourceError) as caught:
        open_source(spec)
    assert str(caught.value).startswith("no camera found")
    assert one_line(str(caught.value))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, 0),
        ("", 0),
        ("0", 0),
        ("1", 1),
        ("usb", 1),  # part of the name, case-insensitively
        ("integrated webcam", 0),
        ("Acme USB Camera", 1),
        ("/dev/video2", 1),  # as FFmpeg calls it
    ],
)
def test_open_source_picks_the_camera_named(fake_cameras, spec, expected):
    source = open_source(spec)
    assert isinstance(source, FakeVideoSource)
    assert source.camera == CAMERAS[expected]
    assert source.target == CAMERAS[expected].device


@pytest.mark.parametrize("spec", ["nosuch", "2", "17"])
def test_open_source_lists_the_cameras_when_none_is_that(fake_cameras, spec):
    with pytest.raises(LiveSourceError) as caught:
        open_source(spec)
    message = str(caught.value)
    assert one_line(message)
    assert spec in message
    assert "0: Integrated Webcam" in message
    assert "1: Acme USB Camera" in message


def test_list_cameras_answers_without_a_camera():
    cameras = list_cameras()
    assert isinstance(cameras, list)
    for camera in cameras:
        assert isinstance(camera, Camera)
        assert camera.device
        assert camera.name


# --- Player -----------------------------------------------------------------------------------


def test_a_slow_consumer_gets_the_newest_frames_in_order(clip, reference):
    with Player(open_source(str(clip)), realtime=False) as player:
        player.start()
        assert wait_until(lambda: player.stats().captured >= 3)  # 2 replaced at least
        taken = drain(player, delay=0.004)
        stats = player.stats()
    indices = [frame.index for frame in taken]
    assert indices == sorted(set(indices)), indices  # strictly increasing
    assert indices[-1] == FRAMES - 1  # the newest frame is the last one left
    assert stats.ended
    assert stats.error is None
    assert stats.captured == FRAMES
    assert stats.taken == len(taken)
    assert stats.captured == stats.taken + stats.dropped
    assert stats.dropped > 0
    for frame in taken:  # each index with its own picture
        np.testing.assert_array_equal(np.asarray(frame.image), reference[frame.index])
        assert frame.time == pytest.approx(frame.index / RATE, abs=1e-6)


def test_a_consumer_that_keeps_up_loses_no_frame(clip):
    """The producer waits in ``on_frame`` until its frame was taken by the consumer (on
    another thread): every frame is taken, none dropped."""
    ready, taken_event = threading.Event(), threading.Event()

    def on_frame() -> None:
        ready.set()
        assert taken_event.wait(WAIT_S)
        taken_event.clear()

    taken = []
    with Player(open_source(str(clip)), realtime=False, on_frame=on_frame) as player:
        player.start()
        deadline = time.monotonic() + WAIT_S
        while not player.stats().ended:
            assert time.monotonic() < deadline
            if not ready.wait(0.05):
                continue
            ready.clear()
            frame = player.take()
            if frame is not None:
                taken.append(frame.index)
            taken_event.set()
        stats = player.stats()
    assert taken == list(range(FRAMES))
    assert (stats.captured, stats.taken, stats.dropped) == (FRAMES, FRAMES, 0)


def test_the_end_is_told_through_on_frame(clip):
    calls = []
    with Player(open_source(str(clip)), realtime=False, on_frame=lambda: calls.append(1)) as player:
        player.start()
        taken = drain(player)
        assert taken
        # Once per frame captured, and once more at the end.
        assert wait_until(lambda: len(calls) == player.stats().captured + 1)
        time.sleep(0.05)
        assert len(calls) == FRAMES + 1
        stats = player.stats()
        assert stats.ended
        assert player.take() is None
    assert not live_threads()


def test_ended_waits_for_the_last_frame_to_be_taken(clip):
    with Player(open_source(str(clip)), realtime=False) as player:
        player.start()
        assert wait_until(lambda: player.stats().captured == FRAMES)
        time.sleep(0.05)
        assert not player.stats().ended  # the last frame is still waiting
        frame = player.take()
        assert frame is not None
        assert frame.index == FRAMES - 1
        assert wait_until(lambda: player.stats().ended)
        stats = player.stats()
        assert stats.captured == stats.taken + stats.dropped == FRAMES


def test_realtime_playing_keeps_to_the_frames_times(fast_clip):
    """No frame comes before its time (from when playing started); the whole clip takes at
    least about its duration."""
    player, arrivals = realtime_player(fast_clip)
    with player:
        started = time.monotonic()
        player.start()
        assert wait_until(lambda: player.stats().ended)
        elapsed = time.monotonic() - started
    duration = 19 / 50
    assert [index for index, _, _ in arrivals] == list(range(20))
    assert elapsed >= 0.8 * duration
    for _, at, arrived in arrivals:
        assert arrived - started >= at - EARLY_S
    assert elapsed < duration + 3.0  # and it ends


def test_not_realtime_is_faster_than_realtime(long_clip):
    with Player(open_source(str(long_clip)), realtime=False) as player:
        started = time.monotonic()
        player.start()
        assert len(drain(player)) >= 1
        elapsed = time.monotonic() - started
        assert player.stats().captured == 40
    assert elapsed < 0.5 * 39 / 50  # as fast as it decodes (milliseconds), not in real time


def test_pause_stops_the_frames_and_resume_goes_on_without_a_burst(long_clip):
    player, arrivals = realtime_player(long_clip)
    with player:
        player.start()
        assert wait_until(lambda: len(arrivals) >= 5)
        player.pause()
        assert player.paused
        time.sleep(0.05)  # a frame already on its way may still come
        before = player.stats().captured
        assert before < 40
        time.sleep(0.3)
        stats = player.stats()
        assert stats.paused
        assert stats.captured == before  # nothing while paused
        assert len(arrivals) == before
        resumed = time.monotonic()
        player.resume()
        assert not player.paused
        assert wait_until(lambda: player.stats().ended)
        stats = player.stats()
    assert [index for index, _, _ in arrivals] == list(range(40))  # on from where it was
    assert (stats.captured, stats.dropped) == (40, 0)
    first_index, first_time, first_arrival = arrivals[before]
    assert first_index == before
    assert first_arrival >= resumed
    assert first_arrival - arrivals[before - 1][2] >= 0.3  # the pause
    # Real time again from the frame resumed at: the frames passed over while paused do not
    # come all at once.
    for _, at, arrived in arrivals[before + 1 :]:
        assert arrived - first_arrival >= (at - first_time) - EARLY_S
    assert arrivals[-1][2] - resumed >= 0.8 * (arrivals[-1][1] - first_time)


def test_step_gives_one_frame_at_a_time(clip, reference):
    with Player(open_source(str(clip))) as player:
        player.start(paused=True)
        time.sleep(0.15)
        assert player.stats().captured == 0
        assert player.take() is None
        for expected in range(3):
            player.step()
            assert wait_until(lambda n=expected: player.stats().captured == n + 1)
            frame = player.take()
            assert frame is not None
            assert frame.index == expected
            np.testing.assert_array_equal(np.asarray(frame.image), reference[expected])
        time.sleep(0.15)
        stats = player.stats()
        assert (stats.captured, stats.taken, stats.dropped) == (3, 3, 0)
        assert stats.paused
        assert not stats.ended


def test_step_without_start_starts_paused(clip):
    with Player(open_source(str(clip)), realtime=False) as player:
        player.step()
        assert wait_until(lambda: player.stats().captured == 1)
        time.sleep(0.1)
        assert player.stats().captured == 1
        assert player.paused
        frame = player.take()
        assert frame is not None
        assert frame.index == 0
        player.resume()
        rest = drain(player)
        assert [frame.index for frame in rest][-1] == FRAMES - 1
        assert player.stats().captured == FRAMES


def test_close_while_playing_stops_the_thread_and_releases_the_file(clips):
    path = write_shapes_video(clips / "slow.mp4", frames=40, rate=10, size=SIZE)  # 4 s
    player = Player(open_source(str(path)), realtime=True)
    player.start()
    assert wait_until(lambda: player.stats().captured >= 1)
    assert live_threads()
    assert open_descriptors(path)
    started = time.monotonic()
    player.close()
    assert time.monotonic() - started < 1.0
    assert not live_threads()
    assert open_descriptors(path) == []
    assert player.stats().captured < 40


def test_close_while_paused_stops_the_thread(clip):
    player = Player(open_source(str(clip)), realtime=True)
    player.start(paused=True)
    time.sleep(0.05)
    assert live_threads()
    started = time.monotonic()
    player.close()
    assert time.monotonic() - started < 1.0
    assert not live_threads()
    assert open_descriptors(clip) == []


def test_close_without_start_releases_the_file(clip):
    player = Player(open_source(str(clip)))
    assert open_descriptors(clip)
    player.close()
    assert open_descriptors(clip) == []
    assert not live_threads()


def test_the_file_is_released_when_playing_ends(clip):
    with Player(open_source(str(clip)), realtime=False) as player:
        player.start()
        drain(player)
        assert wait_until(lambda: not live_threads())
        assert open_descriptors(clip) == []


def damage_mp4(data: bytes) -> bytes:
    """Random bytes over the second half of the MP4's media data (the index stays whole)."""
    media, index = data.find(b"mdat") - 4, data.find(b"moov") - 4
    assert 0 <= media < index
    start = (media + index) // 2
    damaged = bytearray(data)
    damaged[start:index] = np.random.default_rng(1).bytes(index - start)
    return bytes(damaged)


@pytest.mark.parametrize("damage", ["mp4-garbled", "mkv-truncated"])
def test_a_damaged_file_ends_early_or_says_why(tmp_path, damage):
    suffix = "." + damage.split("-")[0]
    whole = write_shapes_video(tmp_path / f"whole{suffix}", frames=FRAMES, rate=RATE, size=SIZE)
    data = whole.read_bytes()
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(damage_mp4(data) if suffix == ".mp4" else data[: len(data) // 2])
    with Player(open_source(str(path)), realtime=False) as player:
        player.start()
        taken = drain(player, timeout=10.0)  # fails if it never ends
        stats = player.stats()
    indices = [frame.index for frame in taken]
    assert indices == sorted(set(indices))
    assert stats.captured == stats.taken + stats.dropped
    assert stats.captured < FRAMES or stats.error is not None
    if stats.error is not None:
        assert str(path) in stats.error
        assert one_line(stats.error)
    assert not live_threads()
    assert open_descriptors(path) == []


# --- RateMeter --------------------------------------------------------------------------------


def test_rate_meter_counts_events_per_second():
    meter = RateMeter(window=2.0)
    assert meter.rate() == 0.0
    meter.tick(5.0)
    assert meter.rate() == 0.0  # one event is no rate
    meter = RateMeter(window=2.0)
    for tenth in range(11):
        meter.tick(tenth / 10)
    assert meter.rate() == pytest.approx(10.0)


def test_rate_meter_forgets_what_is_older_than_its_window():
    meter = RateMeter(window=2.0)
    for tenth in range(11):  # 10 per second for a second
        meter.tick(tenth / 10)
    for second in (5.0, 6.0, 7.0):  # then one per second
        meter.tick(second)
    assert meter.rate() == pytest.approx(1.0)  # not 12 / 7


def test_rate_meter_at_one_instant_is_no_rate():
    meter = RateMeter()
    meter.tick(3.0)
    meter.tick(3.0)
    assert meter.rate() == 0.0


def test_rate_meter_ticks_on_the_clock_by_default():
    meter = RateMeter()
    meter.tick()
    time.sleep(0.02)
    meter.tick()
    assert 0 < meter.rate() <= 1 / 0.02 + 1e-6


# --- compose ----------------------------------------------------------------------------------


def panels(height: int = 48, width: int = 64, grid_shape: tuple[int, int] = (12, 20), seed=0):
    rng = np.random.default_rng(seed)
    view = rng.integers(0, 256, (height, width, 3), np.uint8)
    overlay = rng.integers(0, 256, (height, width, 3), np.uint8)
    grid = rng.integers(0, 256, (*grid_shape, 4), np.uint8)
    return view, overlay, grid


def gap_band(height: int) -> np.ndarray:
    return np.broadcast_to(np.array(GAP_COLOR, np.uint8), (height, GAP, 3))


def test_compose_places_the_panels_side_by_side():
    view, overlay, grid = panels(48, 64, (12, 18))
    picture = compose(view, overlay, grid)
    box = round(GRID_BOX * 48)
    assert box == 72
    assert picture.dtype == np.uint8
    assert picture.shape == (48, 64 + GAP + 64 + GAP + box, 3)
    np.testing.assert_array_equal(picture[:, :64], view)
    np.testing.assert_array_equal(picture[:, 64 : 64 + GAP], gap_band(48))
    np.testing.assert_array_equal(picture[:, 64 + GAP : 128 + GAP], overlay)
    np.testing.assert_array_equal(picture[:, 128 + GAP : 128 + 2 * GAP], gap_band(48))
    # 18 × 12 cells in a 72 × 48 box: each cell 4 × 4 pixels, repeated (its alpha left out).
    expected = np.repeat(np.repeat(grid[..., :3], 4, axis=0), 4, axis=1)
    np.testing.assert_array_equal(picture[:, 128 + 2 * GAP :], expected)


@pytest.mark.parametrize(
    ("grid_shape", "scale", "offset"),
    [
        ((24, 12), 2, (0, 24)),  # tall: as high as the box, centred across
        ((4, 36), 2, (20, 0)),  # wide: as wide as the box, centred down
        ((3, 3), 16, (0, 12)),
    ],
)
def test_compose_fits_the_grid_into_its_box(grid_shape, scale, offset):
    view, overlay, grid = panels(48, 64, grid_shape)
    picture = compose(view, overlay, grid[..., :3])  # RGB grids too
    assert picture.shape == (48, 64 + GAP + 64 + GAP + 72, 3)
    panel = picture[:, 128 + 2 * GAP :]
    tiles = np.repeat(np.repeat(grid[..., :3], scale, axis=0), scale, axis=1)
    top, left = offset
    bottom, right = top + tiles.shape[0], left + tiles.shape[1]
    np.testing.assert_array_equal(panel[top:bottom, left:right], tiles)
    around = np.ones(panel.shape[:2], bool)
    around[top:bottom, left:right] = False
    assert around.any()
    np.testing.assert_array_equal(panel[around], np.broadcast_to(GAP_COLOR, (around.sum(), 3)))


def test_compose_gives_one_size_whatever_the_grid():
    shapes = {compose(*panels(60, 80, grid_shape)).shape for grid_shape in
              [(1, 1), (7, 300), (300, 7), (14, 14), (8, 64)]}  # fmt: skip
    assert shapes == {(60, 80 + GAP + 80 + GAP + 90, 3)}


# --- Recorder ---------------------------------------------------------------------------------


TIMES = [0.0, 0.04, 0.1, 0.25, 0.3, 0.517]
TOPK = [
    [(281, "tabby, tabby cat", 0.61), (285, 'Egyptian "cat"', 0.2), (7, "coq é", 1.5e-05)],
    [(1, "goldfish", 0.9), (2, "great white shark", 0.05), (3, "tiger shark", 0.01)],
]


def recorded_pictures(count: int, view_size=(64, 48)) -> list[np.ndarray]:
    pictures = []
    for index in range(count):
        view = shapes_frame(index, view_size)
        overlay = (255 - view).astype(np.uint8)
        grid = np.zeros((6, 8, 4), np.uint8)
        grid[..., 1] = 40 * index % 256
        grid[::2, ::2, 0] = 250
        grid[..., 3] = 255
        pictures.append(compose(view, overlay, grid))
    return pictures


def read_video(path: Path) -> list[tuple[float, int, int, np.ndarray]]:
    """(time, width, height, RGB pixels) of each frame, decoded by PyAV."""
    with av.open(str(path)) as container:
        return [
            (frame.time, frame.width, frame.height, frame.to_ndarray(format="rgb24"))
            for frame in container.decode(video=0)
        ]


def read_table(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as table:
        return list(csv.reader(table))


def everything_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))  # hidden files included


def record(path: Path, pictures, times=TIMES, **options) -> Recorder:
    recorder = Recorder(path, **options)
    for index, (picture, at) in enumerate(zip(pictures, times, strict=True)):
        recorder.write(3 * index, at, picture, TOPK[index % 2])
    return recorder


def test_a_recording_holds_the_frames_at_their_times_and_their_topk(tmp_path):
    pictures = recorded_pictures(len(TIMES))
    height, width = pictures[0].shape[:2]
    assert (height, width) == (48, 64 + GAP + 64 + GAP + 72)
    path = tmp_path / "session.mp4"
    recorder = record(path, pictures)
    assert recorder.frames == len(TIMES)
    written = recorder.close()
    assert written == [path, tmp_path / "session.csv"]
    assert everything_in(tmp_path) == ["session.csv", "session.mp4"]  # no .partial left

    frames = read_video(path)
    assert len(frames) == len(TIMES)
    assert [round(at * 1000) for at, *_ in frames] == [round(at * 1000) for at in TIMES]
    for (_, frame_width, frame_height, pixels), picture in zip(frames, pictures, strict=True):
        assert (frame_width, frame_height) == (width, height)
        assert np.abs(pixels.astype(int) - picture).mean() < 8  # lossy, but that picture
    # and not another one
    assert np.abs(frames[1][3].astype(int) - pictures[4]).mean() > 10

    rows = read_table(tmp_path / "session.csv")
    assert rows[0] == ["frame", "time", "rank", "class", "label", "probability"]
    assert len(rows) == 1 + 3 * len(TIMES)
    for row_number, row in enumerate(rows[1:]):
        index, rank = divmod(row_number, 3)
        class_index, label, probability = TOPK[index % 2][rank]
        assert int(row[0]) == 3 * index
        assert float(row[1]) == pytest.approx(TIMES[index], abs=1e-6)
        assert int(row[2]) == rank + 1
        assert int(row[3]) == class_index
        assert row[4] == label
        assert float(row[5]) == pytest.approx(probability, rel=1e-5)


def test_a_recording_of_odd_size_is_made_even(tmp_path):
    picture = shapes_frame(3, (75, 51))
    path = tmp_path / "odd.mkv"
    recorder = Recorder(path, csv_path=None)
    recorder.write(0, 0.0, picture)
    recorder.write(1, 0.1, picture)
    assert recorder.close() == [path]
    frames = read_video(path)
    assert len(frames) == 2
    _, width, height, pixels = frames[0]
    assert (width, height) == (76, 52)
    assert np.abs(pixels[:51, :75].astype(int) - picture).mean() < 8


def test_a_frame_of_another_size_is_fitted_into_the_first(tmp_path):
    first = np.full((60, 80, 3), (40, 180, 60), np.uint8)
    wider = np.full((60, 160, 3), (220, 40, 40), np.uint8)  # twice as wide: half as high
    path = tmp_path / "sizes.mp4"
    recorder = Recorder(path)
    recorder.write(0, 0.0, first, [(1, "a", 0.5)])
    recorder.write(1, 0.1, wider, [(2, "b", 0.5)])
    recorder.write(2, 0.2, first[:30, :40], [(3, "c", 0.5)])  # smaller: not enlarged
    assert recorder.close() == [path, tmp_path / "sizes.csv"]
    frames = read_video(path)
    assert [(width, height) for _, width, height, _ in frames] == [(80, 60)] * 3
    second = frames[1][3].astype(int)
    # The picture in the top half, the rest filled (rows near the edge blend: 4:2:0 chroma).
    assert np.abs(second[2:28] - (220, 40, 40)).mean() < 12
    assert np.abs(second[32:] - GAP_COLOR).mean() < 12
    third = frames[2][3].astype(int)
    assert np.abs(third[2:28, 2:38] - (40, 180, 60)).mean() < 12
    assert np.abs(third[34:, 44:] - GAP_COLOR).mean() < 12
    assert len(read_table(tmp_path / "sizes.csv")) == 4


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".avi", ".mov"])
def test_each_container_records(tmp_path, suffix):
    pictures = recorded_pictures(4)
    path = tmp_path / f"clip{suffix}"
    written = record(path, pictures, times=TIMES[:4]).close()
    assert written == [path, tmp_path / "clip.csv"]
    assert everything_in(tmp_path) == sorted(["clip.csv", f"clip{suffix}"])
    frames = read_video(path)
    assert len(frames) == 4
    assert [round(at * 1000) for at, *_ in frames] == [round(at * 1000) for at in TIMES[:4]]
    for (_, _, _, pixels), picture in zip(frames, pictures, strict=True):
        assert pixels.shape == picture.shape
        assert np.abs(pixels.astype(int) - picture).mean() < 10


def test_a_recording_to_an_unknown_container_is_refused(tmp_path):
    path = tmp_path / "session.png"
    with pytest.raises(RecordingError) as caught:
        Recorder(path)
    assert str(path) in str(caught.value)
    assert one_line(str(caught.value))
    assert everything_in(tmp_path) == []


@pytest.mark.parametrize("table", [True, None], ids=["with-table", "video-only"])
@pytest.mark.parametrize("folder", ["missing", "a-file"])
def test_a_recording_into_an_unwritable_folder_fails_and_leaves_nothing(tmp_path, folder, table):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = tmp_path / folder / "session.mp4"
    with pytest.raises(RecordingError) as caught:  # when made, or at the first frame
        record(path, recorded_pictures(1), times=TIMES[:1], csv_path=table)
    message = str(caught.value)
    assert str(tmp_path / folder / "session") in message
    assert one_line(message)
    assert everything_in(tmp_path) == ["a-file"]
    assert blocker.read_text() == "not a folder"


def test_discard_leaves_no_file(tmp_path):
    path = tmp_path / "session.mp4"
    recorder = record(path, recorded_pictures(3), times=TIMES[:3])
    assert any(name.startswith(".") for name in everything_in(tmp_path))  # being written
    recorder.discard()
    assert everything_in(tmp_path) == []
    recorder.write(9, 1.0, recorded_pictures(1)[0], TOPK[0])  # ignored
    assert recorder.close() == []
    assert everything_in(tmp_path) == []


def test_a_recording_of_no_frame_leaves_nothing(tmp_path):
    recorder = Recorder(tmp_path / "empty.mp4")
    assert recorder.close() == []
    assert everything_in(tmp_path) == []


def test_frames_written_after_close_are_ignored(tmp_path):
    path = tmp_path / "session.mkv"
    recorder = record(path, recorded_pictures(3), times=TIMES[:3])
    assert recorder.close() == [path, tmp_path / "session.csv"]
    table = (tmp_path / "session.csv").read_bytes()
    video = path.read_bytes()
    recorder.write(10, 2.0, recorded_pictures(1)[0], TOPK[0])
    assert recorder.frames == 3
    assert recorder.close() == []  # already closed
    assert (tmp_path / "session.csv").read_bytes() == table
    assert path.read_bytes() == video
    assert len(read_video(path)) == 3
    assert everything_in(tmp_path) == ["session.csv", "session.mkv"]


def test_a_recording_without_a_table(tmp_path):
    path = tmp_path / "session.mp4"
    written = record(path, recorded_pictures(2), times=TIMES[:2], csv_path=None).close()
    assert written == [path]
    assert everything_in(tmp_path) == ["session.mp4"]
    assert len(read_video(path)) == 2


def test_a_recording_with_its_table_elsewhere(tmp_path):
    (tmp_path / "tables").mkdir()
    path = tmp_path / "session.webm"
    table = tmp_path / "tables" / "topk.csv"
    written = record(path, recorded_pictures(2), times=TIMES[:2], csv_path=table).close()
    assert written == [path, table]
    assert everything_in(tmp_path) == ["session.webm", "tables"]
    assert everything_in(tmp_path / "tables") == ["topk.csv"]
    assert len(read_table(table)) == 1 + 2 * 3


def test_csv_path_for_is_beside_the_video(tmp_path):
    assert csv_path_for(tmp_path / "a.b.mp4") == tmp_path / "a.b.csv"
    assert csv_path_for("rec.webm") == Path("rec.csv")


def test_a_recording_can_be_closed_from_another_thread(tmp_path):
    """A close while frames are being written: the file holds whole frames, in order."""
    path = tmp_path / "threads.mkv"
    recorder = Recorder(path)
    picture = recorded_pictures(1)[0]
    stop = threading.Event()
    failures = []

    def writer() -> None:
        index = 0
        try:
            while not stop.is_set() and index < 500:
                recorder.write(index, index / 100, picture, TOPK[0])
                index += 1
        except Exception as failure:  # noqa: BLE001 (reported below)
            failures.append(failure)

    thread = threading.Thread(target=writer)
    thread.start()
    assert wait_until(lambda: recorder.frames >= 5)
    written = recorder.close()
    stop.set()
    thread.join(WAIT_S)
    assert not failures
    assert written == [path, tmp_path / "threads.csv"]
    frames = read_video(path)
    assert len(frames) == recorder.frames >= 5
    rows = read_table(tmp_path / "threads.csv")
    assert len(rows) == 1 + 3 * len(frames)
    assert [int(row[0]) for row in rows[1::3]] == list(range(len(frames)))


def test_a_recording_keeps_the_colours_in_place(tmp_path):
    """The composed picture survives the round trip as RGB (not BGR, not transposed)."""
    picture = np.zeros((40, 60, 3), np.uint8)
    picture[:, :20] = (230, 20, 20)
    picture[:, 20:40] = (20, 230, 20)
    picture[:, 40:] = (20, 20, 230)
    path = tmp_path / "colors.mp4"
    recorder = Recorder(path, csv_path=None)
    recorder.write(0, 0.0, picture)
    recorder.close()
    (_, width, height, pixels) = read_video(path)[0]
    assert (width, height) == (60, 40)
    for column, color in ((10, (230, 20, 20)), (30, (20, 230, 20)), (50, (20, 20, 230))):
        assert np.abs(pixels[5:35, column - 5 : column + 5].astype(int) - color).mean() < 12


def test_an_unusual_digit_names_no_camera(monkeypatch: pytest.MonkeyPatch) -> None:
    cameras = [Camera("/dev/video0", "Front camera", "v4l2")]
    monkeypatch.setattr("visualizer.core.live.sources.list_cameras", lambda: cameras)
    with pytest.raises(LiveSourceError, match=r"^²: no such file or camera \(cameras: 0: Front"):
        find_source("²")


def test_a_recording_without_an_encoder_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import av

    monkeypatch.setattr(av, "codecs_available", set())
    recorder = Recorder(tmp_path / "rec.mp4")
    with pytest.raises(RecordingError, match=r"rec\.mp4: cannot be written \(this FFmpeg has no"):
        recorder.write(0, 0.0, np.zeros((32, 32, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    recorder.write(1, 0.1, np.zeros((32, 32, 3), np.uint8))  # ignored: discarded


def test_a_frame_that_cannot_be_converted_ends_playing_with_the_reason(
    clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    import av

    def broken(_frame, *_args, **_kwargs):
        raise MemoryError("no room for the picture")

    monkeypatch.setattr(av.VideoFrame, "to_image", broken)
    player = Player(VideoSource(str(clip)), realtime=False)
    player.start()
    deadline = time.monotonic() + 10
    while not player.stats().ended and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = player.stats()
    assert stats.ended
    assert stats.error == f"{clip}: frame 0: no room for the picture"
    player.close()


def test_a_paused_camera_is_read_on_but_the_frames_it_passes_over_are_not_converted(
    clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    import av

    converted: list[int] = []
    to_image = av.VideoFrame.to_image

    def counting(frame, *args, **kwargs):
        converted.append(frame.pts)
        return to_image(frame, *args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "to_image", counting)
    source = VideoSource(str(clip))
    source.is_camera = True  # read as a camera's frames are: as they come, and on while paused
    player = Player(source)
    player.start(paused=True)
    deadline = time.monotonic() + 10
    while not player.stats().ended and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = player.stats()
    player.close()
    assert stats.ended  # every frame was read
    assert stats.error is None
    assert (stats.captured, converted) == (0, [])

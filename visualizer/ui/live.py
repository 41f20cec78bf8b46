"""The live view's controller: a camera or a video played, its newest frame analysed.

The source plays on the `Player`'s capture thread; each analysis runs on the worker's model
lane as an image's would (`live_jobs.analyse_frame`), one at a time: when one ends, the
newest frame captured meanwhile is analysed next and the others are dropped (latest wins),
so the view keeps up with the camera however slow the network. The event loop only hands
frames on and shows the replies.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from visualizer.ui.live_jobs import LiveFrame, analyse_frame, frame_picture
from visualizer.ui.worker import Reply

if TYPE_CHECKING:
    from visualizer.core.live import Player, RateMeter, Recorder, VideoSource
    from visualizer.ui.jobs import Picture
    from visualizer.ui.main_window import MainWindow

CLOSE_WAIT_S = 5.0  # the longest the window, closing, waits for a capture thread to end
STATS_INTERVAL_MS = 250  # how often the frame rates are shown again
LIVE_KINDS = ("live", "live_open", "live_record")  # the worker's replies this controller takes


class LiveController(QObject):
    """Plays a camera or video into ``window``: its bar, its analyses, its recording.

    ``active``: a source is open (playing, paused or ended); ``showing``: the window shows
    its frames (False while an image of the strip is shown instead).
    """

    frame_captured = Signal()  # from the capture thread: a frame waits in the player's slot
    frame_shown = Signal(object)  # LiveFrame, once the window shows it
    ended = Signal()  # the video's last frame has been shown, or the camera stopped
    failed = Signal(str)  # the source could not be opened or read

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.bar = window.live_bar
        self.player: Player | None = None
        self.recorder: Recorder | None = None
        self.spec: str | None = None  # what was asked for: a file, a camera, None: the first
        self.name = ""  # the source's name, for titles and frame names
        self.showing = False
        self.last: LiveFrame | None = None
        self.analysed = 0
        self._pending: int | None = None  # the generation of the analysis running, if any
        self._opening: int | None = None
        self._keys = itertools.count(-1, -1)  # live frames' picture keys: below the strip's
        self._rate: RateMeter | None = None
        self._refresh_wanted = False
        self._ended_said = False
        self._closing: list[Player] = []  # players stopped whose thread may still be ending
        self.playlist: list[str] = []  # the videos played one after the other (several dropped)
        self.position = 0  # the playing one's place in ``playlist``
        # A recording goes on through the videos of a list: the frames and seconds recorded
        # before the one playing are added to its frames' numbers and times.
        self._record_shift: tuple[int, float] = (0, 0.0)
        self._last_time = 0.0  # the latest time (s) of a frame of this source analysed
        self.frame_captured.connect(self._next, Qt.ConnectionType.QueuedConnection)
        self._timer = QTimer(self)
        self._timer.setInterval(STATS_INTERVAL_MS)
        self._timer.timeout.connect(self._show_stats)
        self.bar.play_clicked.connect(self.play)
        self.bar.pause_clicked.connect(self.pause)
        self.bar.step_clicked.connect(self.step)
        self.bar.snapshot_clicked.connect(self.snapshot)
        self.bar.record_toggled.connect(self._record_toggled)
        self.bar.stop_clicked.connect(self.stop)

    @property
    def active(self) -> bool:
        return self.player is not None

    def open(self, spec: str | None, *, record: str | None = None) -> None:
        """Play ``spec`` (a video file, a camera's number or name; None: the first camera),
        recording to ``record`` if given. Opening runs off the event loop (a camera can take
        a second); a failure is shown as one line and changes nothing else."""
        self._open(spec, record)

    def open_all(self, videos: list[str]) -> None:
        """Play ``videos`` one after the other, each from its start once the one before has
        ended (one that cannot be opened or read is one line, and the next plays)."""
        if len(videos) == 1:
            self.open(videos[0])
        else:
            self._play_next(list(videos), -1)

    @property
    def queue(self) -> list[str]:
        """The videos of the list played still to play after this one."""
        return self.playlist[self.position + 1 :]

    def _open(
        self,
        spec: str | None,
        record: str | None = None,
        *,
        in_list: tuple[list[str], int] | None = None,
        recording_goes_on: bool = False,
    ) -> None:
        """Open ``spec`` off the event loop (``in_list``: the list it is played from, and its
        place there; they replace the list played only once it opens; ``recording_goes_on``:
        the recording, if any, goes on into it, else it ends once ``spec`` opens)."""
        from visualizer.core.live import open_source  # noqa: PLC0415 (no torch, no PyAV yet)

        if self.player is not None and self.player.source.is_camera:
            self.stop()  # a camera opens once at a time: the one playing may be the one asked
        self._opening = self.window.worker.submit(
            "live_open",
            lambda _session: open_source(spec),
            lane="files",
            context=(spec, record, in_list, recording_goes_on),
        )

    def _play_next(
        self, videos: list[str], position: int, *, recording_goes_on: bool = False
    ) -> bool:
        """Open the video after ``position`` in ``videos`` (-1: the first); False: there is
        none."""
        if position + 1 >= len(videos):
            return False
        self._open(
            videos[position + 1],
            in_list=(videos, position + 1),
            recording_goes_on=recording_goes_on,
        )
        return True

    def replied(self, reply: Reply) -> None:
        """A reply of one of `LIVE_KINDS`, from the worker."""
        if reply.kind == "live_open":
            self._opened(reply)
        elif reply.kind == "live":
            self._analysed(reply)
        elif reply.kind == "live_record":
            self._recorded(reply)

    def _opened(self, reply: Reply) -> None:
        if reply.generation != self._opening or reply.skipped:
            if reply.value is not None:
                reply.value.close()  # overtaken by another source, or the window closing
            return
        self._opening = None
        spec, record, in_list, recording_goes_on = reply.context
        if reply.error is not None:
            self.window.show_error(reply.error)
            self.failed.emit(reply.error)
            if in_list is not None:  # one of a list: the next plays all the same
                going_on = self._play_next(*in_list, recording_goes_on=recording_goes_on)
            else:  # another source chosen: the list it interrupted, ended meanwhile, goes on
                going_on = self.player is not None and self._ended_said
                going_on = going_on and self._play_next(self.playlist, self.position)
            if recording_goes_on and not going_on:  # the list's last: nothing more to record
                self.stop_recording()
            return
        self.spec = spec
        self.playlist, self.position = in_list or ([], 0)
        from visualizer.core.live import Player, RateMeter  # noqa: PLC0415

        self.stop(replaced=True, keep_recording=recording_goes_on)
        source: VideoSource = reply.value
        self.name = source.name
        self.player = Player(source, on_frame=self.frame_captured.emit)
        self._rate = RateMeter()
        self.analysed = 0
        self.last = None
        self._last_time = 0.0
        self._ended_said = False
        self.showing = True
        description = source.describe()
        if self.playlist:
            description += f" · video {self.position + 1} of {len(self.playlist)}"
        self.window.live_started(description)
        self.bar.show_source(description)
        if record:
            self.start_recording(record)
        self._timer.start()
        self.player.start()

    def _next(self) -> None:
        """Analyse the newest frame, unless an analysis is running (it will ask when done)."""
        if self.player is None or self._pending is not None:
            return
        if not self.showing:  # an image of the strip is shown: a source that ends is said
            stats = self.player.stats()
            if stats.error or stats.ended:
                self.player.take()  # the frame left waiting will not be shown: it has ended
                self._ended()
            return
        frame = self.player.take()
        if frame is not None:
            self._analyse(frame)
        elif self.player.stats().ended:
            self._ended()

    def _analyse(self, frame, picture: Picture | None = None) -> None:
        window = self.window
        spec, options, methods = window.spec, window.live_options(), window.method_settings
        key, name, recorder = next(self._keys), self.name, self.recorder
        shift = self._record_shift
        if picture is not None:  # shown again: not recorded twice
            recorder = None

        def job(session):
            # The picture (and its thumbnail, for a snapshot) is made here, off the event loop.
            shown = picture or frame_picture(key, name, frame)
            return analyse_frame(
                session,
                spec,
                shown,
                options,
                frame,
                methods=methods,
                recorder=recorder,
                record_shift=shift,
            )

        self._pending = window.worker.submit(
            "live", job, latest_wins=False, context=(spec, frame, recorder)
        )

    def _analysed(self, reply: Reply) -> None:
        if reply.generation != self._pending:
            return  # from a source since stopped
        self._pending = None
        self._last_time = max(self._last_time, reply.context[1].time)
        if reply.error is not None:  # the network failed on it: the frame stays, paused
            self.window.show_error(f"{self.name}: {reply.error}")
            if self.player.stats().ended:
                self._ended()
            else:
                self.pause()
            return
        frame: LiveFrame = reply.value
        if frame.record_error and reply.context[2] is self.recorder is not None:
            self.window.show_error(frame.record_error)
            self.recorder = None  # discarded already
            self.bar.set_recording(None)
        if self.showing and reply.context[0] == self.window.spec:
            self.last = frame
            self.analysed += 1
            self._rate.tick()
            self.window.show_live(frame)
            self.frame_shown.emit(frame)
        if self._refresh_wanted:  # a control changed while this frame was being analysed
            self._refresh_wanted = False
            self.refresh()
            if self._pending is not None:
                return
        self._next()

    def refresh(self) -> None:
        """The view's options changed: show the frame on screen again with them (when paused;
        playing, the next frame shows them anyway)."""
        if self.player is None or not self.showing or self.last is None:
            return
        from visualizer.core.live import Frame  # noqa: PLC0415

        if not (self.player.paused or self.player.stats().ended):
            return
        if self._pending is not None:
            self._refresh_wanted = True  # done when the frame being analysed comes back
        else:
            shown = self.last
            self._analyse(Frame(shown.index, shown.time, shown.picture.image), shown.picture)

    def play(self) -> None:
        """Play (again, from the start, once a video or the list played has ended)."""
        if self.player is None:
            return
        if self._ended_said or self.player.stats().ended:
            # A recording started since the end goes on into the replay; a list not played to
            # its end goes on with its next video, else it plays from its first again.
            going_on = self.recorder is not None
            if not self.playlist:
                self._open(self.spec, recording_goes_on=going_on)
            elif not self._play_next(self.playlist, self.position, recording_goes_on=going_on):
                self._play_next(self.playlist, -1, recording_goes_on=going_on)  # from the first
            return
        self.showing = True
        self.window.live_started(None)
        self.player.resume()
        self.bar.set_state("playing")
        self._next()

    def pause(self) -> None:
        if self.player is not None and not self.player.stats().ended:
            self.player.pause()
            self.bar.set_state("paused")
            self._show_stats()

    def step(self) -> None:
        """Pause, and analyse one more frame."""
        if self.player is None or self.player.stats().ended:
            return
        self.showing = True
        self.window.live_started(None)
        self.player.step()
        self.bar.set_state("paused")

    def leave(self) -> None:
        """The window shows an image of the strip: pause, and show no frame until played."""
        if self.player is not None and self.showing:
            self.pause()
            self.showing = False

    def snapshot(self) -> Picture | None:
        """Add the frame on screen to the image strip (not selected): it is then analysed
        and exported as any image is. Returns its picture (None: no frame shown yet)."""
        if self.last is None:
            self.window.show_error("No frame to keep yet: the first is still being analysed.")
            return None
        picture = self.window.add_frame(self.last)
        self.window.statusBar().showMessage(
            f"Snapshot: {picture.name} added to the image strip", 8000
        )
        return picture

    def start_recording(self, path: str) -> None:
        """Record the frames analysed from now on to ``path`` (and its CSV beside it)."""
        from visualizer.core.live import Recorder, RecordingError  # noqa: PLC0415

        self.stop_recording()
        self._record_shift = (0, 0.0)
        try:
            self.recorder = Recorder(path)
        except RecordingError as error:
            self.window.show_error(str(error))
            self.bar.set_recording(None)
            return
        self.bar.set_recording(path)

    def stop_recording(self, *, wait: bool = False) -> None:
        """Finish the recording (off the event loop: the encoder flushes), or at once when
        ``wait`` (the window closing)."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        self.bar.set_recording(None)
        if wait:
            try:
                recorder.close()
            except OSError as error:
                self.window.show_error(str(error))
            return
        self.window.worker.submit(
            "live_record", lambda _session: recorder.close(), lane="files", latest_wins=False
        )

    def _record_toggled(self, on: bool) -> None:
        if not on:
            self.stop_recording()
            return
        path = self.window.ask_record_path(f"{Path(self.name).stem or 'live'}_live.mp4")
        if path:
            self.start_recording(path)
        else:
            self.bar.set_recording(None)

    def _recorded(self, reply: Reply) -> None:
        if reply.error is not None:
            self.window.show_error(reply.error)
        elif reply.value:
            names = " and ".join(path.name for path in reply.value)
            self.window.statusBar().showMessage(
                f"Recorded {names} in {reply.value[0].parent}", 10000
            )

    def _ended(self) -> None:
        if self._ended_said:
            return
        self._ended_said = True
        stats = self.player.stats()
        if stats.error:
            self.window.show_error(stats.error)
        self.bar.set_state("ended")
        self._show_stats()
        self._timer.stop()
        # The list goes on (unless another source is opening, or an image of the strip is
        # shown: Play then goes on with it), and so does its recording.
        goes_on = self.showing and self._opening is None and self.position + 1 < len(self.playlist)
        recording_goes_on = goes_on and self.recorder is not None
        if recording_goes_on:
            frames, seconds = self._record_shift
            interval = 1 / (self.player.source.rate or 30.0)
            self._record_shift = (frames + stats.captured, seconds + self._last_time + interval)
        else:
            self.stop_recording()
        self.ended.emit()
        if goes_on:
            self._play_next(self.playlist, self.position, recording_goes_on=recording_goes_on)

    def stop(
        self, *, wait: bool = False, replaced: bool = False, keep_recording: bool = False
    ) -> None:
        """Close the source (its thread and device), finish any recording (unless
        ``keep_recording``: the next video of a list goes on with it), hide the bar and show
        the strip's image again (unless ``replaced``: another source plays at once)."""
        player, self.player = self.player, None
        self._pending = self._opening = None
        if not replaced:
            self.playlist, self.position = [], 0
        self._refresh_wanted = False
        self._timer.stop()
        if player is not None:
            self._closing.append(player)
        for closing in list(self._closing):  # closing at once; waited for only at the end
            closing.close(CLOSE_WAIT_S if wait else 0.0)
            if wait or not closing.running:
                self._closing.remove(closing)
        if not keep_recording:
            self.stop_recording(wait=wait)
        if player is not None and not replaced:
            self.showing = False
            self.bar.hide()
            self.window.live_stopped()

    def describe_stats(self) -> str:
        """``"captured 25.0 fps · analysed 7.9 fps · dropped 41 · frame 120 (4.80 s) ·
        analysis 118 ms"``."""
        if self.player is None:
            return ""
        stats = self.player.stats()
        parts = []
        if stats.ended:
            parts.append(f"ended: {stats.captured} frames")
        elif stats.paused:
            parts.append("paused")
        else:
            parts.append(f"captured {stats.capture_fps:.1f} fps")
            parts.append(f"analysed {self._rate.rate():.1f} fps")
        parts.append(f"analysed {self.analysed}" if stats.ended or stats.paused else "")
        parts.append(f"dropped {stats.dropped}")
        if self.last is not None:
            parts.append(f"frame {self.last.index} ({self.last.time:.2f} s)")
            parts.append(f"analysis {self.last.analysis_ms:.0f} ms")
        return " · ".join(part for part in parts if part)

    def _show_stats(self) -> None:
        self.bar.show_stats(self.describe_stats())

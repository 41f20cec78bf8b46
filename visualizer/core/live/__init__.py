"""Live analysis: a camera or a video file, analysed frame by frame as it plays (Qt-free).

Examples::

    from visualizer.core import Analyzer
    from visualizer.core.live import Player, open_source

    analyzer = Analyzer("resnet101", weights="random", device="cpu")
    with Player(open_source("clip.mp4")) as player:   # open_source(None): the first camera
        player.start()
        while not player.stats().ended:
            frame = player.take()           # the newest frame; older ones waiting were dropped
            if frame is not None:
                print(frame.index, analyzer.analyze(frame.image).topk[0])
"""

from visualizer.core.live.player import Player, PlayerStats, RateMeter
from visualizer.core.live.recorder import Recorder, RecordingError, compose, csv_path_for
from visualizer.core.live.sources import (
    Camera,
    DecodedFrame,
    Frame,
    LiveSourceError,
    VideoSource,
    find_source,
    list_cameras,
    open_source,
)

__all__ = [
    "Camera",
    "DecodedFrame",
    "Frame",
    "LiveSourceError",
    "Player",
    "PlayerStats",
    "RateMeter",
    "Recorder",
    "RecordingError",
    "VideoSource",
    "compose",
    "csv_path_for",
    "find_source",
    "list_cameras",
    "open_source",
]

"""The dataset atlas: the images that most excite each channel, over a whole dataset.

Examples::

    from visualizer.core import Analyzer
    from visualizer.core.atlas import Atlas, build_index

    analyzer = Analyzer("resnet101", weights="imagenet")
    build_index(["photos/"], "photos-index", analyzer, layers=["C4", "C5"], top=9)
    atlas = Atlas("photos-index")
    atlas.top("C5", 17)[0].source  # the image that excites channel 17 of C5 most
"""

from visualizer.core.atlas.indexing import BACKENDS, IndexReport, build_index
from visualizer.core.atlas.reader import Atlas, TopImage
from visualizer.core.atlas.sources import SourceError, image_paths
from visualizer.core.atlas.store import IndexFileError

__all__ = [
    "BACKENDS",
    "Atlas",
    "IndexFileError",
    "IndexReport",
    "SourceError",
    "TopImage",
    "build_index",
    "image_paths",
]

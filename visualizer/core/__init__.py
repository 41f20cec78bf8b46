"""fmviz's engine, free of Qt: usable from a script, a notebook or the desktop app.

Examples::

    from visualizer.core import Analyzer, load_image

    analyzer = Analyzer("resnet101", weights="random", device="cpu")
    result = analyzer.analyze("photo.jpg")
    cam = analyzer.gradcam(result, stage="C5", target=None)
    ig = analyzer.attribute(result, "integrated-gradients", n_steps=32)
    print(analyzer.faithfulness(result, ig).deletion_auc)
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from visualizer.core.analysis import AnalysisResult, Analyzer
    from visualizer.core.attribution import GradCam
    from visualizer.core.attribution_methods import METHODS, Attribution, CancelledError
    from visualizer.core.device import DeviceError, resolve_device
    from visualizer.core.faithfulness import Faithfulness
    from visualizer.core.images import (
        ImageLoadError,
        LoadedImage,
        load_image,
        load_image_with_notes,
    )
    from visualizer.core.labels import Labels, LabelsError, read_labels
    from visualizer.core.layers import FeatureLayer
    from visualizer.core.preprocess import Preprocessing, PreprocessingError

# Where each name of the API lives. They load when first asked for (PEP 562), so that the
# subpackages that need no torch (``visualizer.core.live``'s sources) import without it.
_SOURCES = {
    "AnalysisResult": "analysis",
    "Analyzer": "analysis",
    "GradCam": "attribution",
    "METHODS": "attribution_methods",
    "Attribution": "attribution_methods",
    "CancelledError": "attribution_methods",
    "DeviceError": "device",
    "resolve_device": "device",
    "Faithfulness": "faithfulness",
    "ImageLoadError": "images",
    "LoadedImage": "images",
    "load_image": "images",
    "load_image_with_notes": "images",
    "Labels": "labels",
    "LabelsError": "labels",
    "read_labels": "labels",
    "FeatureLayer": "layers",
    "Preprocessing": "preprocess",
    "PreprocessingError": "preprocess",
}


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "METHODS",
    "AnalysisResult",
    "Analyzer",
    "Attribution",
    "CancelledError",
    "DeviceError",
    "Faithfulness",
    "FeatureLayer",
    "GradCam",
    "ImageLoadError",
    "Labels",
    "LabelsError",
    "LoadedImage",
    "Preprocessing",
    "PreprocessingError",
    "load_image",
    "load_image_with_notes",
    "read_labels",
    "resolve_device",
]

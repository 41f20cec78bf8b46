"""fmviz's engine, free of Qt: usable from a script, a notebook or the desktop app.

Examples::

    from visualizer.core import Analyzer, load_image

    analyzer = Analyzer("resnet101", weights="random", device="cpu")
    result = analyzer.analyze("photo.jpg")
    cam = analyzer.gradcam(result, stage="C5", target=None)
    ig = analyzer.attribute(result, "integrated-gradients", n_steps=32)
    print(analyzer.faithfulness(result, ig).deletion_auc)
"""

from visualizer.core.analysis import AnalysisResult, Analyzer
from visualizer.core.attribution import GradCam
from visualizer.core.attribution_methods import METHODS, Attribution, CancelledError
from visualizer.core.device import DeviceError, resolve_device
from visualizer.core.faithfulness import Faithfulness
from visualizer.core.images import ImageLoadError, LoadedImage, load_image, load_image_with_notes
from visualizer.core.labels import Labels, LabelsError, read_labels
from visualizer.core.layers import FeatureLayer
from visualizer.core.preprocess import Preprocessing, PreprocessingError

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

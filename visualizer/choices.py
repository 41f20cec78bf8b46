"""The names a user chooses from, shared by the command line, the window and the engine.

Plain data and no torch, so that the command line and the window can offer them before the
networks load.
"""

from __future__ import annotations

MODELS = ("vgg16", "resnet101")  # also the order of compare mode: left, right
MODEL_LABELS = {"vgg16": "VGG16", "resnet101": "ResNet101"}
STAGES = ("C1", "C2", "C3", "C4", "C5")
HEAD = "head"  # the layers after C5: pooling and classifier
GROUPS = (*STAGES, HEAD)  # what a network's layers are grouped into
DEVICES = ("auto", "cpu", "cuda", "mps")
COLORMAPS = ("viridis", "inferno", "magma", "plasma", "cividis", "turbo", "gray")
SCALES = {
    "channel": "min–max per channel",
    "stage": "one min–max across the stage",
}
ORDERS = {
    "index": "by channel index",
    "mean": "by mean activation, highest first",
    "gradcam": "by Grad-CAM channel weight, highest first",
}

# Attribution methods (``visualizer.core.attribution_methods`` runs them through Captum).
METHOD_TITLES = {
    "gradcam": "Grad-CAM",
    "guided-gradcam": "Guided Grad-CAM",
    "saliency": "Saliency",
    "integrated-gradients": "Integrated Gradients",
    "occlusion": "Occlusion",
    "smoothgrad-saliency": "SmoothGrad (Saliency)",
    "smoothgrad-ig": "SmoothGrad (Integrated Gradients)",
}
METHODS = tuple(METHOD_TITLES)
LAYER_METHODS = ("gradcam", "guided-gradcam")  # the methods that attribute at a layer
_INTEGRATED = ("n_steps", "baselines", "method", "internal_batch_size")
_NOISE = ("nt_samples", "nt_samples_batch_size", "stdevs")
# The parameters of Captum's ``attribute`` a user may set for each method, under Captum's
# names. The others are fmviz's to set (``relu_attributions``, ``abs``, ``nt_type``) or would
# change what Captum returns (``return_convergence_delta``, ``attr_dim_summation``,
# ``attribute_to_layer_input``).
METHOD_PARAMETERS = {
    "gradcam": (),
    "guided-gradcam": ("interpolate_mode",),
    "saliency": (),
    "integrated-gradients": _INTEGRATED,
    "occlusion": ("sliding_window_shapes", "strides", "baselines", "perturbations_per_eval"),
    "smoothgrad-saliency": _NOISE,
    "smoothgrad-ig": (*_NOISE, *_INTEGRATED),
}

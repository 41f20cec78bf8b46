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

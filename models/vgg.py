"""VGG16: configuration D of Simonyan & Zisserman (2015), laid out as torchvision lays it out.

The parameter names are torchvision's (``features.0.weight`` … ``classifier.6.bias``), so its
ImageNet checkpoint loads with ``strict=True``. Each of the five stages C1–C5 is the ReLU after
the last convolution of a block, just before that block's max pooling.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models.stages import stage_index, stage_map

# Output channels of the 3×3 convolutions in each of the five blocks.
BLOCK_WIDTHS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def make_features(
    block_widths: tuple[tuple[int, ...], ...], in_channels: int = 3
) -> tuple[nn.Sequential, list[int]]:
    """The convolutional trunk, and the index of each block's last ReLU (the stage taps)."""
    layers: list[nn.Module] = []
    taps: list[int] = []
    for widths in block_widths:
        for width in widths:
            layers.append(nn.Conv2d(in_channels, width, kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=True))
            in_channels = width
        taps.append(len(layers) - 1)
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers), taps


class VGG16(nn.Module):
    """VGG16 classifier returning logits ``(N, num_classes)``; ``stages`` maps C1–C5 to modules.

    Args:
        num_classes: outputs of the head (``classifier.6``): 1000 for ImageNet, any N ≥ 1.
        dropout: the classifier's dropout probability (inactive in eval mode).
        in_channels: channels of the input: 3 (RGB), or 1 for a grey-scale network.
    """

    arch = "vgg16"

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.features, self._stage_taps = make_features(BLOCK_WIDTHS, in_channels)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self._init_weights()

    @property
    def stages(self) -> Mapping[str, nn.Module]:
        return stage_map([self.features[index] for index in self._stage_taps])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self._head(x)

    def forward_from(self, stage: str, activation: torch.Tensor) -> torch.Tensor:
        """Logits computed from the output of ``stage``: the network after that stage."""
        rest = self.features[self._stage_taps[stage_index(stage)] + 1 :]
        return self._head(rest(activation))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)

    def _init_weights(self) -> None:
        # The same initialisation as torchvision, in the same order, so that a seeded build of
        # ours equals a seeded build of torchvision's.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

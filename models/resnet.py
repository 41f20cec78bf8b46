"""ResNet101 (He et al., 2016) in torchvision's "v1.5" form: the stride sits on the 3×3 convolution.

The parameter names are torchvision's (``conv1.weight``, ``layer3.22.bn2.running_mean``,
``fc.bias`` …), so its ImageNet checkpoints load with ``strict=True``. Stage C1 is the stem
(conv1 → bn1 → relu → maxpool); C2–C5 are ``layer1`` … ``layer4``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models.stages import stage_index, stage_map

# Bottleneck blocks in layer1 … layer4 for ResNet101; every block has weights of its own.
LAYER_BLOCKS: tuple[int, int, int, int] = (3, 4, 23, 3)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution, unpadded and without bias (batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1, without bias (batch norm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided) → 1×1 expand, plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + shortcut)


def make_layer(in_channels: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    """One stage: a first block that may downsample and project, then ``blocks - 1`` more."""
    out_channels = width * Bottleneck.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
        )
    layers = [Bottleneck(in_channels, width, stride, downsample)]
    layers += [Bottleneck(out_channels, width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet101(nn.Module):
    """ResNet101 classifier returning logits ``(N, num_classes)``; ``stages`` maps C1–C5.

    Args:
        num_classes: outputs of the head (``fc``): 1000 for ImageNet, any N ≥ 1 fine-tuned.
        in_channels: channels of the input: 3 (RGB), or 1 for a grey-scale network.
    """

    arch = "resnet101"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = make_layer(64, 64, LAYER_BLOCKS[0], stride=1)
        self.layer2 = make_layer(256, 128, LAYER_BLOCKS[1], stride=2)
        self.layer3 = make_layer(512, 256, LAYER_BLOCKS[2], stride=2)
        self.layer4 = make_layer(1024, 512, LAYER_BLOCKS[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        self._init_weights()

    @property
    def stages(self) -> Mapping[str, nn.Module]:
        return stage_map([self.maxpool, self.layer1, self.layer2, self.layer3, self.layer4])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self._head(x)

    def forward_from(self, stage: str, activation: torch.Tensor) -> torch.Tensor:
        """Logits computed from the output of ``stage``: the network after that stage."""
        x = activation
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4)[stage_index(stage) :]:
            x = layer(x)
        return self._head(x)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def _init_weights(self) -> None:
        # torchvision's initialisation, in its order (the fc layer keeps PyTorch's default).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

"""ResNets (He et al., 2016) with a pluggable activation.

Layer for layer the layout of torchvision's ResNet (v1.5: the Bottleneck strides in its
3x3 conv), so that with ReLU the parameter counts match torchvision's exactly and a
reader can check one against the other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from flowers_sweep.models.activations import make_activation


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


def projection(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """The 1x1 shortcut, needed only when the block changes shape."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convs; ResNet-18 and -34 stack these."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, activation: str) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = make_activation(activation)
        self.conv2 = conv3x3(width, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = projection(in_ch, out_ch, stride)
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4); ResNet-50 and deeper stack these."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, activation: str) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = make_activation(activation)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = make_activation(activation)
        self.conv3 = conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = projection(in_ch, out_ch, stride)
        self.act3 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(out + identity)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}
STAGE_WIDTHS = (64, 128, 256, 512)


class ResNet(nn.Module):
    """Stem, four stages of blocks, global average pool, linear classifier."""

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        num_classes: int,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block={block!r} is not one of: {', '.join(BLOCKS)}")
        block_cls = BLOCKS[block]
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            make_activation(activation),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, in_ch = [], 64
        for i, (width, depth) in enumerate(zip(STAGE_WIDTHS, layers, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(block_cls(in_ch, width, stride if j == 0 else 1, activation))
                in_ch = width * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation for convs, unit-gain batch norm: the paper's recipe.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))

"""ResNets (He et al., 2016) with a pluggable activation.

Layer for layer the layout of torchvision's ResNet (v1.5: the Bottleneck strides in its
3x3 conv), under torchvision's parameter names (`conv1`, `bn1`, `layer1`..`layer4`,
`downsample`, `fc`): with ReLU a torchvision state_dict loads strictly and gives the same
logits, and a model trained here loads into torchvision's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from flowers_sweep.models.activations import ActLayer, act_layer, make_activation


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


def downsample(in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """The 1x1 projection shortcut, needed only when the block changes shape."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convs; ResNet-18 and -34 stack these."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, activation: str | ActLayer) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = make_activation(activation)
        self.conv2 = conv3x3(width, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = downsample(in_ch, out_ch, stride)
        self.act2 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4); ResNet-50 and deeper stack these."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, activation: str | ActLayer) -> None:
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
        self.downsample = downsample(in_ch, out_ch, stride)
        self.act3 = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
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
    """Stem, four stages of blocks, global average pool, linear classifier.

    block: `basic` (ResNet-18, -34) or `bottleneck` (ResNet-50 and deeper).
    layers: blocks per stage, four integers >= 1 ([2, 2, 2, 2] is ResNet-18).
    activation: a short name (`relu`, `gelu`; see activations.ACTIVATIONS) or a callable
        returning a fresh module, as timm's `act_layer`.
    Input (N, 3, H, W) float with H, W >= 16 (five halvings leave 1 x 1); output
    (N, num_classes) logits.
    Raises ValueError for a block or layers outside those, ConfigError for an unknown
    activation name.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        num_classes: int,
        activation: str | ActLayer = "relu",
    ) -> None:
        super().__init__()
        activation = act_layer(activation)  # a name is looked up once, not per block
        if block not in BLOCKS:
            raise ValueError(f"block={block!r} is invalid: allowed values are {', '.join(BLOCKS)}")
        if len(layers) != 4 or not all(isinstance(n, int) and n >= 1 for n in layers):
            raise ValueError(
                f"layers={list(layers)} is invalid: must be four block counts >= 1, "
                "e.g. [2, 2, 2, 2]"
            )
        block_cls = BLOCKS[block]
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act = make_activation(activation)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        for i, (width, depth) in enumerate(zip(STAGE_WIDTHS, layers, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(depth):
                blocks.append(block_cls(in_ch, width, stride if j == 0 else 1, activation))
                in_ch = width * block_cls.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self._register_load_state_dict_pre_hook(upgrade_legacy_keys)
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
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# Names of this project's first releases, before it took torchvision's.
_LEGACY: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"^stem\.0\."), "conv1."),
    (re.compile(r"^stem\.1\."), "bn1."),
    (re.compile(r"^stages\.(\d)\."), lambda m: f"layer{int(m.group(1)) + 1}."),
    (re.compile(r"\.shortcut\."), ".downsample."),
)


def upgrade_legacy_keys(state: dict, prefix: str, *args: object) -> None:
    """Rename the keys of an older checkpoint or model.pt in place, so runs started
    before the rename still resume and their weights still load."""
    for key in [k for k in state if k.startswith(prefix)]:
        new = key[len(prefix) :]
        for pattern, replacement in _LEGACY:
            new = pattern.sub(replacement, new)
        if prefix + new != key:
            state[prefix + new] = state.pop(key)

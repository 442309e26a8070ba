"""The report's "Example" baseline: two conv layers, then three fully connected ones."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from flowers_sweep.models.activations import ActLayer, make_activation
from flowers_sweep.models.shapes import conv_output_size


class BaselineCNN(nn.Module):
    """Conv-activation-pool twice, then an MLP; sized for the input at build time.

    The flatten width depends on the image size, so it is computed with the report's
    output-size formula instead of being hard-coded for one resolution.
    """

    def __init__(
        self,
        num_classes: int,
        image_size: int,
        activation: str | ActLayer = "relu",
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 5,
        hidden: Sequence[int] = (120, 84),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, size = 3, image_size
        for out_ch in channels:
            layers += [
                nn.Conv2d(in_ch, out_ch, kernel_size),
                make_activation(activation),
                nn.MaxPool2d(2),
            ]
            size = conv_output_size(conv_output_size(size, kernel_size), 2, stride=2)
            in_ch = out_ch
        if size < 1:
            raise ValueError(
                f"image_size={image_size} is too small for the baseline CNN "
                f"(kernel {kernel_size}, {len(channels)} conv+pool layers)"
            )
        self.features = nn.Sequential(*layers)
        mlp: list[nn.Module] = []
        width = in_ch * size * size
        for h in hidden:
            mlp += [nn.Linear(width, h), make_activation(activation)]
            width = h
        mlp.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))

"""Models by name: the config's `model` group maps onto these constructors."""

from __future__ import annotations

from typing import Any

from torch import nn

from flowers_sweep.models.cnn import BaselineCNN
from flowers_sweep.models.resnet import ResNet

ARCHS = ("resnet", "baseline_cnn")


def build_model(model_cfg: Any, num_classes: int, image_size: int) -> nn.Module:
    """Build from the `model` config group (a mapping with an `arch` key)."""
    arch = model_cfg["arch"]
    if arch == "resnet":
        return ResNet(
            block=model_cfg["block"],
            layers=list(model_cfg["layers"]),
            num_classes=num_classes,
            activation=model_cfg["activation"],
        )
    if arch == "baseline_cnn":
        return BaselineCNN(
            num_classes=num_classes,
            image_size=image_size,
            activation=model_cfg["activation"],
            channels=list(model_cfg["channels"]),
            kernel_size=model_cfg["kernel_size"],
            hidden=list(model_cfg["hidden"]),
        )
    raise ValueError(f"model.arch={arch!r} is not one of: {', '.join(ARCHS)}")


def model_label(model_cfg: Any) -> str:
    """The architecture's name (`resnet18`), true even when `model.layers` is overridden."""
    if model_cfg["arch"] != "resnet":
        return str(model_cfg["arch"])
    per_block = 2 if model_cfg["block"] == "basic" else 3
    depth = per_block * sum(model_cfg["layers"]) + 2  # + stem conv + fc
    return f"resnet{depth}"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ARCHS", "BaselineCNN", "ResNet", "build_model", "count_parameters", "model_label"]

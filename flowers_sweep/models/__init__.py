"""Models from the `model` config node: any `_target_`, built with what the data gives.

The node names a class or function (`flowers_sweep.models.ResNet`, the hub builders
`torchvision_model` and `timm_model`, or a user's own) and its arguments. The framework
adds `num_classes`, and `image_size` and `in_chans` where the signature takes them;
`model.activation` arrives as a short name or, from a `_target_` node, as a factory.
`model.weights` is read by the framework (models/weights.py), never passed on.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from flowers_sweep.config import targets
from flowers_sweep.models.cnn import BaselineCNN
from flowers_sweep.models.hub import timm_model, torchvision_model
from flowers_sweep.models.resnet import ResNet

# Keys of the model node the framework reads itself, never passed to the constructor.
OWN_KEYS = ("weights",)
IN_CHANS = 3  # every dataset here arrives as RGB (a greyscale choice is replicated to 3)
SUPPLIED = ("num_classes", "image_size", "in_chans")  # from the data, where taken


def model_arguments(model_cfg: Any, num_classes: int, image_size: int) -> dict[str, Any]:
    """What the framework passes besides the node's own keys; each only where taken."""
    supplied: dict[str, Any] = {
        "num_classes": num_classes,
        "image_size": image_size,
        "in_chans": IN_CHANS,
    }
    activation = model_cfg.get("activation")
    if targets.is_node(activation):  # a layer factory: each call a fresh module
        supplied["activation"] = instantiate(activation, _partial_=True, _convert_="all")
    return supplied


def build_model(model_cfg: Any, num_classes: int, image_size: int) -> nn.Module:
    """The model the node describes, for `num_classes` classes of image_size-px images.

    Raises ConfigError (an unknown activation or hub model name) and whatever the
    constructor raises for values it refuses (config.validate turns those into one line).
    """
    supplied = model_arguments(model_cfg, num_classes, image_size)
    own = (*OWN_KEYS, *(k for k in supplied if k in model_cfg))
    return targets.build(model_cfg, key="model", own=own, **supplied)


def build_on_meta(model_cfg: Any, num_classes: int, image_size: int) -> nn.Module:
    """build_model on the meta device: shapes without memory or initialisation, for
    checks and summaries. A constructor that computes with tensors (torchvision's RegNets
    size their stages so) cannot run there; it is built on the CPU and moved."""
    try:
        with torch.device("meta"):
            return build_model(model_cfg, num_classes, image_size)
    except NotImplementedError:  # "Cannot copy out of meta tensor"
        return build_model(model_cfg, num_classes, image_size).to("meta")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def convolutional(model: nn.Module) -> bool:
    """Whether convolutions hold most of the model's weights (the ResNets, EfficientNets,
    not the baseline CNN, whose linear layers dominate, nor a ViT)."""
    conv = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters()
    )
    return 2 * conv > count_parameters(model)


__all__ = [
    "OWN_KEYS",
    "SUPPLIED",
    "BaselineCNN",
    "ResNet",
    "build_model",
    "build_on_meta",
    "convolutional",
    "count_parameters",
    "timm_model",
    "torchvision_model",
]

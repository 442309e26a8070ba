"""Optimizers and LR schedules from `_target_` nodes, and the schedules the presets name.

`optimizer` is any `torch.optim` class (or anything with its signature), called with the
model's parameters; `scheduler` any epoch-stepped schedule, called with the optimizer
and, where its signature takes `epochs`, the run's length. Both nodes are `_partial_`:
the config holds the hyperparameters, the run supplies the rest. The functions below are
the presets whose numbers depend on the run's length; they return torch's own classes.

The optimizer node's `norm_weight_decay` (OWN_KEYS) is the framework's, not the
constructor's: set (often 0), normalisation layers' parameters and every bias get that
weight decay in a parameter group of their own (`param_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from flowers_sweep.config import targets

Schedule = lr_scheduler.LRScheduler
# Keys of the optimizer node the framework reads itself rather than pass to the constructor.
OWN_KEYS = ("norm_weight_decay",)
# Normalisation layers, as torchvision's reference scripts list them (references/
# classification/utils.py, set_weight_decay): batch, instance, layer, group norm.
NORM_LAYERS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


def build_optimizer(
    params: nn.Module | Iterable[nn.Parameter], node: Any
) -> torch.optim.Optimizer:
    """`node` (a `_target_` node such as torch.optim.Adam) called with the parameters
    of `params` (a model, or its parameters); with `node.norm_weight_decay` set and a
    model given, called with `param_groups` instead."""
    norm_decay = node.get("norm_weight_decay")
    if isinstance(params, nn.Module):
        params = params.parameters() if norm_decay is None else param_groups(params, norm_decay)
    return targets.build(node, params, key="optimizer", own=OWN_KEYS)


def is_no_decay(module: nn.Module, name: str) -> bool:
    """Whether `module`'s own parameter `name` is a normalisation layer's or a bias."""
    return isinstance(module, NORM_LAYERS) or name == "bias"


def param_groups(model: nn.Module, norm_weight_decay: float) -> list[dict[str, Any]]:
    """The model's parameters in two groups, in the model's order: the rest (at the
    optimizer's own weight_decay), then normalisation layers' parameters and all biases
    at `norm_weight_decay`; an empty group is left out.

    The idea of torchvision's reference `set_weight_decay` (norm layers apart) and timm's
    `param_groups_weight_decay` (biases too): decaying a scale or a shift towards 0 only
    shrinks what the next layer can undo, so the recipes exclude them (Goyal et al.,
    2017, "no bias decay"). A parameter shared by two modules lands where it first shows.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if is_no_decay(module, name) else decay).append(param)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": norm_weight_decay}]
    return [g for g in groups if g["params"]]


def build_scheduler(optimizer: torch.optim.Optimizer, node: Any, epochs: int) -> Schedule:
    """`node` called with the optimizer, and `epochs` where it takes them; stepped once
    per epoch, as in the report."""
    return targets.build(node, optimizer, key="scheduler", epochs=epochs)


def milestone_epochs(milestones: Sequence[float], epochs: int) -> list[int]:
    """The epochs after which the rate decays.

    Integers are epochs. Fractions in (0, 1) are shares of the run, the report's choice
    being a shape (decay at 40% and 70% of training) rather than epoch numbers: [0.4, 0.7]
    is [40, 70] at 100 epochs and [2, 4] at 5, rounded half up, at least epoch 1.
    """
    if all(isinstance(m, int) for m in milestones):
        return [int(m) for m in milestones]
    return [max(1, math.floor(m * epochs + 0.5)) for m in milestones]


def multistep(
    optimizer: torch.optim.Optimizer, milestones: Sequence[float], gamma: float, epochs: int
) -> lr_scheduler.MultiStepLR:
    """torch's MultiStepLR, milestones as epochs or fractions of the run (milestone_epochs)."""
    return lr_scheduler.MultiStepLR(
        optimizer, milestones=milestone_epochs(list(milestones), epochs), gamma=gamma
    )


def constant(optimizer: torch.optim.Optimizer) -> lr_scheduler.LambdaLR:
    """The learning rate as set, every epoch (`scheduler=none`)."""
    return lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def cosine(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    warmup_epochs: int = 0,
    eta_min: float = 0.0,
    warmup_start_factor: float = 0.1,
) -> Schedule:
    """Cosine annealing (Loshchilov & Hutter, 2017, without restarts) from the set rate
    to eta_min over the epochs after an optional linear warm-up.

    Epoch e (0-based) after warm-up trains at
    eta_min + (lr - eta_min) * (1 + cos(pi * (e - warmup_epochs) / (epochs - warmup_epochs))) / 2;
    during warm-up the rate rises linearly from warmup_start_factor * lr to lr
    (torch's LinearLR, then CosineAnnealingLR, chained by SequentialLR).

    Raises ValueError unless 0 <= warmup_epochs < epochs.
    """
    if not 0 <= warmup_epochs < epochs:
        raise ValueError(
            f"warmup_epochs={warmup_epochs} is invalid: must be in [0, trainer.epochs) = "
            f"[0, {epochs})"
        )
    decay = lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs - warmup_epochs, eta_min=eta_min
    )
    if warmup_epochs == 0:
        return decay
    warmup = lr_scheduler.LinearLR(
        optimizer, start_factor=warmup_start_factor, total_iters=warmup_epochs
    )
    return lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[warmup_epochs])

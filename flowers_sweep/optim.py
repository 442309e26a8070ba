"""Optimizers and LR schedules from `_target_` nodes, and the schedules the presets name.

`optimizer` is any `torch.optim` class (or anything with its signature), called with the
model's parameters; `scheduler` any epoch-stepped schedule, called with the optimizer
and, where its signature takes `epochs`, the run's length. Both nodes are `_partial_`:
the config holds the hyperparameters, the run supplies the rest. The functions below are
the presets whose numbers depend on the run's length; they return torch's own classes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.optim import lr_scheduler

from flowers_sweep.config import targets

Schedule = lr_scheduler.LRScheduler


def build_optimizer(params: Iterable[torch.nn.Parameter], node: Any) -> torch.optim.Optimizer:
    """`node` (a `_target_` node such as torch.optim.Adam) called with `params`."""
    return targets.build(node, params, key="optimizer")


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

"""Optimizers and LR schedulers, built from the `optimizer` and `scheduler` groups."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("multistep", "none")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: Any) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov,
        )
    raise ValueError(f"optimizer.name={cfg.name!r} is not one of: {', '.join(OPTIMIZERS)}")


def milestone_epochs(milestones: Sequence[float], epochs: int) -> list[int]:
    """The epochs after which the rate decays.

    Integers are epochs. Fractions in (0, 1) are shares of the run, the report's choice
    being a shape (decay at 40% and 70% of training) rather than epoch numbers: [0.4, 0.7]
    is [40, 70] at 100 epochs and [2, 4] at 5, rounded half up, at least epoch 1.
    """
    if all(isinstance(m, int) for m in milestones):
        return [int(m) for m in milestones]
    return [max(1, math.floor(m * epochs + 0.5)) for m in milestones]


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Any, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch, as in the report."""
    if cfg.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=milestone_epochs(list(cfg.milestones), epochs), gamma=cfg.gamma
        )
    if cfg.name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"scheduler.name={cfg.name!r} is not one of: {', '.join(SCHEDULERS)}")

"""Optimizers and LR schedulers, built from the `optimizer` and `scheduler` groups."""

from __future__ import annotations

from collections.abc import Iterable
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


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Any
) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch, as in the report."""
    if cfg.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma
        )
    if cfg.name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"scheduler.name={cfg.name!r} is not one of: {', '.join(SCHEDULERS)}")

"""Datasets, brought into the batches the training loop consumes (`Loaders`)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from flowers_sweep.data import flowers102
from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.geometry import describe_augment
from flowers_sweep.data.loaders import Loaders, ReferenceBatches, TensorBatches
from flowers_sweep.data.roles import ROLES, ByRole
from flowers_sweep.data.sources import (
    DataSource,
    cache_dir_of,
    class_count,
    load_splits,
    open_source,
)
from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.errors import ConfigError
from flowers_sweep.trainer.hardware import available_cpus

PIPELINES = ("cached", "reference")
log = logging.getLogger(__name__)


def is_flowers102(dataset_cfg: Any) -> bool:
    """Whether the node is Flowers102, the one dataset with the report's per-image
    pipeline (`dataset.pipeline=reference`) to compare against."""
    return dataset_cfg.get("_target_") == f"{flowers102.__name__}.Flowers102"


def reference_loaders(cfg: Any, device: torch.device, workers: int) -> Loaders:
    """The report's per-image pipeline over the same files, for comparison."""
    dataset_cfg, batch_size = cfg.dataset, cfg.trainer.batch_size
    mean, std = normalisation(dataset_cfg, None)
    parts = []
    for role in ROLES:
        train = role == "train"
        transform = flowers102.reference_transform(dataset_cfg, cfg.augment, train=train)
        dataset = flowers102.open_split(dataset_cfg, dataset_cfg.splits[role], transform=transform)
        size = batch_size if train else 2 * batch_size
        parts.append(ReferenceBatches(dataset, size, device, workers))
    return Loaders(*parts, class_names=flowers102.class_names(), mean=mean, std=std)


def on_device(split: Split, device: torch.device) -> Split:
    """A GPU holds a whole uint8 split easily (Flowers102 at 224 px: under 1 GB), so
    batches never cross the bus and augmentation runs where the model does."""
    if device.type == "cpu":
        return split
    images, labels = split.images.to(device), split.labels.to(device)
    return Split(images, labels, split.image_sizes)  # image_sizes stay on the host


def normalisation(dataset_cfg: Any, train: Split | None) -> tuple[list[float], list[float]]:
    """`dataset.mean` and `dataset.std`; `auto` (either) means that one from the training
    split (`Split.channel_stats`; a constant channel's std taken as 1). Computed at
    every set-up, not cached (12.8 s for Flowers102's training role on a 2-core CPU).

    Raises:
        ConfigError: `auto` where no training split is at hand (the reference pipeline).
    """
    mean, std = dataset_cfg.mean, dataset_cfg.std
    if mean != "auto" and std != "auto":
        return list(mean), list(std)
    if train is None:
        raise ConfigError(
            "dataset.mean=auto is invalid with dataset.pipeline=reference: give the numbers"
        )
    auto_mean, auto_std = train.channel_stats()
    if 0.0 in auto_std:  # a constant channel: centre it, but dividing by 0 gives nan
        log.warning("a channel of the training split is constant: its std is taken as 1")
        auto_std = [v if v > 0 else 1.0 for v in auto_std]
    used_mean = auto_mean if mean == "auto" else list(mean)
    used_std = auto_std if std == "auto" else list(std)
    log.info("normalisation (auto from the training split): mean %s std %s", used_mean, used_std)
    return used_mean, used_std


def batch_augment(
    cfg: Any, layout: torch.memory_format, train: Split | None = None
) -> BatchAugment:
    """The config's augmentation and normalisation, producing batches in `layout`."""
    mean, std = normalisation(cfg.dataset, train)
    return BatchAugment.from_config(cfg.augment, mean, std, layout)


def decode_workers(num_workers: int | str) -> int:
    """`trainer.num_workers`: "auto" means one thread per CPU this job may use."""
    if num_workers == "auto":
        return available_cpus()
    return int(num_workers)


def build_loaders(
    cfg: Any, device: torch.device, layout: torch.memory_format = torch.contiguous_format
) -> Loaders:
    """Train, val and test batches for a composed run config, in the model's layout.
    Logs the augmentation the training batches get (`describe_augment`), one line."""
    workers = decode_workers(cfg.trainer.num_workers)
    log.info("augmentation: %s", describe_augment(cfg.augment))
    if cfg.dataset.get("pipeline", "cached") == "reference":
        return reference_loaders(cfg, device, workers)
    splits = load_splits(cfg.dataset, workers)
    aug = batch_augment(cfg, layout, splits.train)
    batch_size = cfg.trainer.batch_size
    return Loaders(
        TensorBatches(on_device(splits.train, device), batch_size, device, aug.train_view),
        TensorBatches(on_device(splits.val, device), 2 * batch_size, device, aug.eval_view),
        TensorBatches(on_device(splits.test, device), 2 * batch_size, device, aug.eval_view),
        class_names=splits.class_names,
        mean=aug.mean,
        std=aug.std,
    )


__all__ = [
    "PIPELINES",
    "ROLES",
    "ByRole",
    "DataSource",
    "Loaders",
    "Split",
    "Splits",
    "batch_augment",
    "build_loaders",
    "cache_dir_of",
    "class_count",
    "decode_workers",
    "describe_augment",
    "is_flowers102",
    "load_splits",
    "open_source",
]

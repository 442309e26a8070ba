"""Datasets, brought into the batches the training loop consumes (`Loaders`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from flowers_sweep.data import flowers102
from flowers_sweep.data.augment import BatchAugment
from flowers_sweep.data.cache import default_cache_dir
from flowers_sweep.data.loaders import Loaders, ReferenceBatches, TensorBatches
from flowers_sweep.data.roles import ROLES, ByRole
from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.data.synthetic import load_synthetic
from flowers_sweep.paths import user_path

DATASETS = ("synthetic", "flowers102")
PIPELINES = ("cached", "reference")


def cache_dir_of(dataset_cfg: Any) -> Path:
    path = dataset_cfg.get("cache_dir")
    return user_path(path) if path else default_cache_dir()


def load_splits(dataset_cfg: Any, workers: int = 1) -> Splits:
    """The three splits as uint8 tensors, from the on-disk cache when possible."""
    cache_dir = cache_dir_of(dataset_cfg)
    if dataset_cfg.name == "synthetic":
        return load_synthetic(dataset_cfg, cache_dir)
    if dataset_cfg.name == "flowers102":
        parts = [flowers102.load_split(dataset_cfg, r, workers, cache_dir) for r in ROLES]
        return Splits(*parts, class_names=flowers102.class_names())
    raise ValueError(f"dataset.name={dataset_cfg.name!r} is not one of: {', '.join(DATASETS)}")


def reference_loaders(cfg: Any, device: torch.device, workers: int) -> Loaders:
    """The report's per-image pipeline over the same files, for comparison."""
    dataset_cfg, batch_size = cfg.dataset, cfg.trainer.batch_size
    parts = []
    for role in ROLES:
        train = role == "train"
        transform = flowers102.reference_transform(dataset_cfg, cfg.augment, train=train)
        dataset = flowers102.open_split(dataset_cfg, dataset_cfg.splits[role], transform=transform)
        size = batch_size if train else 2 * batch_size
        parts.append(ReferenceBatches(dataset, size, device, workers))
    return Loaders(*parts, class_names=flowers102.class_names())


def on_device(split: Split, device: torch.device) -> Split:
    """A GPU holds a whole uint8 split easily (Flowers102 at 224 px: under 1 GB), so
    batches never cross the bus and augmentation runs where the model does."""
    if device.type == "cpu":
        return split
    images, labels = split.images.to(device), split.labels.to(device)
    return Split(images, labels, split.image_sizes)  # image_sizes stay on the host


def batch_augment(cfg: Any, layout: torch.memory_format) -> BatchAugment:
    """The config's augmentation and normalisation, producing batches in `layout`."""
    augment, dataset = cfg.augment, cfg.dataset
    return BatchAugment(
        dataset.mean, dataset.std, augment.vflip_p, augment.rotation, augment.grayscale, layout
    )


def build_loaders(
    cfg: Any, device: torch.device, layout: torch.memory_format = torch.contiguous_format
) -> Loaders:
    """Train, val and test batches for a composed run config, in the model's layout."""
    workers = flowers102.decode_workers(cfg.trainer.num_workers)
    if cfg.dataset.get("pipeline", "cached") == "reference":
        return reference_loaders(cfg, device, workers)
    splits = load_splits(cfg.dataset, workers)
    aug = batch_augment(cfg, layout)
    batch_size = cfg.trainer.batch_size
    return Loaders(
        TensorBatches(on_device(splits.train, device), batch_size, device, aug.train_view),
        TensorBatches(on_device(splits.val, device), 2 * batch_size, device, aug.eval_view),
        TensorBatches(on_device(splits.test, device), 2 * batch_size, device, aug.eval_view),
        class_names=splits.class_names,
    )


__all__ = [
    "DATASETS",
    "PIPELINES",
    "ROLES",
    "ByRole",
    "Loaders",
    "Split",
    "Splits",
    "batch_augment",
    "build_loaders",
    "load_splits",
]

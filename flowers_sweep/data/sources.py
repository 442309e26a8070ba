"""A dataset is a `_target_` node; this module turns any such node into `Splits`.

The node's `_target_` is either

- a **data source**: a class whose construction reads nothing and which has
  `class_names() -> list[str]` (cheap: a folder listing at most) and
  `load(cache_dir, workers) -> Splits`. The built-in datasets are such classes
  (`SyntheticFlowers`, `Flowers102`, `ImageFolder`, `CIFAR10`, `CIFAR100`); or
- **any callable** (the user's own function) returning `Splits`, or the three splits as
  torchvision-style datasets (a mapping `{"train": ds, "val": ds, "test": ds}` or a
  3-sequence, each item `(PIL image or CHW tensor, int label)`), which are decoded once
  into the uint8 cache here.

The framework reads some keys itself (`OWN`: normalisation, cache, pipeline, the
cross-validation fold of folds.py) and passes
`image_size`, `num_classes`, `cache_dir` and `workers` to the target only where its
signature names them (`targets.build`). The class count is known before any image is
read: the node's `num_classes`, else the source's `class_names()`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.config import targets
from flowers_sweep.data.cache import cached, default_cache_dir
from flowers_sweep.data.folds import with_folds
from flowers_sweep.data.roles import ROLES
from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.errors import ConfigError
from flowers_sweep.paths import path_text, user_path

log = logging.getLogger(__name__)
# Keys of a dataset node the framework reads and never passes on.
OWN = ("mean", "std", "cache_dir", "pipeline", "num_classes", "image_size", "folds", "fold")
# What the framework passes where the target's signature names it.
SUPPLIED = ("image_size", "num_classes", "cache_dir", "workers")
PREPARED_VERSION = 1  # the cache format of datasets brought in from torchvision-style ones


@runtime_checkable
class DataSource(Protocol):
    """What a built-in dataset is: cheap to construct, then listed, then loaded."""

    def class_names(self) -> list[str]: ...

    def load(self, cache_dir: Path, workers: int) -> Splits: ...


def is_source_class(fn: Any) -> bool:
    """Whether a `_target_` names a data source class (construction reads nothing)."""
    return (
        isinstance(fn, type)
        and callable(getattr(fn, "load", None))
        and callable(getattr(fn, "class_names", None))
    )


def cache_dir_of(dataset_cfg: Any) -> Path:
    path = dataset_cfg.get("cache_dir")
    return user_path(path) if path else default_cache_dir()


def supplied(dataset_cfg: Any, workers: int = 1) -> dict[str, Any]:
    return {
        "image_size": dataset_cfg.get("image_size"),
        "num_classes": dataset_cfg.get("num_classes"),
        "cache_dir": cache_dir_of(dataset_cfg),
        "workers": workers,
    }


def open_source(dataset_cfg: Any, workers: int = 1) -> DataSource:
    """The node's data source, built without reading any image.

    Raises:
        ConfigError: the target is a plain function (it would load the data now), or
            its constructor refuses the node's values (one line, naming the key).
    """
    fn = targets.locate("dataset", dataset_cfg)
    if not is_source_class(fn):
        raise ConfigError(
            f"dataset._target_={dataset_cfg['_target_']!r} is a function, not a data source "
            f"class: it can only be called to load the data"
        )
    try:
        return targets.build(dataset_cfg, key="dataset", own=OWN, **supplied(dataset_cfg, workers))
    except (ValueError, TypeError) as exc:
        raise targets.constructor_error("dataset", dataset_cfg, exc) from None


def class_count(dataset_cfg: Any) -> int:
    """How many classes the data has, known before any image is read.

    Raises:
        ConfigError: neither the node's `num_classes` nor its source gives the count,
            or they disagree.
    """
    given = dataset_cfg.get("num_classes")
    fn = targets.locate("dataset", dataset_cfg)
    if is_source_class(fn):
        names = open_source(dataset_cfg).class_names()
        if given is not None and given != len(names):
            raise ConfigError(
                f"dataset.num_classes={given} is invalid: the data has {len(names)} classes "
                f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); leave it unset"
            )
        return len(names)
    if given is None:
        raise ConfigError(
            f"dataset.num_classes is missing: {dataset_cfg['_target_']} is a function, so "
            f"the class count must be given before it runs (add +dataset.num_classes=N)"
        )
    return int(given)


def load_splits(dataset_cfg: Any, workers: int = 1) -> Splits:
    """The three splits as uint8 tensors, from the on-disk cache when possible; with
    `dataset.folds` set, fold `dataset.fold` of the pooled training and validation
    splits validates and the rest trains (folds.with_folds; the test split as it is).

    Raises:
        ConfigError: the target returned something that is not data, or data that does
            not match the node (image size, class count), or too few images for the folds.
    """
    fn = targets.locate("dataset", dataset_cfg)
    if is_source_class(fn):
        splits = open_source(dataset_cfg, workers).load(cache_dir_of(dataset_cfg), workers)
    else:
        made = targets.build(dataset_cfg, key="dataset", own=OWN, **supplied(dataset_cfg, workers))
        splits = bring_in(made, dataset_cfg, workers)
    return with_folds(checked(splits, dataset_cfg), dataset_cfg)


def checked(splits: Any, dataset_cfg: Any) -> Splits:
    """`splits`, after checking it is what the rest of the pipeline assumes."""
    target = dataset_cfg.get("_target_")
    if not isinstance(splits, Splits):
        raise ConfigError(
            f"dataset._target_={target!r} returned {type(splits).__name__}, not Splits or "
            f"three torchvision-style datasets (train, val, test)"
        )
    size = dataset_cfg.get("image_size")
    for role, split in splits.items():
        images = split.images
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ConfigError(
                f"dataset._target_={target!r}: its {role} images are {tuple(images.shape)} "
                f"{images.dtype}; expected (N, 3, H, W) uint8"
            )
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            raise ConfigError(
                f"dataset.image_size={size} is invalid: the {role} images are "
                f"{images.shape[-2]} x {images.shape[-1]}"
            )
        if len(split.labels) != len(images):
            raise ConfigError(
                f"dataset._target_={target!r}: {role} has {len(images)} images but "
                f"{len(split.labels)} labels"
            )
        if len(images) == 0:
            raise ConfigError(
                f"dataset: the {role} split is empty ({target}); every split needs images "
                f"(an image folder: at least 3 images a class, or files in {role}/)"
            )
        low, high = int(split.labels.min()), int(split.labels.max())
        if low < 0 or high >= splits.num_classes:
            raise ConfigError(
                f"dataset._target_={target!r}: a {role} label is {low if low < 0 else high}; "
                f"labels are class indices 0..{splits.num_classes - 1}"
            )
    present = set(splits.train.labels.unique().tolist())
    absent = [name for i, name in enumerate(splits.class_names) if i not in present]
    if absent:
        shown = path_text(", ".join(absent[:5]))  # folder names: any bytes
        log.warning("%d class(es) have no training image: %s", len(absent), shown)
    given = dataset_cfg.get("num_classes")
    if given is not None and given != splits.num_classes:
        raise ConfigError(
            f"dataset.num_classes={given} is invalid: the data has {splits.num_classes} classes"
        )
    return splits


def bring_in(made: Any, dataset_cfg: Any, workers: int) -> Splits:
    """A user target's result as Splits: as is, or decoded once into the cache."""
    if isinstance(made, Splits):
        return made
    if isinstance(made, Mapping) and set(made) >= set(ROLES):
        parts = [made[r] for r in ROLES]
    elif isinstance(made, Sequence) and len(made) == 3:
        parts = list(made)
    else:
        return made  # `checked` names what it is
    size = dataset_cfg.get("image_size")
    if size is None:
        raise ConfigError(
            f"dataset.image_size is missing: {dataset_cfg['_target_']} returned datasets of "
            f"images, which are brought to one square size (add +dataset.image_size=N)"
        )
    node = (
        OmegaConf.to_container(dataset_cfg, resolve=True)
        if isinstance(dataset_cfg, DictConfig)
        else dict(dataset_cfg)
    )
    spec = {
        "version": PREPARED_VERSION,
        "node": {k: v for k, v in node.items() if k not in OWN},
        "size": size,
        "counts": [len(p) for p in parts],
    }

    def build() -> dict:
        entry = {}
        for role, part in zip(ROLES, parts, strict=True):
            log.info("decoding %d %s images of %s", len(part), role, node["_target_"])
            entry[role] = decode_dataset(part, size)
        return entry

    entry = cached(cache_dir_of(dataset_cfg), "prepared", spec, build)
    names = getattr(parts[0], "classes", None)
    if names is None:
        count = dataset_cfg.get("num_classes") or int(entry["train"][1].max()) + 1
        names = [str(i) for i in range(count)]
    splits = [Split(*entry[role]) for role in ROLES]
    return Splits(*splits, class_names=[str(n) for n in names])


def decode_dataset(dataset: Any, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (image, label) of a torchvision-style dataset as (N, 3, size, size) uint8,
    (N,) int64 labels and (N, 2) original (width, height)."""
    from flowers_sweep.data.images import to_square

    n = len(dataset)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    sizes = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        image, label = dataset[i]
        try:
            images[i], sizes[i] = to_square(image, size)
        except ValueError as exc:
            raise ConfigError(f"dataset: item {i} of {type(dataset).__name__}: {exc}") from None
        labels[i] = int(label)
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(sizes)

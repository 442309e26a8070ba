"""K-fold cross-validation over any dataset: `dataset.folds=K dataset.fold=i`.

A framework step, applied to the `Splits` every source gives (sources.load_splits), so
synthetic flowers, Flowers102, an image folder, CIFAR and a user's own dataset are cut
the same way:

1. The training and validation splits are pooled (training first, then validation, each
   in its own order). The test split is **fixed**: every fold is judged on the same
   test images, so the folds' test accuracies differ by what trained them only.
2. Each class of the pool is taken on its own: its members, in pool order, are permuted
   by `numpy.random.default_rng([seed, label]).permutation` (the rule of stratified.py),
   and the j-th of the permuted members goes to fold `(j + label) mod K`. Each fold so
   holds `floor(n / K)` or `ceil(n / K)` of a class of n (within one image of n / K), a
   class's cut depends on the seed, its label and its own members only, and the
   classes' odd images start at different folds, so the folds' sizes stay close too.
3. Fold i is the validation split; the other K - 1 folds are the training split. Each
   lists its images in pool order.

The seed is the dataset's own cut seed, `dataset.seed`, where the node has an integer
one (synthetic, image folders, CIFAR), else 0 (Flowers102, a user's node without one):
the same folds for every training `seed`, so seeds and folds cross.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from flowers_sweep.data.splits import Split, Splits
from flowers_sweep.errors import ConfigError

log = logging.getLogger(__name__)


def fold_numbers(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each pooled image's fold (step 2 of the module's rule).

    Args:
        labels: (N,) integer class labels, >= 0, in pool order.
        folds: K, an integer >= 2.
        seed: a non-negative integer; the same seed gives the same folds.

    Returns:
        (N,) int64 fold numbers in 0..K-1.

    Raises:
        ValueError: folds < 2.
    """
    if folds < 2:
        raise ValueError(f"folds={folds} is invalid: an integer >= 2")
    labels = np.asarray(labels, dtype=np.int64)
    numbers = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        shuffled = members[np.random.default_rng([seed, int(label)]).permutation(len(members))]
        numbers[shuffled] = (np.arange(len(members)) + int(label)) % folds
    return numbers


def fold_indices(
    labels: np.ndarray, folds: int, fold: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions into the pooled `labels` of fold `fold`'s training and validation
    images, each an ascending int64 array; together they are 0..N-1, once each.

    Raises:
        ValueError: folds < 2, or fold outside 0..folds-1.
    """
    if not 0 <= fold < folds:
        raise ValueError(f"fold={fold} is invalid: an integer from 0 to {folds - 1}")
    numbers = fold_numbers(labels, folds, seed)
    return np.flatnonzero(numbers != fold), np.flatnonzero(numbers == fold)


def pooled(first: Split, second: Split) -> Split:
    """Two splits as one, `first`'s images then `second`'s (image sizes kept where both
    have them)."""
    sizes = None
    if first.image_sizes is not None and second.image_sizes is not None:
        sizes = torch.cat([first.image_sizes, second.image_sizes])
    return Split(
        torch.cat([first.images, second.images]), torch.cat([first.labels, second.labels]), sizes
    )


def taken(split: Split, positions: np.ndarray) -> Split:
    """The images of `split` at `positions`, in that order."""
    index = torch.from_numpy(positions)
    sizes = None if split.image_sizes is None else split.image_sizes[index]
    return Split(split.images[index], split.labels[index], sizes)


def cut_seed(dataset_cfg: Any) -> int:
    """The folds' seed: the node's integer `seed` (its own cut's), else 0."""
    seed = dataset_cfg.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0


def with_folds(splits: Splits, dataset_cfg: Any) -> Splits:
    """`splits` with fold `dataset.fold` of `dataset.folds` as its validation split and
    the other folds as its training split (the module's rule); as they are when
    `dataset.folds` is null or absent. The keys' values are checked before any data is
    read (config/validate.py); logs the fold and the three sizes, one line.

    Raises:
        ConfigError: the fold leaves the training or validation split empty (too few
            pooled images, or classes too small, for K folds).
    """
    folds = dataset_cfg.get("folds")
    if folds is None:
        return splits
    fold, seed = int(dataset_cfg.get("fold") or 0), cut_seed(dataset_cfg)
    pool = pooled(splits.train, splits.val)
    train, val = fold_indices(pool.labels.cpu().numpy(), int(folds), fold, seed)
    if len(train) == 0 or len(val) == 0:
        empty = "training" if len(train) == 0 else "validation"
        raise ConfigError(
            f"dataset.folds={folds} is invalid: fold {fold} leaves the {empty} split empty "
            f"({len(pool)} pooled training and validation images); use fewer folds"
        )
    log.info(
        "cross-validation: fold %d of %d (seed %d) validates, %d images; the other folds "
        "train, %d; the test split is fixed, %d",
        fold,
        folds,
        seed,
        len(val),
        len(train),
        len(splits.test),
    )
    return Splits(
        taken(pool, train), taken(pool, val), splits.test, class_names=splits.class_names
    )

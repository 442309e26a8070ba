"""Seeded, stratified splits: each class cut by the same fractions.

Used by `ImageFolder` (one folder of class folders cut into train/val/test) and by the
CIFAR sources (validation carved from the official training set).

The rule, exactly:

1. Each class is taken on its own. Its members, in the order given (the caller sorts
   them: file paths, or positions in the official set), are permuted by
   `numpy.random.default_rng([seed, label]).permutation`: a class's cut depends on the
   seed, its label and its own members only, so adding an image to one class leaves the
   others' cuts as they were.
2. A class of n members gets `floor(n * f)` in each split (f its fraction, n * f first
   rounded to 9 decimals so 0.1 * 50 is 5, not 4.999...); the members left over go one
   each to the splits with the largest remainders `n * f - floor(n * f)`, ties to the
   earlier split (train before val before test): largest-remainder rounding, so the
   counts sum to n and each is within one of n * f.
3. A class with at least as many members as there are splits then gets at least one in
   each: while a split has none, one member moves to it from the split that has the
   most (ties: the earlier). Smaller classes keep what step 2 gave (often all in train).
4. The permuted members are dealt out in split order (the first counts[0] to the first
   split, ...), and each split lists its members in ascending order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

TOLERANCE = 1e-6  # how far from 1 the fractions' sum may be (0.8 + 0.1 + 0.1 in floats)


def check_fractions(key: str, value: Any, count: int) -> tuple[float, ...]:
    """`value` as `count` fractions, each in (0, 1), summing to 1.

    Raises:
        ValueError: one line starting `key=value is invalid: ...` (so the framework
            can name it `dataset.key=...`).
    """
    shown = list(value) if isinstance(value, (list, tuple)) else value
    problem = f"{key}={shown!r} is invalid: {count} fractions, each > 0, summing to 1"
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != count:
        raise ValueError(problem)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(problem)
    fractions = tuple(float(v) for v in value)
    if not all(0 < f < 1 for f in fractions) or abs(sum(fractions) - 1) > TOLERANCE:
        raise ValueError(problem)
    return fractions


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """How many of a class's `n` members each split gets (steps 2 and 3 of the rule)."""
    exact = [round(n * f, 9) for f in fractions]
    counts = [math.floor(x) for x in exact]
    remainders = [x - c for x, c in zip(exact, counts, strict=True)]
    order = sorted(range(len(counts)), key=lambda i: (-remainders[i], i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= len(counts):
        while 0 in counts:
            donor = max(range(len(counts)), key=lambda i: (counts[i], -i))
            counts[donor] -= 1
            counts[counts.index(0)] += 1
    return counts


def stratified_split(
    labels: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Positions into `labels`, one int64 array per split, each ascending.

    Args:
        labels: (N,) integer class labels, >= 0.
        fractions: one per split, each > 0, summing to 1 (see `check_fractions`).
        seed: a non-negative integer; the same seed gives the same cut.

    Returns:
        len(fractions) disjoint arrays whose union is 0..N-1 (the rule in the module
        docstring).
    """
    labels = np.asarray(labels, dtype=np.int64)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        shuffled = members[np.random.default_rng([seed, int(label)]).permutation(len(members))]
        start = 0
        for part, count in zip(parts, split_counts(len(members), fractions), strict=True):
            part.append(shuffled[start : start + count])
            start += count
    return [np.sort(np.concatenate(p)) if p else np.empty(0, np.int64) for p in parts]

"""Early stopping (`trainer.early_stop_patience`, `trainer.early_stop_metric`).

The decision is read off the epochs' rows (metrics.csv, also in the checkpoint's
progress), never kept in a counter of its own: a resumed run decides exactly as the
uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# The per-epoch numbers a run records (metrics.csv) that can stop it, and whether larger
# is better.
EARLY_STOP_METRICS = {"val_acc": True, "val_loss": False, "train_acc": True, "train_loss": False}


def epochs_without_improvement(rows: Sequence[Mapping[str, float]], metric: str) -> int:
    """Epochs since `metric` last improved strictly on its best so far (0: the last row
    is the best, or there are no rows); ties do not count as improvement.

    Raises KeyError for a metric not in EARLY_STOP_METRICS.
    """
    larger = EARLY_STOP_METRICS[metric]
    best: float | None = None
    since = 0
    for row in rows:
        value = float(row[metric])
        if best is None or (value > best if larger else value < best):
            best, since = value, 0
        else:
            since += 1
    return since


def should_stop(rows: Sequence[Mapping[str, float]], patience: int | None, metric: str) -> bool:
    """Whether a run whose epochs so far are `rows` stops now: `patience` epochs have
    passed without `metric` improving (patience None: never). As in Keras's and
    Lightning's EarlyStopping with min_delta 0."""
    if patience is None:
        return False
    return epochs_without_improvement(rows, metric) >= patience

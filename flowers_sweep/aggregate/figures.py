"""The report's figures, drawn with seaborn: loss curves, accuracy per case and the
learning-rate schedules, and `draw_each`, which writes each on its own so that one
that cannot be drawn leaves the others."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flowers_sweep.atomic import atomic_write

log = logging.getLogger(__name__)
# Figures show at most this many cases (the best by mean test accuracy) and summarise
# the rest, so they stay readable, and under matplotlib's size limit, at any scale.
FIGURE_CASES = 12
PALE_BLUE, DARK_BLUE = "#9ecae1", "#08306b"  # the figures' two colours


def save_figure(fig: Any, path: Path) -> None:
    """A figure as a PNG, written atomically (a reader never sees half a file)."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"))


def shown_cases(results: pd.DataFrame) -> tuple[list[str], str]:
    """The cases the figures draw, and a note for their titles when that is not all.

    A small sweep shows every case in its own order; a large one its FIGURE_CASES best
    by mean test accuracy, best first (results.csv has every case).
    """
    if len(results) <= FIGURE_CASES:
        return results["case"].tolist(), ""
    best = results.sort_values("test_acc_mean", ascending=False, kind="stable")
    note = f"the {FIGURE_CASES} best of {len(results)} cases by mean test accuracy"
    return best["case"].head(FIGURE_CASES).tolist(), note


def plot_loss_curves(curves: pd.DataFrame, path: Path, note: str = "") -> None:
    """One panel per case: train and validation loss per epoch, a band of std over seeds."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    grid = sns.relplot(
        data=curves,
        x="epoch",
        y="loss",
        hue="split",
        col="case",
        col_wrap=min(curves["case"].nunique(), 4),
        kind="line",
        errorbar="sd",
        height=3.6,
        aspect=1.5,
        facet_kws={"sharey": True},
    )
    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.set_axis_labels("epoch", "cross-entropy loss")
    what = f", {note}" if note else ""
    grid.figure.suptitle(f"Training and validation loss{what} (band: std over seeds)", y=1.03)
    save_figure(grid.figure, path)


def plot_accuracy(
    runs_df: pd.DataFrame, path: Path, results: pd.DataFrame, cases: list[str], note: str = ""
) -> None:
    """Bars for the shown cases; with a note (a large sweep), a second panel beside them
    gives every case's mean, so the rest are summarised rather than dropped."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    done = runs_df[(runs_df["status"] == "completed") & runs_df["case"].isin(cases)].copy()
    done["test accuracy (%)"] = 100 * done["test_acc"].astype(float)
    n = len(cases)
    width = max(6.0, 1.3 * n + 2)
    if note:
        fig, (ax, rest) = plt.subplots(
            1, 2, figsize=(width + 4, 4.5), sharey=True, width_ratios=[width, 4]
        )
        sns.histplot(y=100 * results["test_acc_mean"], ax=rest, color=PALE_BLUE)
        rest.set_title(f"all {len(results)} case means")
    else:
        fig, ax = plt.subplots(figsize=(width, 4.5))
    y, order = "test accuracy (%)", cases
    sns.barplot(
        data=done, x="case", y=y, errorbar="sd", ax=ax, order=order, color=PALE_BLUE, capsize=0.15
    )
    sns.stripplot(data=done, x="case", y=y, ax=ax, order=order, color=DARK_BLUE, size=5)
    what = f": {note}" if note else " per case"
    ax.set_title(f"Test accuracy{what} (bar: mean, whisker: std, dots: seeds)")
    ax.set_xlabel("case")
    ax.tick_params(axis="x", rotation=20 if n > 4 else 0)
    save_figure(fig, path)
    plt.close(fig)


def plot_lr_schedule(curves: pd.DataFrame, path: Path, note: str = "") -> None:
    """The learning rate per epoch on a log axis, one line per distinct schedule."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    lr = curves[curves["split"] == "train"].drop_duplicates(["schedule", "epoch"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    marker = "o" if lr["epoch"].max() <= 30 else None
    sns.lineplot(
        data=lr, x="epoch", y="lr", hue="schedule", drawstyle="steps-post", marker=marker, ax=ax
    )
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    what = f" (schedules of {note})" if note else ""
    ax.set_title(f"Learning rate per epoch, one line per distinct schedule{what}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate (log scale)")
    save_figure(fig, path)
    plt.close(fig)


def draw_each(figures: Sequence[tuple[str, Callable[[Path], None]]], out: Path) -> list[str]:
    """Each figure on its own: one that cannot be drawn is reported, the others written.

    A figure that failed is removed rather than left from an earlier aggregation, where
    it would silently disagree with the tables beside it.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed or wanted
    import matplotlib.pyplot as plt

    problems = []
    for name, draw in figures:
        try:
            draw(out / name)
        except Exception as exc:
            (out / name).unlink(missing_ok=True)
            problems.append(f"{out / name} not written: {type(exc).__name__}: {exc}")
            log.warning("%s", problems[-1])
        finally:
            plt.close("all")
    return problems

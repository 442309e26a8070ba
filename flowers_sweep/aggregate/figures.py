"""The report's figures, drawn with seaborn: loss curves, accuracy per case, the
learning-rate schedules and the settings against the result (parallel coordinates, in
matplotlib), each a `matplotlib.figure.Figure` of its own, and `draw_each`, which
writes each on its own so that one that cannot be drawn leaves the others.

No figure goes through pyplot and nothing switches matplotlib's backend: each is built
as `Figure(...)` and drawn with seaborn's axes-level functions, so building them in a
notebook leaves its backend and its open figures as they were.
"""

from __future__ import annotations

import logging
import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from flowers_sweep.aggregate.markdown import plural
from flowers_sweep.atomic import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
# Figures show at most this many cases (the best by mean test accuracy) and summarise
# the rest, so they stay readable, and under matplotlib's size limit, at any scale.
FIGURE_CASES = 12
PALE_BLUE, DARK_BLUE = "#9ecae1", "#08306b"  # the figures' two colours
MARKERS_UP_TO = 30  # epochs: up to this many, each epoch's point is marked
PANEL_COLUMNS = 2  # loss panels per row: the figure stays readable at page width
# Accuracy bars' tick labels: lines of at most this many characters (a bar is 1.3
# inches wide), at most this many lines; and about how many title characters an inch
# holds, so that a long title wraps instead of running off the figure.
LABEL_CHARS, LABEL_LINES, TITLE_CHARS_PER_INCH = 16, 4, 9
PANEL_TITLE_CHARS = 44  # a loss panel's title (its case) per line


def new_figure(width: float, height: float) -> Figure:
    """A figure of its own (inches), not pyplot's: no backend, no open-figure list."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


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


def epoch_axis(ax: Axes, epochs: pd.Series) -> None:
    """Whole epochs on the x axis; a single epoch centred on its one tick (not an axis
    from 0.945 to 1.050)."""
    from matplotlib.ticker import MaxNLocator

    if epochs.empty:
        return
    low, high = int(epochs.min()), int(epochs.max())
    if low == high:
        ax.set_xlim(low - 0.5, high + 0.5)
        ax.set_xticks([low])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def marker_for(epochs: pd.Series) -> str | None:
    """A marker on every point when there are few epochs: one epoch is one point, and a
    line through one point draws nothing."""
    return "o" if epochs.nunique() <= MARKERS_UP_TO else None


def legend_below(fig: Figure, ax: Axes, columns: int = 1) -> None:
    """The axes' legend moved off the data, below the figure."""
    legend = ax.get_legend()
    if legend is None:
        return
    handles, labels = ax.get_legend_handles_labels()
    legend.remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=columns, frameon=False)


def loss_curves_figure(curves: pd.DataFrame, note: str = "", per: str = "case") -> Figure:
    """One panel per case, two to a row: train and validation loss per epoch; with
    several runs (seeds or folds) a case's line is their mean and its band their std.

    `curves`: the long form (tables.long_curves: case, run_dir, epoch, split, loss);
    `per`: what a panel is, for the title ("case", a search's "trial").
    """
    import seaborn as sns

    cases = list(dict.fromkeys(curves["case"]))
    columns = min(len(cases), PANEL_COLUMNS) or 1
    rows = max(math.ceil(len(cases) / columns), 1)
    fig = new_figure(4.6 * columns + 0.4, 2.9 * rows + 1.0)
    axes = list(fig.subplots(rows, columns, sharey=True, squeeze=False).flat)
    per_case = curves.groupby("case")["run_dir"].nunique()
    seeds = int(per_case.max()) if cases else 0
    marker = marker_for(curves["epoch"])
    for i, (ax, case) in enumerate(zip(axes, cases, strict=False)):
        panel = curves[curves["case"] == case]
        sns.lineplot(
            data=panel,
            x="epoch",
            y="loss",
            hue="split",
            hue_order=["train", "val"],
            errorbar="sd" if seeds > 1 else None,
            marker=marker,
            ax=ax,
            legend=i == 0,
        )
        ax.set_title(short_label(case, PANEL_TITLE_CHARS, 3), fontsize="medium")
        epoch_axis(ax, panel["epoch"])  # its own epochs: one beside several stays whole
        ax.set_ylabel("cross-entropy loss" if i % columns == 0 else "")
    for ax in axes[len(cases) :]:  # an odd count's last cell: no empty panel
        fig.delaxes(ax)
    legend_below(fig, axes[0], columns=2)
    what = f", {note}" if note else ""
    if seeds <= 1:
        spread = f"one run per {per}"
    elif int(per_case.min()) > 1:
        spread = "line: mean, band: std over runs"
    else:
        spread = f"line: mean, band: std over runs where a {per} has several"
    fig.suptitle(f"Training and validation loss{what} ({spread})")
    return fig


def spread_words(ns: Sequence[int]) -> str:
    """What the accuracy figure's marks are, for the runs per case at hand."""
    if not ns or max(ns) <= 1:
        return "one run per case"
    whisker = "whisker: std" if min(ns) > 1 else "whisker: std where a case has several runs"
    return f"bar: mean, {whisker}, dots: runs"


def accuracy_figure(
    runs_df: pd.DataFrame, results: pd.DataFrame, cases: list[str], note: str = ""
) -> Figure:
    """Bars for the shown cases (percent); with a note (a large sweep), a second panel
    beside them gives every case's mean, so the rest are summarised rather than dropped.

    `runs_df`: runs.csv's rows, `test_acc` the chosen weights' (tables.selected);
    `results`: results.csv's (n per case)."""
    import seaborn as sns

    done = runs_df[(runs_df["status"] == "completed") & runs_df["case"].isin(cases)].copy()
    done["test accuracy (%)"] = 100 * done["test_acc"].astype(float)
    ns = [int(n) for n in results.loc[results["case"].isin(cases), "n"]]
    n = len(cases)
    width = max(6.0, 1.3 * n + 2)
    if note:
        fig = new_figure(width + 4, 4.5)
        ax, rest = fig.subplots(1, 2, sharey=True, width_ratios=[width, 4])
        sns.histplot(y=100 * results["test_acc_mean"], ax=rest, color=PALE_BLUE)
        rest.set_title(f"all {len(results)} case means")
    else:
        fig = new_figure(width, 4.5)
        ax = fig.subplots()
    y, several = "test accuracy (%)", bool(ns) and max(ns) > 1
    sns.barplot(
        data=done,
        x="case",
        y=y,
        errorbar="sd" if several else None,
        ax=ax,
        order=cases,
        color=PALE_BLUE,
        capsize=0.15 if several else 0,
    )
    if several:
        sns.stripplot(data=done, x="case", y=y, ax=ax, order=cases, color=DARK_BLUE, size=5)
    what = f": {note}" if note else " per case"
    title = f"Test accuracy{what} ({spread_words(ns)})"
    ax.set_title(wrapped(title, int(TITLE_CHARS_PER_INCH * (width - 1))))
    ax.set_xlabel("case")
    ax.set_xticks(range(n), [short_label(case) for case in cases])
    return fig


def wrapped(text: str, chars: int) -> str:
    """Text broken into lines of at most `chars` characters (at least 20)."""
    return "\n".join(textwrap.wrap(text, max(chars, 20)))


def short_label(label: str, chars: int = LABEL_CHARS, most: int = LABEL_LINES) -> str:
    """A case label in lines of at most `chars` characters, broken after its hyphens
    (a part longer than a line is cut), at most `most` lines, the last ending in "…"
    where the label goes on."""
    lines = [""]
    for part in re.findall(r"[^-]+-?|-", label):
        while part:
            if lines[-1] and len(lines[-1]) + len(part) > chars:
                lines.append("")
            room = chars - len(lines[-1])
            lines[-1], part = lines[-1] + part[:room], part[room:]
    if len(lines) > most:
        lines = [*lines[: most - 1], lines[most - 1][: chars - 1] + "…"]
    return "\n".join(lines)


def lr_schedule_figure(curves: pd.DataFrame, note: str = "") -> Figure:
    """The learning rate per epoch on a log axis, one line per distinct schedule, the
    legend below the axes. `curves`: the long form (tables.long_curves)."""
    import seaborn as sns

    lr = by_sequence(curves[curves["split"] == "train"])
    schedules = lr["schedule"].nunique()
    fig = new_figure(8, 4.0 + 0.25 * schedules)
    ax = fig.subplots()
    sns.lineplot(
        data=lr,
        x="epoch",
        y="lr",
        hue="schedule",
        drawstyle="steps-post",
        marker=marker_for(lr["epoch"]),
        ax=ax,
    )
    ax.set_yscale("log")
    epoch_axis(ax, lr["epoch"])
    what = f" (schedules of {note})" if note else ""
    ax.set_title(f"Learning rate per epoch, {plural(schedules, 'distinct schedule')}{what}")
    ax.set_ylabel("learning rate (log scale)")
    legend_below(fig, ax)
    return fig


def by_sequence(train: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct schedule and epoch, a schedule being a run's actual rates per
    epoch: runs of the same settings but other epochs (1 and 2) are two schedules, each
    label saying its epochs where labels would otherwise be alike."""
    seqs = {
        run: tuple(g.sort_values("epoch")["lr"]) for run, g in train.groupby("run_dir", sort=False)
    }
    labels = train.drop_duplicates("run_dir").set_index("run_dir")["schedule"]
    named: dict[tuple, str] = {}
    for run, seq in seqs.items():
        named.setdefault(seq, labels[run])
    words = list(named.values())
    for seq, label in named.items():
        if words.count(label) > 1:
            named[seq] = f"{label}, {plural(len(seq), 'epoch')}"
    schedule = train["run_dir"].map(lambda run: named[seqs[run]])
    return train.assign(schedule=schedule).drop_duplicates(["schedule", "epoch"])


def draw_each(makers: Mapping[str, Callable[[], Figure]], out: Path) -> list[str]:
    """Each figure on its own, as out/NAME.png: one that cannot be drawn is reported
    (the returned problems, one line each), the others written.

    A figure that failed is removed rather than left from an earlier aggregation, where
    it would silently disagree with the tables beside it.
    """
    problems = []
    for name, make in makers.items():
        path = out / f"{name}.png"
        try:
            save_figure(make(), path)
        except Exception as exc:
            path.unlink(missing_ok=True)
            problems.append(f"{path} not written: {type(exc).__name__}: {exc}")
            log.warning("%s", problems[-1])
    return problems


@dataclass(frozen=True)
class ParallelAxis:
    """One setting's axis of parallel_figure: `name` its table column and label;
    `scale` "category" (its values at evenly spaced, labelled positions), "linear" or
    "log"; `limits` a numeric axis' ends (default: its values' range); `levels` a
    category's values in their order, bottom to top, as text (default: the values
    found, numbers in numeric order, then text), so an axis can show every choice of a
    search space, those no line takes included."""

    name: str
    scale: str = "category"
    limits: tuple[float, float] | None = None
    levels: tuple[str, ...] | None = None


PARALLEL_PAD = 0.05  # of an axis' height, kept free above and below its ends
PARALLEL_TICKS = 8  # a numeric axis without limits (a grid's) with so few values: one tick each
END_ROOM = 0.07  # of a linear axis' span: an inner tick this near a labelled end is dropped


def parallel_figure(
    table: pd.DataFrame,
    axes: Sequence[ParallelAxis],
    metric: str,
    what: str = "run",
    higher_is_better: bool = True,
    note: str = "",
) -> Figure:
    """Parallel coordinates: a vertical axis per setting, then one for `metric`; one
    line per row of `table` (a run, a trial, a grid's case), coloured by its metric (the
    colour bar), the best drawn last, on top. The metric's axis spans its values, its
    lowest and highest labelled; `note` says in the title what a line is where "one
    line per `what`" does not (a case's mean over its runs).

    `table`: a column per axis' name and one for `metric` (numbers). Each axis is an
    Axes of its own, labelled (`Axes.get_label()`) with its name: the settings' in
    order, then the metric's; the colour bar is one more. Raises ValueError without a
    setting axis or a row.
    """
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.transforms import blended_transform_factory

    if not axes or table.empty:
        raise ValueError("parallel coordinates need a setting that varies and a result")
    values = table[metric].astype(float).to_numpy()
    order = np.argsort(values if higher_is_better else -values, kind="stable")
    dims = [*axes, ParallelAxis(metric, "linear", (values.min(), values.max()))]
    heights = np.array([_parallel_heights(table[a.name], a) for a in dims]).T[order]
    width = max(6.0, 1.7 * len(dims) + 1.5)
    fig = new_figure(width, 4.8)
    host, cax = fig.subplots(1, 2, width_ratios=[width - 1.0, 0.25])
    host.set_xlim(0, len(dims) - 1)
    frames = [host, *(host.twinx() for _ in dims[1:])]
    for i, (ax, dim) in enumerate(zip(frames, dims, strict=True)):
        side = "right" if i == len(dims) - 1 and i > 0 else "left"
        _parallel_axis(ax, table[dim.name], dim, i, side)
    lines = LineCollection(
        [list(zip(range(len(dims)), row, strict=True)) for row in heights],
        array=values[order],
        cmap="viridis",
        linewidths=1.2,
        alpha=0.8,
        transform=blended_transform_factory(host.transData, host.transAxes),
    )
    host.add_collection(lines, autolim=False)
    host.set_xticks(range(len(dims)), [_axis_name(d.name) for d in dims])
    host.tick_params(axis="x", length=0)
    fig.colorbar(lines, cax=cax, label=metric)
    what_is = f": {note}" if note else ""
    title = f"Settings against {metric}, one line per {what}{what_is} ({plural(len(table), what)})"
    fig.suptitle(wrapped(title, int(TITLE_CHARS_PER_INCH * width)))
    return fig


def _axis_name(name: str) -> str:
    """A setting's name under its axis: a long dotted key in two lines, after its group."""
    group, dot, key = name.rpartition(".")
    return f"{group}.\n{key}" if dot and len(name) > 14 else name


def _parallel_span(values: pd.Series, dim: ParallelAxis) -> tuple[list[Any], float, float]:
    """An axis' levels (a category's, in order) and its ends, in its own units: a
    category's positions 0, 1, ...; a log axis' log10."""
    import numpy as np

    if dim.scale == "category":
        found = sorted(values.map(str).unique(), key=_natural)
        levels = list(dim.levels or ())
        levels += [v for v in found if v not in levels]  # a value outside the given levels
        return levels, 0.0, float(max(len(levels) - 1, 0))
    numbers = values.astype(float)
    low, high = dim.limits or (float(numbers.min()), float(numbers.max()))
    if dim.scale == "log":
        low, high = float(np.log10(low)), float(np.log10(high))
    return [], low, high


def _natural(text: str) -> tuple:
    """Numbers in numeric order before text: 8 before 16, then `relu` before `tanh`."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _parallel_heights(values: pd.Series, dim: ParallelAxis) -> list[float]:
    """Each row's height on the axis, as a fraction of the axes' height."""
    import numpy as np

    levels, low, high = _parallel_span(values, dim)
    if dim.scale == "category":
        at = values.map(str).map({level: i for i, level in enumerate(levels)}).astype(float)
    else:
        at = values.astype(float)
        at = np.log10(at) if dim.scale == "log" else at
    at = np.asarray(at, dtype=float)
    if high == low:
        return [0.5] * len(at)
    return list(PARALLEL_PAD + (1 - 2 * PARALLEL_PAD) * (at - low) / (high - low))


def _parallel_axis(ax: Axes, values: pd.Series, dim: ParallelAxis, x: int, side: str) -> None:
    """Axes `ax` drawn as one vertical axis at x: its spine, ticks and limits such that
    _parallel_heights' fractions land on its values."""
    levels, low, high = _parallel_span(values, dim)
    ends = (low, high)
    if high == low:
        low, high = low - 1, high + 1  # one value: in the middle
    pad = PARALLEL_PAD / (1 - 2 * PARALLEL_PAD) * (high - low)
    low, high = low - pad, high + pad
    ax.set_label(dim.name)
    for name, spine in ax.spines.items():
        spine.set_visible(name == side)
    ax.spines[side].set_position(("data", x))
    ax.yaxis.set_ticks_position(side)
    ax.tick_params(axis="y", labelsize="small")
    ax.tick_params(axis="x", bottom=x == 0, labelbottom=x == 0)
    if dim.scale == "category":
        ax.set_ylim(low, high)
        ax.set_yticks(range(len(levels)), [short_label(v, 14, 2) for v in levels])
        return
    if dim.scale == "log":
        ax.set_yscale("log")
        ax.set_ylim(10**low, 10**high)
        return
    ax.set_ylim(low, high)
    distinct = sorted(values.astype(float).unique())
    if dim.limits is None and len(distinct) <= PARALLEL_TICKS:  # a grid's few values
        ax.set_yticks(distinct, [f"{v:g}" for v in distinct])
    else:
        integer = pd.api.types.is_integer_dtype(values.dtype)
        ticks = end_ticks(*ends, integer=integer)
        ax.set_yticks(ticks, [f"{v:.4g}" for v in ticks])
    ax.minorticks_off()


def end_ticks(low: float, high: float, integer: bool = False) -> list[float]:
    """A linear axis' ticks from `low` to `high`, both ends among them (an axis' labels
    then say the whole range it spans, its lowest and highest value), and between them
    matplotlib's round ticks (MaxNLocator) that are not within END_ROOM of an end,
    where their labels would overlap. One tick where low == high."""
    from matplotlib.ticker import MaxNLocator

    if high <= low:
        return [low]
    room = END_ROOM * (high - low)
    inner = MaxNLocator(nbins=6, integer=integer).tick_values(low, high)
    return [low, *(float(t) for t in inner if low + room < t < high - room), high]

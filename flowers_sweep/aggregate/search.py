"""A hyperparameter search's report: its trials, the best one, and how the search went.

A search (`hparams_search=optuna`) is a sweep whose runs differ in sampled values, so
grouping runs into cases and comparing them pairwise means nothing there. Its report
lists trials instead. Like the rest of the aggregator it reads only the sweep folder
(Hydra's multirun.yaml says which settings were searched, each trial's folder its
values and result), so it works on folders copied from a cluster, without Optuna.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from flowers_sweep.aggregate.figures import DARK_BLUE, PALE_BLUE, new_figure
from flowers_sweep.aggregate.markdown import plural
from flowers_sweep.aggregate.runs import fmt
from flowers_sweep.record.runrecord import MULTIRUN_FILE, RunRecord, read_yaml

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SEARCH_TARGETS = ("optuna", "studysweeper")  # sweepers (_target_, lower case) that search
SHOWN_TRIALS = 20  # rows of results.md; trials.csv has them all
VALUED = ("completed", "pruned")  # statuses whose trials have a value
PRUNED_COLOUR = "#e6550d"  # pruned trials in search.png


@dataclass
class Search:
    params: dict[str, str]  # searched setting -> its search space, as configured
    metric: str  # what each trial returned: a key of its result.json
    maximize: bool


def read_search(root: Path) -> Search | None:
    """The search that made this sweep folder, or None for a plain sweep."""
    path = Path(root) / MULTIRUN_FILE
    if not path.is_file():
        return None
    tree = read_yaml(path) or {}
    sweeper = (tree.get("hydra") or {}).get("sweeper") or {}
    target = str(sweeper.get("_target_", "")).lower()
    if not any(name in target for name in SEARCH_TARGETS):
        return None
    direction = str(sweeper.get("direction", "maximize")).lower()
    params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
    metric = str(tree.get("optimized_metric") or "best_val_acc")
    return Search(params, metric, maximize="min" not in direction)


def trial_number(run_dir: Path) -> int | None:
    return int(run_dir.name) if run_dir.name.isdigit() else None


def trials_table(search: Search, runs: Sequence[RunRecord]) -> pd.DataFrame:
    """One row per trial: its number, status, value, searched values, test accuracy and
    epochs trained (`epochs_planned`: the epochs it would have trained).

    A pruned trial's value is the searched metric it reached before the pruner stopped
    it, where its result has it; a failed one has none.
    """
    rows = []
    for run in runs:
        result = run.result or {}
        value = result.get(search.metric) if run.status in VALUED else None
        planned = result.get("epochs", run.config.get("trainer.epochs"))
        trained = planned if run.status == "completed" else result.get("epochs_done")
        row = {
            "trial": trial_number(run.path),
            "status": run.status,
            "value": _number(value),
        }
        for name in search.params:
            v = run.config.get(name)
            row[name] = fmt(v) if isinstance(v, list) else v
        row["test_acc"] = result.get("test_acc")
        row["best_epoch"] = result.get("best_epoch")
        row["epochs"] = _number(trained)
        row["epochs_planned"] = _number(planned)
        row["run_dir"] = str(run.path)
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("trial", kind="stable", ignore_index=True)
    return table.astype({"epochs": "Int64", "epochs_planned": "Int64"})  # NaN: not known


def _number(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else math.nan


def ranked(search: Search, trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials, best first (a pruned trial's value is of fewer epochs: it is
    never the best trial)."""
    done = trials[(trials["status"] == "completed") & trials["value"].notna()]
    return done.sort_values("value", ascending=not search.maximize, kind="stable")


def pruned_line(trials: pd.DataFrame) -> str | None:
    """How many trials the pruner stopped and how many of their epochs they trained."""
    pruned = trials[trials["status"] == "pruned"]
    if pruned.empty:
        return None
    n, trained = len(pruned), int(pruned["epochs"].sum())
    planned = int(pruned["epochs_planned"].sum())
    who = "1 trial early: it trained" if n == 1 else f"{n} trials early: they trained"
    their = "its" if n == 1 else "their"
    return f"The pruner stopped {who} {trained} of {their} {planned} epochs."


def search_markdown(search: Search, trials: pd.DataFrame) -> str:
    """results.md of a search: the trials' statuses, the best trial, the best trials."""
    best = ranked(search, trials)
    counts = trials["status"].value_counts()
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    goal = "maximising" if search.maximize else "minimising"
    counted = plural(len(trials), "trial")
    lines = ["# Search results", "", f"{counted} ({summary}), {goal} {search.metric}."]
    pruner = pruned_line(trials)
    lines += [pruner, ""] if pruner else [""]
    if best.empty:
        return "\n".join([*lines, "No trial has completed yet.", ""])
    top = best.iloc[0]
    values = ", ".join(f"{name}={top[name]}" for name in search.params)
    lines += [
        f"**Best trial: {int(top['trial'])}**, {search.metric} {top['value']:.4g}, "
        f"test accuracy {100 * float(top['test_acc']):.1f}% (last epoch's weights), "
        f"with {values} ({top['run_dir']}).",
        "",
        f"Test accuracy is shown, not searched on: the search saw only {search.metric}.",
        "",
    ]
    names = list(search.params)
    lines.append("| trial | " + " | ".join([search.metric, *names, "test acc"]) + " |")
    lines.append("|---" * (len(names) + 3) + "|")
    for r in best.head(SHOWN_TRIALS).to_dict("records"):
        value, acc = f"{r['value']:.4g}", f"{100 * float(r['test_acc']):.1f}%"
        cells = [str(int(r["trial"])), value, *(_cell(r[n]) for n in names), acc]
        lines.append("| " + " | ".join(cells) + " |")
    if len(best) > SHOWN_TRIALS:
        shown = f"The {SHOWN_TRIALS} best of {len(best)} completed trials"
        lines.append(f"\n{shown}; trials.csv has every trial.")
    return "\n".join([*lines, ""])


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def log_ticks(ax: Any) -> None:
    """A log x axis with a few labelled ticks that do not run into each other: at most
    about four decades labelled, or 1, 2 and 5 of the one decade the values span; no
    minor labels, numbers written plainly (0.001, 2e-05), slanted."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    low, high = ax.get_xlim()
    subs = (1.0,) if high / low >= 10 else (1.0, 2.0, 5.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=5))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=30)


def search_figure(search: Search, trials: pd.DataFrame) -> Figure:
    """Left, the best value so far against the trial number; then each searched setting
    against the value, on a log axis where the search space was. Colour and marker say
    completed or pruned (a legend in the first panel); every point is the same size."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)  # "[0.6]" is a label
    valued = trials[trials["value"].notna()].sort_values("trial")
    done = valued[valued["status"] == "completed"]
    shown = valued[valued["status"].isin(VALUED)]  # pruned ones in their own colour
    colours = {"completed": DARK_BLUE, "pruned": PRUNED_COLOUR}
    pruned = shown[shown["status"] == "pruned"]
    names = list(search.params)
    fig = new_figure(min(4.2 * (1 + len(names)), 16.0), 3.8)
    axes = fig.subplots(1, 1 + len(names), squeeze=False)[0]
    ax = axes[0]
    best = done["value"].cummax() if search.maximize else done["value"].cummin()
    ax.plot(done["trial"], best, drawstyle="steps-post", color=DARK_BLUE, label="best so far")
    ax.scatter(done["trial"], done["value"], color=PALE_BLUE, label="trial", zorder=3)
    if not pruned.empty:
        ax.scatter(
            pruned["trial"],
            pruned["value"],
            color=PRUNED_COLOUR,
            marker="x",
            label="pruned",
            zorder=3,
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(search.metric)
    ax.set_title("Search progress")
    ax.legend(loc="best")
    for ax, name in zip(axes[1:], names, strict=True):
        numeric = pd.to_numeric(shown[name], errors="coerce")
        if numeric.notna().all() and "interval" in search.params[name]:
            for status, group in shown.groupby("status", sort=False):
                marker = "x" if status == "pruned" else "o"
                x = numeric[group.index]
                ax.scatter(x, group["value"], color=colours[str(status)], marker=marker)
            if "log" in search.params[name] and len(numeric) and (numeric > 0).all():
                log_ticks(ax)
        else:
            sns.stripplot(
                x=shown[name].astype(str),
                y=shown["value"],
                ax=ax,
                hue=shown["status"],
                palette=colours,
                legend=False,
            )
        ax.set_xlabel(name)
        ax.set_ylabel(search.metric)
        ax.set_title(name)
    return fig

"""The report, end to end: read the runs, build the tables, write runs.csv,
results.csv (or a search's trials.csv), results.md and the figures into one folder,
and say what kept the report from being whole (`Report.problems`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flowers_sweep.aggregate.figures import (
    FIGURE_CASES,
    draw_each,
    plot_accuracy,
    plot_loss_curves,
    plot_lr_schedule,
    shown_cases,
)
from flowers_sweep.aggregate.markdown import results_markdown
from flowers_sweep.aggregate.runs import REPORT_DIRNAME, load_runs, runs_table
from flowers_sweep.aggregate.search import (
    Search,
    plot_search,
    ranked,
    read_search,
    search_markdown,
    trial_number,
    trials_table,
)
from flowers_sweep.aggregate.stats import pairwise_tests
from flowers_sweep.aggregate.tables import curves_table, results_table, selected
from flowers_sweep.atomic import atomic_write_text
from flowers_sweep.runrecord import RunRecord

log = logging.getLogger(__name__)


@dataclass
class Report:
    runs: pd.DataFrame
    results: pd.DataFrame
    tests: pd.DataFrame
    markdown: str
    out: Path
    problems: list[str] = field(default_factory=list)  # what keeps the report from whole
    search: bool = False  # results holds a search's trials, not cases


def aggregate(roots: Sequence[Path], out: Path | None = None, select: str = "last") -> Report:
    """Read every run under the roots; write runs.csv, results.csv/.md and the figures."""
    roots = [Path(r) for r in roots]
    out = Path(out) if out is not None else roots[0] / REPORT_DIRNAME
    runs = load_runs(roots)
    search = read_search(roots[0]) if len(roots) == 1 else None
    if search is not None:
        return aggregate_search(search, runs, out)
    all_runs = runs_table(runs)
    runs_df = selected(all_runs, select)
    skipped = runs_df[runs_df["status"] != "completed"]
    pruned = int((skipped["status"] == "pruned").sum())
    problems = broken_runs(runs)
    results = results_table(runs_df)
    tests = pairwise_tests(runs_df)
    markdown = results_markdown(results, tests, len(skipped) - pruned, select, pruned)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", all_runs.to_csv(index=False))
    atomic_write_text(out / "results.csv", results.to_csv(index=False))
    atomic_write_text(out / "results.md", markdown)
    problems += write_figures(curves_table(runs, runs_df), runs_df, results, out)
    return Report(runs_df, results, tests, markdown, out, problems)


def broken_runs(runs: Sequence[RunRecord]) -> list[str]:
    """The problems of runs that cannot be read, each also logged with the others (a
    pruned run is no problem: the search's pruner stopped it on purpose)."""
    for r in runs:
        if r.broken:
            log.warning("%s: cannot be read (%s), left out of the statistics", r.path, r.broken)
        elif r.status == "pruned":
            log.info(
                "%s: status pruned (stopped by the search's pruner), left out of the statistics",
                r.path,
            )
        elif r.status != "completed":
            log.warning("%s: status %s, left out of the statistics", r.path, r.status)
    return [f"{r.path}: broken: {r.broken}" for r in runs if r.broken]


def write_figures(
    curves: pd.DataFrame, runs_df: pd.DataFrame, results: pd.DataFrame, out: Path
) -> list[str]:
    """The three figures of the report, each drawn on its own (see draw_each)."""
    if curves.empty:
        log.warning("no completed run has metrics: figures skipped")
        return []
    cases, note = shown_cases(results)
    shown = curves[curves["case"].isin(cases)]
    figures = (
        ("loss_curves.png", lambda path: plot_loss_curves(shown, path, note)),
        ("accuracy.png", lambda path: plot_accuracy(runs_df, path, results, cases, note)),
        ("lr_schedule.png", lambda path: plot_lr_schedule(shown, path, note)),
    )
    return draw_each(figures, out)


def aggregate_search(search: Search, runs: Sequence[RunRecord], out: Path) -> Report:
    """A search's report: trials.csv, results.md naming the best trial, search.png, and
    the loss curves and schedules of its best trials (see search.py)."""
    all_runs = runs_table(runs)
    all_runs["case"] = [f"trial {trial_number(r.path)}" for r in runs]
    problems = broken_runs(runs)
    trials = trials_table(search, runs)
    markdown = search_markdown(search, trials)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", all_runs.to_csv(index=False))
    atomic_write_text(out / "trials.csv", trials.to_csv(index=False))
    atomic_write_text(out / "results.md", markdown)
    best = [f"trial {n}" for n in ranked(search, trials)["trial"].head(FIGURE_CASES)]
    curves = curves_table(runs, all_runs)
    shown = curves[curves["case"].isin(best)]
    note = f"the {len(best)} best trials by {search.metric}"
    figures = (
        ("search.png", lambda path: plot_search(search, trials, path)),
        ("loss_curves.png", lambda path: plot_loss_curves(shown, path, note)),
        ("lr_schedule.png", lambda path: plot_lr_schedule(shown, path, note)),
    )
    if not best:
        log.warning("no trial has completed: figures skipped")
        figures = ()
    problems += draw_each(figures, out)
    return Report(all_runs, trials, pd.DataFrame(), markdown, out, problems, search=True)

"""The report, end to end: `build` reads the runs and builds every table in memory (a
`Report`, whose figures are drawn when asked for); `write` puts runs.csv, results.csv
(or a search's trials.csv), curves.csv, results.md and the figures into one folder;
`aggregate` does both. `Report.problems` says what kept the report from being whole."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from flowers_sweep.aggregate.confirmations import (
    CONFIRMATIONS_CSV,
    confirmations_markdown,
    confirmations_table,
    search_run_label,
    split_runs,
)
from flowers_sweep.aggregate.figures import (
    FIGURE_CASES,
    accuracy_figure,
    draw_each,
    loss_curves_figure,
    lr_schedule_figure,
    parallel_figure,
    shown_cases,
)
from flowers_sweep.aggregate.importance import (
    grid_importance,
    grid_parallel,
    importance_markdown,
    search_folder,
    search_importance,
    search_parallel,
    searched_space,
)
from flowers_sweep.aggregate.markdown import pct, plural, results_markdown
from flowers_sweep.aggregate.runs import AggregateError, load_runs, runs_table
from flowers_sweep.aggregate.search import (
    Search,
    ranked,
    read_search,
    search_figure,
    search_markdown,
    trials_table,
)
from flowers_sweep.aggregate.stats import pairwise_tests
from flowers_sweep.aggregate.tables import (
    SELECT,
    curves_table,
    long_curves,
    results_table,
    selected,
    shared_seeds,
)
from flowers_sweep.atomic import atomic_write_text, writing_to
from flowers_sweep.record.runrecord import MULTIRUN_FILE, REPORT_DIRNAME, RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
FIGURES = ("loss_curves", "accuracy", "lr_schedule", "parallel")  # a sweep's, by file stem
SEARCH_FIGURES = ("search", "loss_curves", "lr_schedule", "parallel")  # a search's
IMPORTANCE_CSV = "importance.csv"  # which settings mattered (importance.py)
NO_PARALLEL = "no setting varies between the completed runs"
Makers = dict[str, Callable[[], "Figure"]]


@dataclass(eq=False, repr=False)
class Report:
    """A sweep's report in memory; `write` puts it in a folder. The tables are those of
    the files (docs/results.md gives their columns); accuracies are fractions in [0, 1]
    (results.md shows percent), `run_dir` an absolute path.

    runs:        runs.csv, one row per run, whatever its status
    curves:      curves.csv, one row per run and epoch (every run with metrics)
    cases:       results.csv, one row per case; a search's trials.csv
    comparisons: the pairwise Welch tests (empty for a search)
    markdown:    results.md
    problems:    what kept the report from being whole (unreadable runs, figures not
                 drawn), one line each
    search:      whether `cases` holds a search's trials
    out:         the folder it was written to; None until written
    importance:  importance.csv, which settings mattered (aggregate/importance.py): a
                 grid's ANOVA shares of test accuracy's variance with F tests, or a
                 search's PED-ANOVA importances (Optuna's); None when no setting varies
    confirmations: a search's confirmations.csv (hydra.sweeper.confirm.top_k > 0): per
                 confirmed trial, the searched metric's mean over its runs on fresh
                 seeds with a 95% interval and Welch's test against the best on it,
                 Holm-adjusted, then the mean test accuracy with its interval as the
                 estimate (aggregate/confirmations.py); the trial's own search run is not counted
                 (chosen for scoring high, it is biased upward: the winner's curse).
                 None for a plain sweep or a search without confirmation runs
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    cases: pd.DataFrame
    comparisons: pd.DataFrame
    markdown: str
    problems: list[str] = field(default_factory=list)
    search: bool = False
    out: Path | None = None
    select: str = "last"  # whose test accuracy counts (tables.SELECT)
    importance: pd.DataFrame | None = None  # importance.csv: which settings mattered
    searched: Search | None = None  # a search's settings, for its figures
    confirmations: pd.DataFrame | None = None  # a confirmed search's confirmations.csv

    @property
    def results(self) -> pd.DataFrame:
        """`cases`, by its older name."""
        return self.cases

    @property
    def tests(self) -> pd.DataFrame:
        """`comparisons`, by its older name."""
        return self.comparisons

    @property
    def scored(self) -> pd.DataFrame:
        """`runs` as the statistics count them: `test_acc` the chosen weights' (select),
        and a completed run that did not record it marked `no test_acc_best_val` (or
        `no test_acc_ema`)."""
        return self.runs if self.search else selected(self.runs, self.select)

    def __repr__(self) -> str:
        what = "trials" if self.search else "cases"
        where = f", out={str(self.out)!r}" if self.out is not None else ""
        return f"Report({len(self.runs)} runs, {len(self.cases)} {what}{where})"

    def figure_names(self) -> tuple[str, ...]:
        """The figures this kind of report has, by file stem."""
        return SEARCH_FIGURES if self.search else FIGURES

    def figures(self) -> dict[str, Figure]:
        """Every figure that can be drawn, keyed by file stem (figure_names' order); one
        that fails is logged and left out. Fresh matplotlib Figures, made without
        pyplot: matplotlib's backend and pyplot's open figures are left as they were."""
        drawn = {}
        for name, make in self._makers()[0].items():
            try:
                drawn[name] = make()
            except Exception as exc:
                log.warning("figure %s not drawn: %s: %s", name, type(exc).__name__, exc)
        return drawn

    def figure(self, name: str) -> Figure:
        """One figure by its file stem ("loss_curves", "accuracy", "lr_schedule",
        "parallel"; a search's "search", "loss_curves", "lr_schedule", "parallel").

        Raises AggregateError for another name, or when there is nothing to draw (no
        completed run has metrics; for "parallel", no setting varies); what drawing
        raises otherwise passes through.
        """
        if name not in self.figure_names():
            allowed = ", ".join(self.figure_names())
            raise AggregateError(f"no figure {name!r}: this report's figures are {allowed}")
        makers, reason = self._makers()
        if name not in makers:
            raise AggregateError(f"figure {name!r} has nothing to draw: {reason or NO_PARALLEL}")
        return makers[name]()

    def _makers(self) -> tuple[Makers, str]:
        """What draws each figure, and why there is none when there is none."""
        if self.search:
            return self._search_makers()
        scored = self.scored
        curves = long_curves(self.curves, scored)
        if curves.empty:
            return {}, "no completed run has metrics"
        cases, note = shown_cases(self.cases)
        shown = curves[curves["case"].isin(cases)]
        makers: Makers = {
            "loss_curves": lambda: loss_curves_figure(shown, note),
            "accuracy": lambda: accuracy_figure(scored, self.cases, cases, note),
            "lr_schedule": lambda: lr_schedule_figure(shown, note),
        }
        settings, axes, metric, each = grid_parallel(scored)
        if axes:  # none where no setting varies
            makers["parallel"] = lambda: parallel_figure(
                settings, axes, metric, what="case", note=each
            )
        return makers, ""

    def _search_makers(self) -> tuple[Makers, str]:
        search = self.searched
        if search is None:
            return {}, f"the search's settings are not known ({MULTIRUN_FILE})"
        best = [f"trial {n}" for n in ranked(search, self.cases)["trial"].head(FIGURE_CASES)]
        if not best:
            return {}, "no trial has completed"
        curves = long_curves(self.curves, self.runs)
        shown = curves[curves["case"].isin(best)]
        which = "the best trial" if len(best) == 1 else f"the {len(best)} best trials"
        note = f"{which} by {search.metric}"
        return {
            "search": lambda: search_figure(search, self.cases),
            "loss_curves": lambda: loss_curves_figure(shown, note, per="trial"),
            "lr_schedule": lambda: lr_schedule_figure(shown, note),
            "parallel": lambda: parallel_figure(
                *search_parallel(search, self.cases, self._space(search)),
                search.metric,
                what="completed trial",
                higher_is_better=search.maximize,
            ),
        }, ""

    def _space(self, search: Search) -> dict:
        """The search's distributions (importance.searched_space), for its figures."""
        return searched_space(search, search_folder(self.cases["run_dir"]))


def build(roots: Sequence[Path], select: str = "last") -> Report:
    """Read every run under the roots and build the report's tables in memory; writes
    nothing (see `write`). A single root holding a search (multirun.yaml of Optuna's
    sweeper) gives a search's report; a search among several roots is a grid's runs,
    without its confirmation runs, and results.md's first line says so
    (searches_as_grid).

    `select`: whose test accuracy counts, "last" (the last epoch's weights, as the
    report), "best_val" (the best validation epoch's) or "ema" (the model EMA's).
    Raises AggregateError, one line naming the folder, when there is nothing to
    aggregate, or for another `select`.
    """
    if select not in SELECT:
        raise AggregateError(f"select={select!r}: expected one of {', '.join(SELECT)}")
    roots = [Path(r) for r in roots]
    runs = load_runs(roots)
    problems = broken_runs(runs)
    search = read_search(roots[0]) if len(roots) == 1 else None
    if search is not None:
        return build_search(search, runs, problems)
    runs, merged = searches_as_grid(roots, runs)
    all_runs = runs_table(runs)
    scored = selected(all_runs, select)
    skipped = scored[scored["status"] != "completed"]
    pruned = int((skipped["status"] == "pruned").sum())
    lacking = int(skipped["status"].str.startswith("no test_acc").sum())  # `selected`'s
    results = results_table(scored)
    tests = pairwise_tests(scored)
    known = results["case"] if len(results) else []
    apart = skipped[(skipped["status"] != "pruned") & ~skipped["case"].isin(known)]
    twins = shared_seeds(scored)
    markdown = results_markdown(
        results, tests, len(skipped) - pruned - lacking, select, pruned, apart, twins, lacking
    )
    if merged:  # said first: the report is not the searches' own
        markdown = markdown.replace("# Results\n\n", f"# Results\n\n{merged}.\n\n", 1)
    importance = grid_importance(scored)
    markdown += importance_markdown(importance)
    curves = curves_table(runs, all_runs)
    return Report(
        all_runs, curves, results, tests, markdown, problems, select=select, importance=importance
    )


def searches_as_grid(
    roots: Sequence[Path], runs: Sequence[RunRecord]
) -> tuple[list[RunRecord], str]:
    """Several folders of which some are searches, aggregated together: a grid's report
    of their runs (a search's own, trials.csv and PED-ANOVA, needs its folder alone),
    without the searches' confirmation runs (SWEEP_DIR/confirm/<trial>-seed<s>), which
    would otherwise count as more runs of their trials' cases, the winners' trials
    then having more seeds than the others and their search run twice over.

    Returns the runs to aggregate and a line saying so (also logged as a warning), ""
    where no root is a search. Raises AggregateError when only confirmation runs were
    found."""
    found = [Path(r) for r in roots if read_search(Path(r)) is not None]
    if not found:
        return list(runs), ""
    searches = [r.resolve() for r in found]
    confirming = split_runs(runs)[1]  # the confirmation runs, of a search or not
    left = {
        id(r)
        for r in confirming
        if any(Path(r.path).resolve().is_relative_to(root) for root in searches)
    }
    kept = [r for r in runs if id(r) not in left]
    names = ", ".join(str(r) for r in found)
    which = "is a search" if len(found) == 1 else "are searches"
    line = (
        f"{names} {which}: a search's report needs its folder alone (python -m "
        "flowers_sweep.aggregate SEARCH_DIR); here the trials are a grid's runs"
    )
    if left:
        line += f", and the {plural(len(left), 'confirmation run')} of confirm/ left out"
    log.warning("%s", line)
    if not kept:
        raise AggregateError(f"{names}: no run but the confirmation runs of confirm/")
    return kept, line


def build_search(
    search: Search, runs: Sequence[RunRecord], problems: list[str] | None = None
) -> Report:
    """A search's report in memory: trials.csv's table as `cases`, results.md naming
    the best trial; its figures are search.png and the best trials' curves.

    Confirmation runs (SWEEP_DIR/confirm/<trial>-seed<s>/) are no trials: they are left
    out of trials.csv and the figures, listed in runs.csv and curves.csv as `trial N
    confirm seed S`, and summed up in `confirmations` and results.md's last section.
    """
    trial_runs, confirming = split_runs(runs)
    all_runs = runs_table(runs, [search_run_label(r) for r in runs])
    trials = trials_table(search, trial_runs)
    markdown = search_markdown(search, trials)
    space = searched_space(search, search_folder(r.path for r in trial_runs))
    importance = search_importance(search, trial_runs, space)
    markdown += importance_markdown(importance)
    confirmations = confirmations_table(search, trials, confirming)
    if confirmations is not None:
        markdown += "\n" + confirmations_markdown(search, confirmations)
    curves = curves_table(runs, all_runs)
    return Report(
        all_runs,
        curves,
        trials,
        pd.DataFrame(),
        markdown,
        list(problems or []),
        search=True,
        searched=search,
        confirmations=confirmations,
        importance=importance,
    )


def write(report: Report, out: Path) -> list[str]:
    """Write the report into `out` (made if missing): runs.csv, results.csv (a search's
    trials.csv), curves.csv, results.md, importance.csv (where a setting varies),
    confirmations.csv (a confirmed search) and one PNG per figure, each file atomically.

    Returns the problems of this writing (a figure that could not be drawn: its file is
    removed rather than left stale), one line each; they are added to report.problems,
    and report.out is set to `out`. Raises OutputError (one line naming the path) when
    the folder or a table cannot be written there.
    """
    out = Path(out)
    with writing_to(out, "the report"):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "runs.csv", report.runs.to_csv(index=False))
        table = "trials.csv" if report.search else "results.csv"
        atomic_write_text(out / table, report.cases.to_csv(index=False))
        atomic_write_text(out / "curves.csv", report.curves.to_csv(index=False))
        atomic_write_text(out / "results.md", report.markdown)
        if report.confirmations is not None:  # a confirmed search's (confirmations.py)
            atomic_write_text(out / CONFIRMATIONS_CSV, report.confirmations.to_csv(index=False))
        else:  # an earlier report's would disagree
            (out / CONFIRMATIONS_CSV).unlink(missing_ok=True)
        if report.importance is not None:
            atomic_write_text(out / IMPORTANCE_CSV, report.importance.to_csv(index=False))
        else:  # an earlier report's would disagree
            (out / IMPORTANCE_CSV).unlink(missing_ok=True)
        makers, reason = report._makers()
        if reason:
            log.warning("%s: figures skipped", reason)
        for name in report.figure_names():  # an earlier report's would disagree
            if name not in makers:
                (out / f"{name}.png").unlink(missing_ok=True)
    problems = draw_each(makers, out)
    report.out = out
    report.problems += [p for p in problems if p not in report.problems]
    return problems


def aggregate(roots: Sequence[Path], out: Path | None = None, select: str = "last") -> Report:
    """Read every run under the roots and write the report into `out` (default
    ROOT/report, of the first root): `build`, then `write`. Raises AggregateError when
    there is nothing to aggregate (nothing is written then)."""
    roots = [Path(r) for r in roots]
    report = build(roots, select)
    write(report, Path(out) if out is not None else roots[0] / REPORT_DIRNAME)
    return report


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


def console_text(report: Report, limit: int = 30) -> str:
    """What a terminal shows: the whole results.md for a small sweep or a search, the best
    cases of a large sweep (results.md and results.csv hold every case)."""
    if report.search or len(report.cases) <= limit:
        return report.markdown
    best = report.cases.sort_values("test_acc_mean", ascending=False, kind="stable").head(10)
    where = report.out / "results.md" if report.out is not None else "report.markdown"
    lines = [
        f"{len(report.cases)} cases; the 10 best by mean test accuracy (every case in {where}):"
    ]
    lines += [f"  {r.case}: {pct(r.test_acc_mean)} (n={r.n})" for r in best.itertuples()]
    return "\n".join(lines)

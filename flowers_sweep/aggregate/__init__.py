"""Run folders -> the report's accuracy table and figures, with honest statistics.

    python -m flowers_sweep.aggregate SWEEP_DIR [SWEEP_DIR ...] [--out DIR]

Reads only files (each run's result.json, metrics.csv and Hydra's .hydra/ folder), never
the training code, so it is quick and works on folders copied from a cluster. Runs
that differ only in their seed form one case; a case's accuracy is given as mean, std
and a 95% confidence interval, and cases are compared pairwise with Welch's t-test.

One module per job:

    runs.py      the run folders under the roots, each run's case label, runs.csv
    stats.py     Student's t-interval, Welch's t-test, Holm's adjustment
    tables.py    which accuracy counts, one row per case (results.csv), loss curves
    markdown.py  results.md and what a terminal shows of it
    figures.py   the seaborn figures, each drawn on its own
    search.py    a hyperparameter search's report (trials.csv, search.png)
    report.py    the whole report, written into one folder: `aggregate`
    cli.py       the command line (`main`)
"""

from flowers_sweep.aggregate.cli import main
from flowers_sweep.aggregate.figures import FIGURE_CASES, draw_each, shown_cases
from flowers_sweep.aggregate.markdown import console_text, results_markdown
from flowers_sweep.aggregate.report import Report, aggregate, aggregate_search, write_figures
from flowers_sweep.aggregate.runs import (
    REPORT_DIRNAME,
    AggregateError,
    case_labels,
    find_run_dirs,
    load_runs,
    runs_table,
)
from flowers_sweep.aggregate.search import Search, read_search, trials_table
from flowers_sweep.aggregate.stats import (
    ALL_PAIRS_MAX,
    ALPHA,
    has_spread,
    holm,
    pairwise_tests,
    t_interval,
    testable,
    welch_p,
)
from flowers_sweep.aggregate.tables import SELECT, curves_table, results_table, selected

__all__ = [
    "ALL_PAIRS_MAX",
    "ALPHA",
    "FIGURE_CASES",
    "REPORT_DIRNAME",
    "SELECT",
    "AggregateError",
    "Report",
    "Search",
    "aggregate",
    "aggregate_search",
    "case_labels",
    "console_text",
    "curves_table",
    "draw_each",
    "find_run_dirs",
    "has_spread",
    "holm",
    "load_runs",
    "main",
    "pairwise_tests",
    "read_search",
    "results_markdown",
    "results_table",
    "runs_table",
    "selected",
    "shown_cases",
    "t_interval",
    "testable",
    "trials_table",
    "welch_p",
    "write_figures",
]

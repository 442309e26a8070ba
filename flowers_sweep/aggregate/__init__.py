"""Run folders -> the report's accuracy table and figures, with honest statistics.

    python -m flowers_sweep.aggregate SWEEP_DIR [SWEEP_DIR ...] [--out DIR]

Reads only files (each run's result.json, metrics.csv and Hydra's .hydra/ folder), never
the training code, so it is quick and works on folders copied from a cluster. Runs
that differ only in their seed form one case; a case's accuracy is given as mean, std
and a 95% confidence interval, and cases are compared pairwise with Welch's t-test.

One module per job:

    runs.py      the run folders under the roots, each run's case label, runs.csv
    stats.py     Student's t-interval, Welch's t-test, Holm's adjustment
    tables.py    which accuracy counts, one row per case (results.csv), curves.csv
    markdown.py  results.md and what a terminal shows of it
    figures.py   the seaborn figures, each a matplotlib Figure of its own (no pyplot)
    search.py    a hyperparameter search's report (trials.csv, search.png)
    report.py    the report in memory (`build` -> `Report`), written into one folder
                 (`write`); both at once: `aggregate`
    cli.py       the command line (`main`)

In a notebook: `report = build([sweep_dir])`, then `report.runs`, `report.curves`,
`report.cases`, `report.comparisons`, `report.figure("loss_curves")`.
"""

from flowers_sweep.aggregate.cli import main
from flowers_sweep.aggregate.figures import FIGURE_CASES, draw_each, shown_cases
from flowers_sweep.aggregate.markdown import results_markdown
from flowers_sweep.aggregate.report import (
    FIGURES,
    SEARCH_FIGURES,
    Report,
    aggregate,
    build,
    build_search,
    console_text,
    write,
)
from flowers_sweep.aggregate.runs import (
    AggregateError,
    case_labels,
    find_run_dirs,
    load_runs,
    runs_table,
    varying_settings,
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
from flowers_sweep.aggregate.tables import (
    SELECT,
    curves_table,
    long_curves,
    results_table,
    selected,
)
from flowers_sweep.record.runrecord import REPORT_DIRNAME

__all__ = [
    "ALL_PAIRS_MAX",
    "ALPHA",
    "FIGURES",
    "FIGURE_CASES",
    "REPORT_DIRNAME",
    "SEARCH_FIGURES",
    "SELECT",
    "AggregateError",
    "Report",
    "Search",
    "aggregate",
    "build",
    "build_search",
    "case_labels",
    "console_text",
    "curves_table",
    "draw_each",
    "find_run_dirs",
    "has_spread",
    "holm",
    "load_runs",
    "long_curves",
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
    "varying_settings",
    "welch_p",
    "write",
]

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
    figures.py   the seaborn figures, each a matplotlib Figure of its own (no pyplot),
                 and the parallel coordinates of settings against the result
    search.py    a hyperparameter search's report (trials.csv, search.png)
    confirmations.py  a confirmed search's best trials on fresh seeds, tested apart
                 (confirmations.csv)
    importance.py  which settings mattered (importance.csv): a grid's ANOVA shares, a
                 search's PED-ANOVA (Optuna's); the parallel-coordinates figure's data
    report.py    the report in memory (`build` -> `Report`), written into one folder
                 (`write`); both at once: `aggregate`
    cli.py       the command line (`main`)

In a notebook: `report = build([sweep_dir])`, then `report.runs`, `report.curves`,
`report.cases`, `report.comparisons`, `report.importance`, `report.figure("loss_curves")`.

Exported here: what a user or the sweep's end calls; the rest is imported from its
module (`flowers_sweep.aggregate.stats.holm`, ...).
"""

from flowers_sweep.aggregate.cli import main
from flowers_sweep.aggregate.report import (
    FIGURES,
    SEARCH_FIGURES,
    Report,
    aggregate,
    build,
    console_text,
    write,
)
from flowers_sweep.aggregate.runs import AggregateError

__all__ = [
    "FIGURES",
    "SEARCH_FIGURES",
    "AggregateError",
    "Report",
    "aggregate",
    "build",
    "console_text",
    "main",
    "write",
]

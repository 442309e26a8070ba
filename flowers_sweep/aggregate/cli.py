"""The command line: `python -m flowers_sweep.aggregate SWEEP_DIR [SWEEP_DIR ...]`.

Exit status 0 when the report is whole; 1 when it was written but is incomplete (a run
that cannot be read, a figure that could not be drawn: each named on stderr); 2, with
one line on stderr, when there is nothing to aggregate or the report cannot be written
where asked (the commands' shared policy, see outcome.command).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from flowers_sweep.aggregate.report import aggregate, console_text
from flowers_sweep.aggregate.tables import SELECT
from flowers_sweep.atomic import OutputError
from flowers_sweep.job.outcome import command

PROG = "flowers_sweep.aggregate"  # what starts its lines on stderr


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Collect the run folders of one or more sweeps into the report: the\n"
        "accuracy table per case (mean and 95% interval over seeds, Welch's t-tests),\n"
        "results.md and the figures; for an Optuna search, its trials. A sweep with\n"
        "aggregate=true (the default) writes it when it ends: run this to redo it, or to\n"
        "merge the sweeps of several machines. Prints the table and where it went.\n"
        "Exit status 0 when the report is whole, 1 when a run or figure is missing from\n"
        "it (named on stderr), 2 when there is nothing to aggregate or the report\n"
        "cannot be written.",
        epilog=f"examples:\n  python -m {PROG} outputs/multirun/2026-11-28_10-00-00\n"
        f"  python -m {PROG} outputs/multirun/laptop outputs/multirun/cluster "
        "--out outputs/report\ndocs: docs/results.md",
    )
    parser.add_argument(
        "sweep_dirs",
        nargs="+",
        type=Path,
        metavar="SWEEP_DIR",
        help="a sweep's folder (outputs/multirun/DATE, or its hydra.sweep.dir) or a single "
        "run's; every run folder under it is read, wherever it sits",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="output folder (default: SWEEP_DIR/report, in the first SWEEP_DIR)",
    )
    parser.add_argument(
        "--select",
        choices=list(SELECT),
        default="last",
        help="whose test accuracy: the last epoch's weights (default, as the report), the "
        "best validation epoch's, or the model EMA's (runs with trainer.ema_decay)",
    )
    return parser


@command(PROG, OutputError)
def main(argv: Sequence[str] | None = None) -> int:
    """Write the report of the sweep folders; print its text and where it went."""
    args = arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    report = aggregate(args.sweep_dirs, args.out, args.select)
    print(console_text(report))
    tables = "trials.csv" if report.search else "results.csv"
    print(f"wrote {report.out}/: runs.csv, curves.csv, {tables}, results.md and figures")
    for problem in report.problems:
        print(f"{PROG}: incomplete: {problem}", file=sys.stderr)
    return 1 if report.problems else 0

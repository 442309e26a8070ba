"""`python -m flowers_sweep.status SWEEP_DIR [--watch [SECONDS]]`: where each job of a
sweep stands (record/sweepstate.py reads it; this prints it).

One line a job: its number, its state (completed, pruned, failed, diverged,
interrupted, running, pending), epochs done of those planned, the time since its folder
was last written, its case label and a detail (a failure's one-line reason; the host
and pid running it); then a line counting each state. Exit status 0 when every job
completed (a search's pruned trials count as finished: its pruner ended them on
purpose), 1 otherwise, 2 for a path that is not a sweep or run folder. Nothing is
written into the folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from flowers_sweep.job import outcome
from flowers_sweep.record.runrecord import MULTIRUN_FILE
from flowers_sweep.record.sweepstate import (
    STATES,
    JobState,
    LaunchOwner,
    age_s,
    all_finished,
    ended,
    is_sweep,
    launch_owner,
    sweep_state,
)

PROG = "flowers_sweep.status"
WATCH_DEFAULT_S = 5.0
CLEAR = "\x1b[H\x1b[2J"  # ANSI: cursor home, clear the screen (on a terminal only)
REASON_WIDTH = 100  # a reason longer than this is cut (result.json keeps the whole)


def ago(seconds: float | None) -> str:
    """12s, 3m05s, 2h14m, 3d04h; `-` for None."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def detail(job: JobState) -> str:
    """What the state leaves unsaid: who runs it, or why it stopped."""
    parts = []
    if job.state == "running":
        where = f"pid {job.pid} on {job.host}" if job.pid is not None else "its lock is held"
        parts.append(where)
    if job.reason:
        cut = job.reason if len(job.reason) <= REASON_WIDTH else job.reason[:REASON_WIDTH] + "..."
        parts.append(cut)
    return "; ".join(parts)


def epochs(job: JobState) -> str:
    done = "-" if job.epochs_done is None else str(job.epochs_done)
    return f"{done}/{'-' if job.epochs_planned is None else job.epochs_planned}"


def summary_line(jobs: Sequence[JobState]) -> str:
    """`8 jobs: 3 completed, 1 failed, 1 running, 3 pending` (states in STATES' order)."""
    counts = {s: sum(j.state == s for j in jobs) for s in STATES}
    shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"{len(jobs)} job{'' if len(jobs) == 1 else 's'}: {shown or 'none'}"


def render(
    path: Path, jobs: Sequence[JobState], owner: LaunchOwner | None, now: float
) -> list[str]:
    """The lines one look prints: a header (a sweep's: the launch that holds it), a
    table of the jobs, the summary."""
    if not is_sweep(path):
        launch = "a run folder"
    elif owner is None:
        launch = "no launch holds it now"
    else:
        checked = "" if owner.checked else " (another host: not checked)"
        launch = f"launch: pid {owner.pid} on {owner.host} since {owner.since}{checked}"
    rows = [("job", "state", "epochs", "written", "case", "detail")]
    for j in jobs:
        when = age_s(j, now)
        written = "-" if when is None else f"{ago(when)} ago"
        rows.append((j.name, j.state, epochs(j), written, j.label or "-", detail(j)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    table = [
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in rows
    ]
    return [f"{path}: {launch}", *table, summary_line(jobs)]


def look(path: Path, clear: bool = False) -> tuple[int, bool]:
    """Print the sweep's state once; its exit status and whether it has ended."""
    jobs = sweep_state(path)
    owner = launch_owner(path)
    text = "\n".join(render(path, jobs, owner, time.time()))
    print((CLEAR if clear else "") + text, flush=True)
    return (0 if all_finished(jobs) else 1), ended(jobs, owner)


def seconds(text: str) -> float:
    """--watch's interval: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Show where each job of a sweep stands: completed, pruned, failed (and\n"
        "why), diverged, interrupted, running now (host, pid), or pending; its epochs done\n"
        "of those planned, the time since its folder was last written, its case label;\n"
        "then a count of each state. Exit status 0 when every job completed (pruned\n"
        "trials of a search count as finished), 1 otherwise, 2 for a path that is not a\n"
        "sweep folder or a run folder. Reads only: nothing is written into the folder.",
        epilog=f"examples:\n  python -m {PROG} multirun/2024-05-01/10-00-00\n"
        f"  python -m {PROG} outputs/search/flowers102/resnet18-relu --watch 10\n"
        "docs: docs/long_sweeps.md",
    )
    parser.add_argument(
        "sweep_dir",
        metavar="SWEEP_DIR",
        type=Path,
        help=f"a sweep folder (the one holding {MULTIRUN_FILE}), or a single run's folder",
    )
    parser.add_argument(
        "--watch",
        metavar="SECONDS",
        nargs="?",
        type=seconds,
        const=WATCH_DEFAULT_S,
        help=f"show it again every SECONDS (default {WATCH_DEFAULT_S:g}) until no job can "
        "change without a new launch, or Ctrl-C",
    )
    return parser


@outcome.command(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: 0 when every job completed, 1 otherwise, 2 on errors."""
    args = arg_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.watch is None:
        return look(args.sweep_dir)[0]
    clear = sys.stdout.isatty()
    status = 1
    try:
        while True:
            status, done = look(args.sweep_dir, clear=clear)
            if done:
                return status
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the way to stop watching: no traceback, the last status
        return status


if __name__ == "__main__":
    sys.exit(main())

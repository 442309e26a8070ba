"""What happens at the end of a run, and of a command, in one table.

A run ends in one of ten outcomes. Each has one rule: the status recorded in the run
folder's result.json (None: the folder is left as it is), the exit status of a run
launched alone, and what the job returns inside a sweep. app.py applies the rules;
nothing else decides how a run ends (a sweep's end adds its own exit status: callbacks.py).

    outcome      recorded     alone   in a sweep
    completed    completed    0       the optimized metric
    skipped      (kept)       0       the metric the folder's run recorded
    pruned       pruned       0       Pruned: the search's pruner stopped it early
    busy         (untouched)  2       None: the trial is another process's
    refused      (untouched)  2       exit 2: the whole launch stops
    failed       failed       2 (*)   NaN: a failed trial, the sweep goes on
    diverged     diverged     2       NaN
    interrupted  interrupted  130     exit 130 (Ctrl-C stops the launch)
    terminated   interrupted  143     exit 143 (SIGTERM; a requeued job resumes)
    hung_up      interrupted  129     exit 129 (SIGHUP: the terminal was closed)

(*) 2 for errors meant for the user (FlowersSweepError, one line, no traceback); any
other exception keeps its traceback and Python's exit status 1. 130, 143 and 129 are
128 + the signal's number, what a shell reports for a death by SIGINT, SIGTERM, SIGHUP.
In a sweep whose launching process is stopping (stopping.py), a stopped job returns
None instead of exiting: that process waits for its jobs and says the one line.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NoReturn

from flowers_sweep.errors import (
    DivergedError,
    FlowersSweepError,
    RunFolderBusyError,
    RunFolderMismatchError,
    Terminated,
    TrialPrunedError,
)
from flowers_sweep.record.runrecord import HYDRA_DIR

Outcome = Literal[
    "completed", "skipped", "pruned", "busy", "refused", "failed", "diverged", "interrupted",
    "terminated", "hung_up",
]  # fmt: skip
InSweep = Literal["value", "pruned", "none", "nan", "exit"]


@dataclass(frozen=True)
class Pruned:
    """What a pruned run returns to the search's sweeper, which tells Optuna PRUNED (a
    value of its own type, so it survives pickling by joblib and submitit)."""

    reason: str


@dataclass(frozen=True)
class Rule:
    """How one outcome ends. The messages are templates over {run_dir}, {exc}, {kind}
    (the exception's type), {status} (the recorded status) and {resume_with} (the
    override that finds the folder again: hydra.run.dir, or hydra.sweep.dir in a sweep,
    since the default folders are new for each launch)."""

    recorded: str | None  # the status written to result.json; None: the folder is kept
    alone: int  # the exit status of a run launched on its own
    in_sweep: InSweep  # the job's return value, or "exit" with `alone`'s status
    log: str | None = None  # logged, at ERROR when something went wrong, else INFO
    log_alone: str | None = None  # logged only when the run was launched alone
    says_alone: str | None = None  # one line on stderr when alone
    says_in_sweep: str | None = None  # one line on stderr in a sweep
    noted: tuple[str, str] | None = None  # in a sweep: (status, why) for the sweep's end
    traceback: bool = True  # a recorded stop keeps the traceback (not a pruned run's)
    best_so_far: bool = False  # the record says the run's best epoch (a search ranks it)


_ERROR = "flowers_sweep: error: {exc}"
_RERUN = "flowers_sweep: {run_dir}: {exc}; rerun to resume (the same command, with {resume_with})"
_RESUME = "to resume from the last completed epoch, run the same command with {resume_with}"
RULES: dict[str, Rule] = {
    # written by train.py, with the run's numbers
    "completed": Rule("completed", 0, "value", log_alone="run folder: {run_dir}"),
    "skipped": Rule(
        None, 0, "value",
        log="{run_dir} already holds a completed run of these settings: skipped (its "
        f"files, weights and {HYDRA_DIR}/ stay as that run left them)",
        log_alone="run folder: {run_dir}",
    ),
    "pruned": Rule(
        "pruned", 0, "pruned", log="run {status}: {exc}", traceback=False, best_so_far=True
    ),
    "busy": Rule(
        None, 2, "none", says_alone=_ERROR,
        says_in_sweep="flowers_sweep: {run_dir}: skipped: {exc}",
        noted=("skipped", "in use by another process"),
    ),
    "refused": Rule(None, 2, "exit", log="{exc}", says_alone=_ERROR, says_in_sweep=_ERROR),
    # an error meant for the user says its one line; any other keeps its traceback
    "failed": Rule(
        "failed", 2, "nan", log="run {status}: {kind}: {exc}", says_alone=_ERROR,
        noted=("failed", "{exc}"),
    ),
    "diverged": Rule(
        "diverged", 2, "nan", log="run {status}: {kind}: {exc}", says_alone=_ERROR,
        noted=("diverged", "{exc}"),
    ),
    "interrupted": Rule(
        "interrupted", 128 + signal.SIGINT, "exit",
        says_alone=f"flowers_sweep: {{run_dir}}: interrupted (Ctrl-C); {_RESUME}",
        says_in_sweep=f"flowers_sweep: {{run_dir}}: interrupted (Ctrl-C); {_RESUME}",
    ),
    "terminated": Rule(
        "interrupted", 128 + signal.SIGTERM, "exit",
        says_alone=_RERUN,
        says_in_sweep=_RERUN,
    ),
    "hung_up": Rule(
        "interrupted", 128 + 1, "exit",  # SIGHUP is 1 (and absent on Windows)
        says_alone=_RERUN,
        says_in_sweep=_RERUN,
    ),
}  # fmt: skip
STOPPED = ("interrupted", "terminated", "hung_up")  # the outcomes of a stop signal


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome of a run that raised `exc`."""
    if isinstance(exc, TrialPrunedError):
        return "pruned"
    if isinstance(exc, RunFolderBusyError):
        return "busy"
    if isinstance(exc, RunFolderMismatchError):
        return "refused"  # never write into another run's folder
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, Terminated):
        return "hung_up" if exc.signum == 1 else "terminated"
    if isinstance(exc, DivergedError):
        return "diverged"
    return "failed"


def error_line(prog: str, exc: BaseException | str) -> None:
    """The one line on stderr that an error meant for the user gets."""
    print(f"{prog}: error: {exc}", file=sys.stderr)


def refuse(prog: str, exc: BaseException | str) -> NoReturn:
    """End the process as an error meant for the user ends a command: its one line and
    exit status 2; for callers that no `command` wraps (a Hydra callback, the sweeper)."""
    error_line(prog, exc)
    sys.exit(2)


def command(
    prog: str, *also: type[BaseException]
) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """A command's `main(argv) -> int` with the commands' one exit policy: an error
    meant for the user (FlowersSweepError, or one of `also`) prints one line,
    `PROG: error: MESSAGE`, and the exit status is 2; anything else keeps its traceback."""
    caught = (FlowersSweepError, *also)

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def guarded(*args: object, **kwargs: object) -> int:
            try:
                return main(*args, **kwargs)
            except caught as exc:
                error_line(prog, exc)
                return 2

        return guarded

    return wrap

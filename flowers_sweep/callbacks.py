"""Hydra callbacks: what happens when a multirun ends.

They read the sweep folder from disk, like the command-line aggregator, so they work
the same whether the launcher ran the jobs in this process, in a joblib pool or on
SLURM.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from flowers_sweep.config.overrides import check_study
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.job.fail_fast import fail_fast_limit, fail_fast_line
from flowers_sweep.job.launch import claim_sweep, drop_unused_dirs, noted_jobs, release_sweep
from flowers_sweep.job.outcome import refuse
from flowers_sweep.job.stopping import LaunchStop, quiet_local_controllers, quiet_resource_tracker
from flowers_sweep.record.runfolder import is_held
from flowers_sweep.record.runrecord import (
    HYDRA_DIR,
    LAUNCH_DIR,
    RESULT_FILE,
    RunRecordError,
    read_result,
)

log = logging.getLogger(__name__)
FINISHED = ("completed", "pruned")  # a job folder's statuses that are not a failure
_stops: dict[str, LaunchStop] = {}  # module-level, like launch._held: callbacks travel


def unfinished_runs(sweep_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Job folders whose result says failed, diverged or interrupted, or has no result.

    A run the search's pruner stopped (status "pruned") is finished, not listed: the
    search ended that trial on purpose.
    A folder still locked now belongs to a process of another launch (this launch's jobs
    have all returned): it is reported as running elsewhere, skipped by this launch.
    """
    from flowers_sweep.record.sweepstate import nested  # a search's confirm/ runs too

    bad = []
    jobs = sorted(p for p in sweep_dir.iterdir() if (p / HYDRA_DIR).is_dir())
    for job in jobs + nested(sweep_dir):
        if is_held(job):
            bad.append((job, {"status": "skipped", "error": "still training in another process"}))
            continue
        try:
            result = read_result(job)
        except RunRecordError as exc:
            result = {"status": "unfinished", "error": f"unreadable: {exc}"}
        if result is None:
            result = {"status": "unfinished", "error": f"no {RESULT_FILE}"}
        if result.get("status") not in FINISHED:
            bad.append((job, result))
    return bad


def not_trained_here(
    sweep_dir: Path, bad: list[tuple[Path, dict[str, Any]]]
) -> list[tuple[Path, dict[str, Any]]]:
    """This launch's jobs that it could not train and the folder scan does not list
    (another process finished the folder meanwhile, say): they still count."""
    listed = {Path(job).resolve() for job, _ in bad}  # a relative sweep dir, absolute notes
    return [
        (Path(run_dir), {**note, "error": f"{note.get('error')} (not trained by this launch)"})
        for run_dir, note in noted_jobs(sweep_dir).items()
        if Path(run_dir).resolve() not in listed
    ]


def summary_lines(bad: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """One line per distinct failure: a cause shared by many runs (a missing dataset in
    every job, say) is said once, with the count and the folders."""
    groups: dict[tuple[str, str, str], list[Path]] = {}
    for job, result in bad:
        status, kind = str(result.get("status")), str(result.get("error_type") or "")
        key = (status, kind, str(result.get("error", "")))
        groups.setdefault(key, []).append(job)
    noun = "run" if len(bad) == 1 else "runs"
    lines = [f"flowers_sweep: {len(bad)} {noun} of the sweep did not complete:"]
    for (status, kind, why), jobs in groups.items():
        cause = f"{status}: {f'{kind}: ' if kind else ''}{why}"
        if len(jobs) == 1:
            lines.append(f"  {jobs[0]}: {cause}")
        else:
            shown = ", ".join(j.name for j in jobs[:8]) + (", ..." if len(jobs) > 8 else "")
            lines.append(f"  {len(jobs)} runs ({jobs[0].parent}/: {shown}): {cause}")
    return lines


class SweepEnd(Callback):
    """Hold the sweep folder for the launch and answer stop signals (stopping.LaunchStop:
    the running jobs record their stop before the launch ends); at its end write
    SWEEP_DIR/report/ (unless `aggregate=false`), then fail if any run did.

    The exit status is non-zero when a run failed or this launch could not train one of
    its jobs, so scripts and CI notice; the message lists each such run and why, after
    the report has been written, and says in one line whether `fail_fast` kept jobs
    from starting. A bad `fail_fast` is refused before any job starts.
    """

    def __init__(self, aggregate: bool = True) -> None:
        self.aggregate = aggregate

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        overrides = [str(o) for o in config.hydra.overrides.task]
        try:
            fail_fast_limit(config.get("fail_fast"))  # before a job starts, not in each
            check_study(overrides, config.hydra.runtime.choices)
            claim_sweep(Path(config.hydra.sweep.dir), overrides)
        except FlowersSweepError as exc:  # SweepBusyError, a bad fail_fast
            drop_unused_dirs()
            refuse("flowers_sweep", exc)
        drop_unused_dirs(Path(config.hydra.sweep.dir))
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if "Slurm" not in launcher:  # SLURM's jobs run on other hosts: scancel stops them
            if "submitit" in launcher:
                quiet_local_controllers()
            if "joblib" in launcher:
                quiet_resource_tracker()
            stop = LaunchStop(Path(config.hydra.sweep.dir) / LAUNCH_DIR)
            stop.install()
            _stops[str(config.hydra.sweep.dir)] = stop

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if (stop := _stops.pop(str(sweep_dir), None)) is not None:
            stop.uninstall()
        drop_unused_dirs(sweep_dir)  # those its jobs' composes made, in this process
        try:
            self._report(sweep_dir)
        finally:
            release_sweep(sweep_dir)

    def _report(self, sweep_dir: Path) -> None:
        problems = self._aggregate(sweep_dir) if self.aggregate else []
        bad = unfinished_runs(sweep_dir) if sweep_dir.is_dir() else []
        bad += not_trained_here(sweep_dir, bad)
        lines = summary_lines(bad) if bad else []
        if (held_back := fail_fast_line(sweep_dir)) is not None:
            lines.append(held_back)  # once, for the launch, after the runs that failed
        if problems:
            lines.append("flowers_sweep: the report is incomplete:")
            lines += [f"  {p}" for p in problems]
        if lines:
            print("\n".join(lines), file=sys.stderr)
            sys.exit(1)

    @staticmethod
    def _aggregate(sweep_dir: Path) -> list[str]:
        """Write the report; what kept it from being whole (broken runs, a figure)."""
        from flowers_sweep.aggregate import aggregate, console_text
        from flowers_sweep.errors import FlowersSweepError

        try:
            report = aggregate([sweep_dir])
        except FlowersSweepError as exc:  # nothing to aggregate: the run list says why
            log.warning("aggregation skipped: %s", exc)
            return []
        except Exception as exc:  # a bug or a disk error must not hide the sweep's status
            log.exception("aggregation failed")
            return [f"aggregation failed: {type(exc).__name__}: {exc}"]
        if report.results.empty:  # every run failed: the summary below says why, once
            log.info("no run completed: nothing to tabulate (%s lists the runs)", report.out)
        else:
            table = console_text(report)
            log.info("results table and figures written to %s\n%s", report.out, table)
        return report.problems

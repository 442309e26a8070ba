"""Fail fast: a launch stops starting jobs once `fail_fast=N` of them failed the same way.

A sweep whose every job fails for one cause (a wrong `dataset.root`) would otherwise
launch them all, each to fail at set-up. With `fail_fast=N`:

- each job of the launch, as it starts, reads the launch's notes of failed jobs
  (`SWEEP_DIR/.launch/<job>.json`, written by app.conclude through launch.note_job) and
  does not train when N of them (status failed or diverged) share one reason
  (`fail_fast_tripped`). The notes are on disk, so this holds for every launcher: the
  basic one (jobs one after the other in the launching process), joblib (worker
  processes) and submitit/SLURM (other hosts sharing the folder);
- a job held back is noted in `SWEEP_DIR/.launch/not_started/` (`note_not_started`),
  and the sweep's end says it once (`fail_fast_line`, callbacks.SweepEnd);
- launch.claim_sweep clears `.launch/` when a launch starts, so a relaunch of the same
  sweep (after fixing the cause) counts only its own failures.

A reason is the note's first line with the job's own folder taken out, since a message
naming its run folder would differ from job to job. With parallel jobs the count is
read when a job starts: jobs already running when the N-th failure is noted still run
(at most N + parallel jobs - 1 train when every job fails the same way).
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

from flowers_sweep.atomic import atomic_write_text, read_json
from flowers_sweep.errors import ConfigError
from flowers_sweep.job.launch import noted_jobs
from flowers_sweep.record.runrecord import LAUNCH_DIR

FAILURES = ("failed", "diverged")  # the noted statuses that fail_fast counts
NOT_STARTED_DIR = "not_started"  # in LAUNCH_DIR: <job number>.json, a job fail_fast held back
RUN_FOLDER = "<run folder>"  # stands for a job's own folder in a reason (each job's differs)


def fail_fast_limit(value: Any) -> int | None:
    """`fail_fast`'s value checked: None (off) or N, an integer >= 1 (a number of jobs).

    Raises:
        ConfigError: any other value, in one line naming it.
    """
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigError(
        f"fail_fast={value!r} is invalid: must be null or an integer >= 1 (jobs failed with "
        f"the same reason)"
    )


def failure_reason(note: dict[str, Any]) -> str:
    """A failed job's note's reason, its first line, with the job's own folder (which
    differs from job to job) written as RUN_FOLDER: the same cause reads the same."""
    why = str(note.get("error") or "").strip().splitlines()
    reason = why[0] if why else "(no message)"
    run_dir = str(note.get("run_dir") or "")
    return reason.replace(run_dir, RUN_FOLDER) if run_dir else reason


def same_failures(sweep_dir: Path) -> tuple[int, str]:
    """How many of this launch's jobs failed or diverged with its most common reason,
    and that reason; (0, "") when none has."""
    reasons = Counter(
        failure_reason(note)
        for note in noted_jobs(sweep_dir).values()
        if note.get("status") in FAILURES
    )
    if not reasons:
        return 0, ""
    reason, count = reasons.most_common(1)[0]
    return count, reason


def fail_fast_tripped(sweep_dir: Path, limit: int | None) -> tuple[int, str] | None:
    """(count, reason) when at least `limit` jobs of this launch failed with the same
    reason, so that no more of its jobs should start; None otherwise or when `limit` is
    None (fail_fast is off). Read from SWEEP_DIR/.launch/, whichever process asks."""
    if limit is None:
        return None
    count, reason = same_failures(sweep_dir)
    return (count, reason) if count >= limit else None


def note_not_started(sweep_dir: Path, job_num: int, run_dir: Path, limit: int) -> None:
    """Note that fail_fast kept this job of the launch from starting."""
    note = {"run_dir": str(run_dir), "fail_fast": limit}
    path = sweep_dir / LAUNCH_DIR / NOT_STARTED_DIR / f"{job_num}.json"
    atomic_write_text(path, json.dumps(note) + "\n")


def not_started_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The notes of the jobs that fail_fast kept from starting in this launch."""
    notes = []
    for path in sorted((sweep_dir / LAUNCH_DIR / NOT_STARTED_DIR).glob("*.json")):
        try:
            notes.append(dict(read_json(path)))
        except (OSError, ValueError, TypeError):
            continue  # a hint: the count may be one short, the folders say the rest
    return notes


def fail_fast_line(sweep_dir: Path) -> str | None:
    """The one line a launch that fail_fast stopped says at its end (None: it stopped
    no job): the limit, the shared reason, how many jobs did not start, how to resume."""
    held_back = not_started_jobs(sweep_dir)
    if not held_back:
        return None
    limit = held_back[0].get("fail_fast")
    count, reason = same_failures(sweep_dir)
    failed, held = _jobs(count), _jobs(len(held_back))
    return (
        f"flowers_sweep: error: fail_fast={limit}: {failed} failed with the same reason "
        f"({reason}); {held} not started; fix it and run the same command "
        f"(with hydra.sweep.dir={shlex.quote(str(sweep_dir))}) to resume"
    )


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"

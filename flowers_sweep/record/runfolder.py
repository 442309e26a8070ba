"""Who owns a run folder: one process trains in it at a time, and it holds one run.

`hold` is the lock a training process keeps; `claim` checks that the folder holds this
config's run (or nothing yet) before anything is written, and records the config the
run started with (run_config.json) so that a relaunch with other settings stops rather
than mix two runs. What the folder's files are is runrecord.py's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from flowers_sweep.atomic import atomic_write_text, read_json, write_json
from flowers_sweep.errors import RunFolderBusyError, RunFolderError, RunFolderMismatchError
from flowers_sweep.record.runrecord import (
    HYDRA_DIR,
    LOCK_FILE,
    MULTIRUN_FILE,
    RUN_CONFIG_FILE,
    RUN_FILES,
    RUNNING_DIR,
    completed_result,
)
from flowers_sweep.record.settings import experiment_settings


@contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Train in run_dir only while no other process does (a relaunch, a requeued job).

    An OS lock (flock), so a killed or pre-empted process lets go of it at once and its
    run can be resumed; it works across the nodes of a cluster on a shared file system
    that supports locks (NFSv4, Lustre, GPFS).
    """
    lock = FileLock(Path(run_dir) / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusyError(
            f"{run_dir} is in use: another process is training its run right now; nothing "
            f"was written. Wait for it to finish (or stop it), then relaunch to resume"
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_held(run_dir: Path) -> bool:
    """Whether some process is training in run_dir now (for a sweep's final summary)."""
    try:
        with hold(run_dir):
            return False
    except RunFolderBusyError:
        return True
    except OSError:  # a read-only copy of a sweep: nobody trains there
        return False


def lock_held(run_dir: Path) -> bool:
    """is_held, without creating the lock file where there is none (nobody holds it
    then): for readers that must leave the folder as they found it (the status command).
    Taking the lock is non-blocking and lasts microseconds, yet a trainer that tries to
    hold the folder in that instant is refused (busy): callers ask only when they must."""
    return (Path(run_dir) / LOCK_FILE).is_file() and is_held(run_dir)


def running_notes(launch_dir: Path) -> dict[int, dict[str, Any]]:
    """Who runs each job of a launch now, by job number: {"pid": int, "host": str}, as
    job/stopping.running_job writes them in LAUNCH_DIR/running/<job>.json. A note that
    cannot be read is skipped (it is only a hint); a note of a process that has died
    (killed) stays, so check the pid (pid_alive) on its host."""
    notes = {}
    for path in (Path(launch_dir) / RUNNING_DIR).glob("*.json"):
        try:
            note = read_json(path)
            notes[int(path.stem)] = {"pid": int(note["pid"]), "host": str(note["host"])}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return notes


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs on this host (a zombie, dead but not yet reaped by its parent,
    does not)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or someone else's pid now
        return False
    try:  # Linux says a zombie's state; elsewhere a dead job's note is removed anyway
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def in_sweep(run_dir: Path) -> bool:
    """Whether run_dir is a job folder of a sweep (its parent holds multirun.yaml)."""
    return (Path(run_dir).parent / MULTIRUN_FILE).is_file()


def start_over_hint(run_dir: Path) -> str:
    """How to start the run in run_dir over, saying what it discards (one clause).

    `resume=false` starts over every run of the launch: in a sweep, finished ones too,
    so there the hint is to delete this one folder, and resume=false comes with that
    warning; a finished run is never offered to resume=false without saying it goes.
    """
    if in_sweep(run_dir):
        return (
            f"to start only this run over, delete {run_dir} and relaunch (resume=false "
            "would start every run of the sweep over, finished ones too)"
        )
    if completed_result(run_dir) is not None:
        return "resume=false would delete its finished run and train it again"
    return "add resume=false to start it over"


def _read_record(record: Path) -> dict[str, Any]:
    try:
        old = read_json(record)
        if not isinstance(old.get("config"), dict) or not isinstance(old.get("hydra_files"), dict):
            raise ValueError("config or hydra_files missing")
        return old
    except (OSError, ValueError) as exc:
        raise RunFolderError(
            f"{record} is unreadable ({type(exc).__name__}: {exc}); "
            f"{start_over_hint(record.parent)}"
        ) from exc


def mismatch_hint(run_dir: Path) -> str:
    """The ways out of a folder that holds a run with other settings, the safe ones
    first: nothing finished is offered for deletion without saying so."""
    sweep = in_sweep(run_dir)
    where = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    numbers = (
        " (a sweep numbers its jobs by their place in the grid, so a value added to one "
        "of its axes moves other settings onto earlier jobs' numbers)"
        if sweep
        else ""
    )
    if completed_result(run_dir) is not None:
        keep = f"its run finished and is kept: run these settings in a new {where}{numbers}"
    else:
        keep = f"relaunch with its settings to resume it, or run these in a new {where}{numbers}"
    return f"{keep}; {start_over_hint(run_dir)}"


def restore_hydra_files(run_dir: Path) -> None:
    """Put back the .hydra/*.yaml that the folder's run started with.

    Hydra rewrites them at every launch, before any of our code runs; a launch that may
    not run here undoes that, so the folder keeps describing its own run.
    """
    record = Path(run_dir) / RUN_CONFIG_FILE
    if not record.is_file():
        return
    for name, text in _read_record(record)["hydra_files"].items():
        atomic_write_text(Path(run_dir) / HYDRA_DIR / name, text)


def changed_settings(recorded: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """How `config` differs from the settings a run_config.json recorded, in the
    experiment settings only (both in today's keys: legacy.py): `key=old (now new)` for
    up to three, `and N more`; empty when they are the same run."""
    old, now = experiment_settings(recorded), experiment_settings(config)
    changed = [k for k in sorted(set(old) | set(now)) if old.get(k) != now.get(k)]
    shown = ", ".join(f"{k}={old.get(k)!r} (now {now.get(k)!r})" for k in changed[:3])
    return shown + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def claim(
    run_dir: Path,
    config: Mapping[str, Any],
    fresh: bool = False,
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Make sure the folder holds this config's run, or nothing yet.

    The first start records the config (and Hydra's own files, which Hydra rewrites at
    every launch). A later start with other settings restores Hydra's files and stops
    rather than mix two runs in one folder; `fresh` (resume=false) clears it instead.
    `ready()` runs once the folder is known to be this run's or free, before the record
    is written; what it raises (a bad value) leaves the folder unclaimed.
    """
    run_dir = Path(run_dir)
    record = run_dir / RUN_CONFIG_FILE
    identity = experiment_settings(config)
    if fresh:
        for name in (*RUN_FILES, RUN_CONFIG_FILE):
            (run_dir / name).unlink(missing_ok=True)
    if record.is_file():
        shown = changed_settings(_read_record(record)["config"], config)
        if shown:
            restore_hydra_files(run_dir)
            raise RunFolderMismatchError(
                f"{run_dir} holds a run with other settings: {shown}; {mismatch_hint(run_dir)}"
            )
        ready()
        return
    ready()  # a run that cannot start (a bad value) leaves no record to refuse others by
    hydra_dir = run_dir / HYDRA_DIR
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(hydra_dir.glob("*.yaml"))}
    write_json(record, {"config": identity, "hydra_files": files})

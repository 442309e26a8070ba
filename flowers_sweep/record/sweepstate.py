"""Where each job of a sweep stands now, read from its folder without disturbing it.

A job is one of STATES: its result.json's status (completed, pruned, failed, diverged,
interrupted), `running` while a process trains it, `pending` while the sweep has yet to
run it (no folder, or a folder without a result and nobody in it), `unreadable` when its
result.json cannot be read. The jobs are the sweep's folders plus those its grid or
study will make (Hydra makes a job's folder as the job starts), numbered as Hydra
numbers them:

- a grid (Hydra's basic sweeper): every combination of the sweep overrides in
  multirun.yaml (`case=relu,sigmoid seed=0,1` is 4 jobs), split as Hydra splits them;
- a search (hparams_search=optuna, our StudySweeper): `hydra.sweeper.n_trials` jobs;
- another sweeper, or a grid Hydra needs a config to expand (`glob(...)`): the folders.

Who runs a job comes from the notes a launch keeps (`.launch/running/<job>.json`, the
pid and host: job/stopping.running_job): a live pid on this host is running; a note
from another host (a SLURM node) cannot be checked here and says running, with
whether the folder's lock is held. Only where no note can say (another host, or a
folder without a result and without a note: a run launched alone) is the folder's
lock taken, for an instant and without waiting (runfolder.lock_held). Nothing is
written: no lock file is created, no mtime moves.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from flowers_sweep.atomic import read_json
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.record.labels import case_label
from flowers_sweep.record.legacy import upgrade_settings
from flowers_sweep.record.runfolder import lock_held, pid_alive, running_notes
from flowers_sweep.record.runrecord import (
    CONFIG_FILE,
    HYDRA_DIR,
    LAUNCH_DIR,
    LOCK_FILE,
    MULTIRUN_FILE,
    REPORT_DIRNAME,
    RESULT_FILE,
    SWEEP_OWNER_FILE,
    RunRecord,
    RunRecordError,
    config_path,
    natural_key,
    read_metrics,
    read_result,
    read_yaml,
)
from flowers_sweep.record.settings import flatten

# In the order a listing and its summary show them.
STATES = (
    *("completed", "pruned", "failed", "diverged", "unreadable", "interrupted"),
    *("running", "pending"),
)
# Ended for good: a search's pruner ends a trial on purpose (callbacks.FINISHED).
FINISHED = ("completed", "pruned")
JOB_NUM_SUBDIR = "${hydra.job.num}"  # Hydra's default hydra.sweep.subdir


class NotASweepError(FlowersSweepError, ValueError):
    """A path that is neither a sweep folder nor a run folder; the message names it."""


@dataclass(frozen=True)
class JobState:
    """One job of a sweep as its folder says now.

    `reason`: a failed, diverged, interrupted or unreadable job's one line (the error
    its result.json records), or what a pending job is (`case=relu seed=1` for one
    without a folder). `last_write`: the newest mtime of the folder's files, in seconds
    since the epoch (time.time()), None without a folder. `host` and `pid`: who runs it,
    while running (None where no note says: a run found only by its lock).
    """

    name: str  # the folder's name (Hydra's job number), "?" for an unnamed pending job
    path: Path | None  # None: no folder yet
    state: str
    label: str | None = None  # the case label: `relu`, or model-activation
    epochs_done: int | None = None  # rows of metrics.csv; None when unreadable
    epochs_planned: int | None = None  # trainer.epochs of its config
    last_write: float | None = None
    reason: str | None = None
    host: str | None = None
    pid: int | None = None


@dataclass(frozen=True)
class LaunchOwner:
    """The launch that holds the sweep folder now (job/launch.claim_sweep's note);
    `checked`: its pid was found alive on this host (False: another host's)."""

    pid: int
    host: str
    since: str
    checked: bool


def sweep_state(path: Path) -> list[JobState]:
    """Every job of the sweep folder `path` (or of the one run folder `path`), in job
    order.

    Raises NotASweepError when `path` is neither: not a folder, or a folder without
    multirun.yaml, without .hydra/config.yaml and without a job folder.
    """
    path = Path(path)
    if not path.is_dir():
        raise NotASweepError(f"{path}: no such folder")
    if not is_sweep(path):
        return [job_state(path, notes={})]  # a run folder, not a sweep
    folders = sorted((p for p in path.iterdir() if (p / HYDRA_DIR).is_dir()), key=natural_key)
    if not (path / MULTIRUN_FILE).is_file() and not folders:
        raise NotASweepError(
            f"{path}: not a sweep folder (no {MULTIRUN_FILE}, no job folder) nor a run "
            f"folder (no {HYDRA_DIR}/{CONFIG_FILE})"
        )
    notes = running_notes(path / LAUNCH_DIR)
    jobs = [job_state(folder, notes) for folder in folders]
    jobs += [replace(job_state(f, notes), name=f"{f.parent.name}/{f.name}") for f in nested(path)]
    planned, numbered = planned_jobs(path)
    if planned is None:
        return jobs
    have = {j.name for j in jobs}
    if numbered:
        missing = [str(n) for n in range(len(planned)) if str(n) not in have]
    else:  # folders named otherwise (hydra.sweep.subdir): only how many are missing
        missing = ["?"] * max(len(planned) - len(folders), 0)
    for name in missing:
        what = planned[int(name)] if name != "?" else ()
        jobs.append(JobState(name, None, "pending", reason=" ".join(what) or None))
    return sorted(jobs, key=lambda j: natural_key(Path(j.name)))


def nested(sweep_dir: Path) -> list[Path]:
    """Job folders one level down, in a folder that is no job's (a search's
    confirmation runs, SWEEP_DIR/confirm/<trial>-seed<s>: search/confirm.py), listed
    by `confirm/3-seed1`; the report's folder and hidden ones are left out."""
    found = []
    for parent in sorted(Path(sweep_dir).iterdir(), key=natural_key):
        skip = parent.name == REPORT_DIRNAME or parent.name.startswith(".")
        if skip or not parent.is_dir() or (parent / HYDRA_DIR).is_dir():
            continue
        found += sorted((p for p in parent.iterdir() if (p / HYDRA_DIR).is_dir()), key=natural_key)
    return found


def is_sweep(path: Path) -> bool:
    """Whether the folder sweep_state read is a sweep's (not a single run's)."""
    return (Path(path) / MULTIRUN_FILE).is_file() or not config_path(path).is_file()


def job_state(run_dir: Path, notes: dict[int, dict[str, Any]]) -> JobState:
    """One job folder's state; `notes`: the launch's running notes (running_notes)."""
    run_dir = Path(run_dir)
    config = _settings(run_dir)
    epochs = config.get("trainer.epochs")
    planned = epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
    try:
        done: int | None = len(read_metrics(run_dir, required=("epoch",)))
    except RunRecordError:
        done = None
    try:
        result, broken = read_result(run_dir), None
    except RunRecordError as exc:
        result, broken = None, str(exc).splitlines()[0]
    common = {
        "label": _label(run_dir, config, result),
        "epochs_done": done,
        "epochs_planned": planned,
        "last_write": last_write(run_dir),
    }
    note = notes.get(int(run_dir.name)) if run_dir.name.isdigit() else None
    here = socket.gethostname()
    if note is not None and note["host"] == here and pid_alive(note["pid"]):
        return JobState(run_dir.name, run_dir, "running", host=here, pid=note["pid"], **common)
    if note is not None and note["host"] != here:  # a cluster node: its pid is not ours
        held = lock_held(run_dir)
        why = None if held else "its folder's lock is not held: it may have died"
        who = {"host": note["host"], "pid": note["pid"]}
        return JobState(run_dir.name, run_dir, "running", reason=why, **who, **common)
    if broken is not None:
        return JobState(run_dir.name, run_dir, "unreadable", reason=broken, **common)
    if result is None:
        if lock_held(run_dir):  # trained by a process that left no note (a run alone)
            return JobState(run_dir.name, run_dir, "running", **common)
        gone = f"its process (pid {note['pid']}) is gone" if note else None
        why = "stopped without a result (killed?): a relaunch resumes it" if done else None
        reason = "; ".join(w for w in (gone, why) if w) or None
        return JobState(run_dir.name, run_dir, "pending", reason=reason, **common)
    status = str(result.get("status"))
    if status in FINISHED:
        return JobState(run_dir.name, run_dir, status, **common)
    if status not in STATES:  # a status this version does not know: not a success
        status, reason = "failed", f"status {status!r} in {RESULT_FILE}"
    else:
        reason = _reason(result)
    return JobState(run_dir.name, run_dir, status, reason=reason, **common)


def planned_jobs(sweep_dir: Path) -> tuple[list[tuple[str, ...]] | None, bool]:
    """The jobs the sweep's multirun.yaml plans: each job's sweep overrides (() for a
    search's trials), or None where they cannot be known here; and whether the job
    folders are named by job number (Hydra's default hydra.sweep.subdir)."""
    try:
        tree = read_yaml(Path(sweep_dir) / MULTIRUN_FILE)
        hydra = tree["hydra"]
        sweeper = hydra.get("sweeper") or {}
        numbered = (hydra.get("sweep") or {}).get("subdir") == JOB_NUM_SUBDIR
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None, False
    if "n_trials" in sweeper:  # a search: as many trials as the study's size
        n = sweeper["n_trials"]
        ok = isinstance(n, int) and not isinstance(n, bool)
        return ([()] * max(n, 0) if ok else None), numbered
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None, numbered
    params = sweeper.get("params") or {}
    task = ((hydra.get("overrides") or {}).get("task")) or []
    grid = grid_jobs([*(f"{k}={v}" for k, v in params.items()), *map(str, task)])
    return grid, numbered


def grid_jobs(overrides: Sequence[str]) -> list[tuple[str, ...]] | None:
    """Each job's sweep overrides, in Hydra's job order, as Hydra's basic sweeper splits
    `a=1,2 b=3,4` (4 jobs); None for a sweep Hydra expands only with the config at hand
    (`glob(...)`) or one it cannot split (an `interval(...)`)."""
    # Hydra's own parser and split, imported only here: they are slow to import
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
        batches = BasicSweeper.split_arguments(parsed, None)
    except (HydraException, ValueError, TypeError, AttributeError, AssertionError):
        return None
    return [tuple(o for o in job if o.split("=", 1)[0] in swept) for job in batches[0]]


def launch_owner(sweep_dir: Path) -> LaunchOwner | None:
    """The launch that holds the sweep folder now, from its note (.sweep.owner.json);
    None when there is none, or its process on this host is gone (a killed launch).
    The sweep's lock itself is not touched: taking it would refuse a relaunch."""
    try:
        owner = read_json(Path(sweep_dir) / SWEEP_OWNER_FILE)
        pid, host, since = int(owner["pid"]), str(owner["host"]), str(owner.get("since", "?"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return LaunchOwner(pid, host, since, checked=False)
    return LaunchOwner(pid, host, since, checked=True) if pid_alive(pid) else None


def last_write(run_dir: Path) -> float | None:
    """The newest mtime among the folder's files (its subfolders' too: a logger's), in
    seconds since the epoch; the lock file is left out (holding it is not a write)."""
    newest = None
    for root, _, files in os.walk(run_dir):
        for name in files:
            if name == LOCK_FILE:
                continue
            try:
                mtime = os.stat(os.path.join(root, name)).st_mtime
            except OSError:  # removed meanwhile (an atomic write's temporary file)
                continue
            newest = mtime if newest is None else max(newest, mtime)
    return newest


def ended(jobs: Sequence[JobState], owner: LaunchOwner | None) -> bool:
    """Whether nothing will change without a new launch: no job runs, and none is
    pending while a launch holds the sweep."""
    if any(j.state == "running" for j in jobs):
        return False
    return owner is None or not any(j.state == "pending" for j in jobs)


def all_finished(jobs: Sequence[JobState]) -> bool:
    """Whether every job completed (or was pruned by the search, on purpose)."""
    return bool(jobs) and all(j.state in FINISHED for j in jobs)


def age_s(job: JobState, now: float | None = None) -> float | None:
    """Seconds since the job's folder was last written; None without a folder."""
    if job.last_write is None:
        return None
    return max((time.time() if now is None else now) - job.last_write, 0.0)


def _settings(run_dir: Path) -> dict[str, Any]:
    """The job's flattened config; {} while Hydra has not written it or it is unreadable."""
    try:
        return upgrade_settings(flatten(read_yaml(config_path(run_dir)) or {}))
    except (OSError, ValueError, yaml.YAMLError, AttributeError, TypeError):
        return {}


def _label(run_dir: Path, config: dict[str, Any], result: dict[str, Any] | None) -> str | None:
    """The case label (`relu`), else model-activation (`resnet18-gelu`), as RunRecord
    gives them from result.json or the config and Hydra's group choices."""
    record = RunRecord(run_dir, config, result)
    try:
        return case_label(record.case, record.model, record.activation) or None
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def _reason(result: dict[str, Any]) -> str | None:
    """A stopped run's one line: `ErrorType: message` (the message's first line)."""
    error = str(result.get("error") or "").strip().splitlines()
    kind = result.get("error_type")
    line = error[0] if error else ""
    return ": ".join(str(x) for x in (kind, line) if x) or None

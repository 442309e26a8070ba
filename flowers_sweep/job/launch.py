"""What one launch owns: its own output folder, and while a sweep runs, the sweep folder.

Hydra names job folders by job number (`SWEEP_DIR/0`, `1`, ...) and writes each job's
`.hydra/` before any code of ours runs. Two launches sharing a sweep folder at the same
time would therefore race for the same names and could leave one run's settings beside
another run's results. So:

- a default output folder is made new for each launch (`unique_dir`): two launches in
  the same second get `.../10-00-00` and `.../10-00-00-2`, never the same folder. A
  launch that only prints (`--cfg all --resolve`) is told the name and makes nothing;
- a sweep holds `SWEEP_DIR/.sweep.lock` from its start to its end (`claim_sweep`): a
  second launch into a folder that a running sweep holds is refused before it writes
  anything, with one line saying who holds it. Relaunching the same command after the
  first has ended (to resume or to skip what is done) works as before;
- each job that this launch could not train (busy in another process, failed) is noted
  in `SWEEP_DIR/.launch/` (`note_job`), so the sweep's end names it even when another
  process has finished that folder in the meantime.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from omegaconf import OmegaConf

from flowers_sweep.atomic import atomic_write_text, read_json, write_json
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.record.labels import study_name
from flowers_sweep.record.runrecord import (
    LAUNCH_DIR,
    MULTIRUN_BEFORE,
    MULTIRUN_FILE,
    SWEEP_LOCK_FILE,
    SWEEP_OWNER_FILE,
)

RESOLVER = "fs.unique_dir"
STUDY_NAME_RESOLVER = "fs.study_name"  # hparams_search=optuna's default study name
_held: dict[str, FileLock] = {}  # module-level: callbacks are pickled to job processes
_made: list[Path] = []  # the folders unique_dir made in this process (parents too)
_naming_only: list[bool] = []  # not empty: unique_dir names its folder, makes none (plan)
# Hydra's methods that compose a config only to print it (--cfg, --info, --help, -sc)
PRINTING = ("show_cfg", "show_info", "app_help", "hydra_help", "shell_completion")


class SweepBusyError(FlowersSweepError):
    """Another launch is running a sweep in this sweep folder right now."""


def unique_dir(base: str) -> str:
    """Create a new folder `base`, or `base-2`, `base-3`, ... if taken; return its path.

    `os.mkdir` is atomic, so two processes never get the same folder, also on a shared
    file system. Registered as the `fs.unique_dir` resolver with OmegaConf's cache: Hydra
    copies a launch's resolved values into every job's config, so all its jobs and
    callbacks see the one folder made for the launch.

    When Hydra resolves the value only to print it (`--cfg hydra|all --resolve`), the
    name the launch would get is returned and nothing is made.
    """
    if only_printing() or _naming_only:
        free = (p for n in range(1, 10_000) if not Path(p := _numbered(base, n)).exists())
        return next(free, base)
    parent = Path(base).parent
    new = [p.absolute() for p in (parent, *parent.parents) if not p.exists()]  # deepest first
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = _numbered(base, n)
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        _made.extend([Path(path).absolute(), *new])
        return path
    raise FlowersSweepError(f"{base}: 10,000 folders of this name exist; set hydra.run.dir")


@contextmanager
def naming_only() -> Iterator[None]:
    """Inside it, unique_dir gives the name a launch would get and makes nothing: for
    the plan command, which composes every job of a sweep without launching it."""
    _naming_only.append(True)
    try:
        yield
    finally:
        _naming_only.pop()


def _numbered(base: str, n: int) -> str:
    return base if n == 1 else f"{base}-{n}"


def only_printing() -> bool:
    """Whether Hydra is composing the config only to print it (`--cfg`, `--info`,
    `--help`): one of its printing methods is on the call stack. Such a launch runs no
    job, so it must leave no folder behind."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name in PRINTING and name == "hydra._internal.hydra":
            return True
        frame = frame.f_back
    return False


def drop_unused_dirs(*used: Path) -> None:
    """Remove the folders unique_dir made in this process (with the parents it made)
    that stayed empty and are not, and do not hold, one of `used`.

    A preset that sets `hydra.sweep.dir` (hparams_search=optuna) replaces conf/config.yaml's
    `${fs.unique_dir:...}`, but OmegaConf's merge evaluates the value it replaces, at
    every compose (the launch's, each job's): each made a folder that nobody uses.
    """
    keep = [Path(u).absolute() for u in used]
    for made in sorted(_made, key=lambda p: len(p.parts), reverse=True):  # leaves first
        if any(k == made or made in k.parents for k in keep):
            continue
        try:
            made.rmdir()  # only when empty: a folder with anything in it stays
        except OSError:
            continue
        _made.remove(made)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, unique_dir, use_cache=True)
    if not OmegaConf.has_resolver(STUDY_NAME_RESOLVER):
        OmegaConf.register_new_resolver(STUDY_NAME_RESOLVER, study_name)


def claim_sweep(sweep_dir: Path, overrides: list[str]) -> None:
    """Hold the sweep folder for this launch, or raise SweepBusyError naming the holder.

    The lock is an OS lock (flock): a killed launch lets go of it at once. It is kept in
    this module, not on the callback, because callbacks travel to job processes.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(sweep_dir / SWEEP_LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        owner = _owner(sweep_dir)
        raise SweepBusyError(
            f"{sweep_dir} is in use by another launch ({owner}); nothing was written and "
            f"none of this launch's runs ({' '.join(overrides) or 'the defaults'}) was "
            f"trained: relaunch when it has ended, or set another hydra.sweep.dir"
        ) from None
    _held[str(sweep_dir)] = lock
    write_json(
        sweep_dir / SWEEP_OWNER_FILE,
        {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%F %T")},
    )
    shutil.rmtree(sweep_dir / LAUNCH_DIR, ignore_errors=True)  # an earlier launch's notes
    if (sweep_dir / MULTIRUN_FILE).is_file():  # Hydra's sweeper rewrites it next
        before = sweep_dir / LAUNCH_DIR / MULTIRUN_BEFORE
        before.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(before, (sweep_dir / MULTIRUN_FILE).read_text(encoding="utf-8"))


def restore_sweep_description(sweep_dir: Path) -> None:
    """Put back the multirun.yaml the sweep folder had before a launch that a job refused
    (a folder holding other settings): the folder keeps describing the runs it holds, for
    the aggregator and the status command. Nothing to do for a new folder."""
    before = Path(sweep_dir) / LAUNCH_DIR / MULTIRUN_BEFORE
    if before.is_file():
        atomic_write_text(Path(sweep_dir) / MULTIRUN_FILE, before.read_text(encoding="utf-8"))


def release_sweep(sweep_dir: Path) -> None:
    lock = _held.pop(str(sweep_dir), None)
    if lock is not None:
        (sweep_dir / SWEEP_OWNER_FILE).unlink(missing_ok=True)  # never a stale owner
        lock.release()


def _owner(sweep_dir: Path, wait_s: float = 1.0) -> str:
    """Who holds the sweep folder; the holder writes it just after taking the lock."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            o = read_json(sweep_dir / SWEEP_OWNER_FILE)
            return f"pid {o['pid']} on {o['host']}, since {o['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return "its owner is not recorded"
            time.sleep(0.05)


def note_job(sweep_dir: Path, job_num: int, run_dir: Path, status: str, why: str) -> None:
    """Note that this launch did not complete the job's run (busy, failed, ...)."""
    note = {"run_dir": str(run_dir), "status": status, "error": why}
    atomic_write_text(sweep_dir / LAUNCH_DIR / f"{job_num}.json", json.dumps(note) + "\n")


def noted_jobs(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """This launch's notes by run folder (an unreadable note is skipped: it is only a
    hint, and the folder's own result.json is read as well)."""
    notes: dict[str, dict[str, Any]] = {}
    for path in sorted((sweep_dir / LAUNCH_DIR).glob("*.json")):
        try:
            note = read_json(path)
            notes[str(note["run_dir"])] = note
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return notes

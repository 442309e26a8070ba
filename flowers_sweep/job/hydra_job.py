"""What a Hydra job needs around its training run: what it knows of its job (`JobContext`,
read from Hydra once, at the door), its threads, its .hydra/ files, the job composed
without its `+key=` overrides (for overrides.validate_added_keys), the note a sweep's
end reads (stop signals: stopping.py), and a job that fail_fast keeps from starting.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.atomic import atomic_write_text
from flowers_sweep.errors import FlowersSweepError
from flowers_sweep.job.fail_fast import fail_fast_limit, fail_fast_tripped, note_not_started
from flowers_sweep.job.launch import drop_unused_dirs, note_job
from flowers_sweep.record.runfolder import restore_hydra_files
from flowers_sweep.record.runrecord import (
    CONFIG_FILE,
    HYDRA_FILE,
    LAUNCH_DIR,
    OVERRIDES_FILE,
    RUN_CONFIG_FILE,
)
from flowers_sweep.trainer.cpu_share import Share
from flowers_sweep.trainer.hardware import available_cpus

log = logging.getLogger("flowers_sweep")


@dataclass(frozen=True)
class JobContext:
    """What a run knows of its Hydra job: built once at the door (app.main from Hydra's
    global, api.train from its own composition) and passed down, so that nothing below
    the door reads Hydra's global state.

    `root` is `{"hydra": the job's hydra node}`, what .hydra/hydra.yaml holds.
    """

    root: DictConfig

    @property
    def hydra(self) -> DictConfig:
        return self.root.hydra

    @property
    def run_dir(self) -> Path:
        return Path(self.hydra.runtime.output_dir)

    @property
    def multirun(self) -> bool:
        return self.hydra.mode == RunMode.MULTIRUN

    @property
    def sweep_dir(self) -> Path:
        """The sweep's folder; read it only in a sweep (a single run's default
        hydra.sweep.dir is a resolver that would make a folder)."""
        return Path(self.hydra.sweep.dir)

    @property
    def launch_dir(self) -> Path | None:
        """SWEEP_DIR/.launch for a job of a sweep; None for a single run."""
        return self.sweep_dir / LAUNCH_DIR if self.multirun else None

    @property
    def job_num(self) -> int:
        return int(self.hydra.job.num)

    @property
    def overrides(self) -> list[str]:
        return list(self.hydra.overrides.task)

    @property
    def choices(self) -> dict[str, Any]:
        return dict(self.hydra.runtime.choices)

    @property
    def launcher(self) -> DictConfig:
        return self.hydra.launcher


def launcher_parallelism(launcher: Any) -> int:
    """How many jobs the launcher runs at once: joblib's `n_jobs` (as joblib counts it:
    -1 every CPU, -2 all but one), submitit's `array_parallelism`, 1 for Hydra's basic
    launcher (one job after the other) and any launcher not known here."""
    launcher = launcher or {}
    target = str(launcher.get("_target_", "")).lower()
    if "joblib" in target:
        n = int(launcher.get("n_jobs") or -1)
        return max(1, available_cpus() + 1 + n if n < 0 else n)
    if "submitit" in target:
        return max(1, int(launcher.get("array_parallelism") or 1))
    return 1


def thread_policy(setting: Any, launcher: Any, share: Share) -> Callable[[], tuple[int, str]]:
    """How many torch threads the job trains with, and why; asked before each epoch: an
    explicit `trainer.threads=N`, a SLURM job's `cpus_per_task`, or (auto) the run's
    `share` of its CPUs (trainer/cpu_share.py), a joblib launch's parallel jobs counted
    at least."""
    if setting != "auto":
        return lambda: (int(setting), f"trainer.threads={setting}")
    launcher = launcher or {}
    if launcher.get("cpus_per_task"):
        given = int(launcher.cpus_per_task)
        return lambda: (given, f"the launcher's cpus_per_task={given}")
    joblib = "joblib" in str(launcher.get("_target_", "")).lower()
    at_least = min(launcher_parallelism(launcher), available_cpus()) if joblib else 1
    return functools.partial(share.threads, at_least)


def composed_without_added(job: JobContext) -> DictConfig | None:
    """This job's config composed from its own sources without its `+`/`++` overrides,
    to tell a key that exists from one that was added; None if it cannot be composed
    (then the check is stricter, see overrides.validate_added_keys), and None without
    composing when no override adds a key: the check has nothing to tell apart, and a
    compose costs each job a tenth of a second or more."""
    try:
        kept = [o for o in job.overrides if not o.startswith("+")]
        loaded = _composed(job, kept) if len(kept) < len(job.overrides) else None
        used = [job.run_dir]
        if job.multirun:  # a single run has no sweep folder: reading
            used.append(job.sweep_dir)  # hydra.sweep.dir would make one
        drop_unused_dirs(*used)
        return loaded
    except Exception as exc:  # a check's helper must never fail the run
        log.debug("could not compose without the added keys: %s", exc)
        return None


def _composed(job: JobContext, overrides: list[str]) -> DictConfig:
    """The job's config composed anew from its own sources, with these overrides."""
    import hydra.conf  # noqa: F401  (registers Hydra's own schema)
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
    from hydra.core.plugins import Plugins

    Plugins.instance()  # the config sources (pkg://, file://) are plugins
    hc = job.hydra
    search_path = ConfigSearchPathImpl()
    for source in hc.runtime.config_sources:
        search_path.append(source.provider, f"{source.schema}://{source.path}")
    return ConfigLoaderImpl(config_search_path=search_path).load_configuration(
        hc.job.config_name, overrides, run_mode=RunMode.RUN
    )


def note_this_job(job: JobContext, status: str, why: str) -> None:
    """For the sweep's end: this launch did not complete this job (see launch.py)."""
    try:
        note_job(job.sweep_dir, job.job_num, job.run_dir, status, why)
    except Exception as exc:  # a note is a hint; it must not become the job's failure
        log.warning("could not note the job's outcome for the sweep's end: %s", exc)


def write_hydra_files(job: JobContext, cfg: DictConfig) -> None:
    """Rewrite .hydra/ from this process's own config, with the folder held.

    Hydra writes .hydra/ before the task runs and before anyone holds the folder, so a
    process that lost the race for the folder may have just overwritten them; the
    process that holds it puts back its own, the same text Hydra writes.
    """
    subdir = job.hydra.output_subdir
    if subdir is None:  # hydra.output_subdir=null: Hydra keeps no copy
        return
    hydra_dir = job.run_dir / subdir
    atomic_write_text(hydra_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg))
    atomic_write_text(hydra_dir / HYDRA_FILE, OmegaConf.to_yaml(job.root))
    atomic_write_text(hydra_dir / OVERRIDES_FILE, OmegaConf.to_yaml(job.hydra.overrides.task))


def held_back_by_fail_fast(job: JobContext, value: Any) -> bool:
    """Whether this job of a sweep must not start: `fail_fast=value` of its launch's jobs
    failed with the same reason (fail_fast.py). If so its folder is left as
    if never launched (leave_unlaunched) and the launch's end is told, to say it once.

    An invalid `value` counts as off here: the launch refuses it before any job starts
    (callbacks.SweepEnd), and a job's own check names it.
    """
    try:
        limit = fail_fast_limit(value)
    except FlowersSweepError:
        return False
    tripped = fail_fast_tripped(job.sweep_dir, limit)
    if limit is None or tripped is None:
        return False
    said = "%s: not started: fail_fast=%d: %d jobs of the launch failed with the same reason"
    log.info(said, job.run_dir, limit, tripped[0])
    leave_unlaunched(job)
    try:
        note_not_started(job.sweep_dir, job.job_num, job.run_dir, limit)
    except OSError as exc:  # a note is a hint: the folder says the job never ran
        log.warning("could not note the job for the sweep's end: %s", exc)
    return True


def leave_unlaunched(job: JobContext) -> None:
    """Undo what Hydra did to the job's folder before the task ran, for a job that will
    not run: a folder holding only what Hydra writes (.hydra/ and the job's log) is
    removed, as if the job had never been launched; a folder holding an earlier launch's
    run gets back that run's .hydra/ files and is otherwise kept; anything else is kept.
    A file that cannot be removed is only logged: the relaunch treats the folder as new.
    """
    run_dir = job.run_dir
    if (run_dir / RUN_CONFIG_FILE).is_file():
        with contextlib.suppress(OSError, FlowersSweepError):
            restore_hydra_files(run_dir)
        return
    subdir = job.hydra.output_subdir
    if subdir is not None and len(Path(subdir).parts) != 1:
        return  # a nested .hydra/ of the user's choice: keep rather than guess
    log_name = f"{job.hydra.job.name}.log"  # Hydra's job log (hydra/job_logging: default)
    hydra_dir = run_dir / subdir if subdir is not None else None
    try:
        if not {p.name for p in run_dir.iterdir()} <= {log_name, subdir}:
            return
        if hydra_dir is not None and hydra_dir.is_dir():
            files = list(hydra_dir.iterdir())
            if not {p.name for p in files} <= {CONFIG_FILE, HYDRA_FILE, OVERRIDES_FILE}:
                return
            for path in files:
                path.unlink()
            hydra_dir.rmdir()
        (run_dir / log_name).unlink(missing_ok=True)
        run_dir.rmdir()
    except OSError as exc:
        log.warning("could not remove %s, a job that did not start: %s", run_dir, exc)

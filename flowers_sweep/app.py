"""The Hydra task: one case in one run folder, whatever happens to it.

A run that fails (a bad value, a NaN loss, out of memory, broken data) records why in
its folder and lets the other runs of a sweep go on; a run interrupted or killed
resumes from its last checkpoint when the same command is run again; a completed run
is not run twice. The task lives in its own module, not `__main__`, so that launchers
running jobs in other processes (joblib, submitit) can pickle it by name.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.atomic import atomic_write_text
from flowers_sweep.config import CONFIG_MODULE, validate, validate_added_keys
from flowers_sweep.errors import (
    DivergedError,
    FlowersSweepError,
    RunFolderBusyError,
    RunFolderMismatchError,
    Terminated,
)
from flowers_sweep.gpu_slots import assigned_device
from flowers_sweep.hardware import available_cpus
from flowers_sweep.launch import note_job, register_resolvers
from flowers_sweep.runfolder import claim, hold, restore_hydra_files
from flowers_sweep.runrecord import (
    CONFIG_FILE,
    HYDRA_FILE,
    OVERRIDES_FILE,
    TRACEBACK_FILE,
    completed_result,
    read_metrics,
    stopped_record,
    write_result,
)
from flowers_sweep.train import run

log = logging.getLogger("flowers_sweep")
register_resolvers()  # before Hydra resolves hydra.run.dir / hydra.sweep.dir


def thread_count(setting: Any, launcher: Any) -> int | None:
    """Torch threads for this job: parallel joblib jobs share the CPUs evenly."""
    if setting != "auto":
        return int(setting)
    cpus = available_cpus()
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = launcher.get("n_jobs") or -1
        parallel = cpus if n_jobs < 0 else min(n_jobs, cpus)
        return max(1, cpus // parallel)
    if launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None  # torch's default: every core


def record_failure(run_dir: Path, cfg: DictConfig, status: str, exc: BaseException) -> None:
    """result.json says what went wrong, traceback.txt where; metrics.csv stays as it was.

    Recording must not become a second failure (a full disk, an unreadable metrics.csv)
    that escapes the run and sinks the sweep: it is logged and the run ends as it would.
    """
    try:
        atomic_write_text(run_dir / TRACEBACK_FILE, "".join(traceback.format_exception(exc)))
        choices = HydraConfig.get().runtime.choices
        try:
            epochs_done = len(read_metrics(run_dir, required=()))
        except ValueError:
            epochs_done = None
        record = stopped_record(
            status,
            exc,
            epochs_done,
            case=choices.get("case"),
            model=choices.get("model"),
            activation=OmegaConf.select(cfg, "model.activation"),
            epochs=OmegaConf.select(cfg, "trainer.epochs"),
            seed=OmegaConf.select(cfg, "seed"),
        )
        write_result(run_dir, record)
    except Exception as second:
        log.error("could not record the failure in %s: %s: %s", run_dir, type(second).__name__,
                  second)  # fmt: skip


@contextlib.contextmanager
def terminate_gracefully() -> Iterator[None]:
    """SIGTERM stops the run at once, recorded as interrupted, instead of being ignored.

    A cluster sends SIGTERM to pre-empt or requeue a job (`scontrol requeue`, a GraceTime
    pre-emption) and kills it KillWait seconds later. Every file is written atomically and
    the last epoch's checkpoint is always whole, so stopping anywhere is safe; exiting at
    once lets the requeued job start sooner. Only the main thread can take signals.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated("SIGTERM: the job was stopped (pre-emption, requeue or kill)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(cfg: DictConfig, run_dir: Path) -> float:
    """Skip, resume or start the run in run_dir; exceptions are the caller's to record."""
    validate(cfg)  # before the skip too: a sweeper needs the metric it asked for
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    validate_added_keys(cfg, overrides, set(hc.runtime.choices), composed_without_added(overrides))
    metric = cfg.optimized_metric
    done = completed_result(run_dir)
    if done is not None:
        restore_hydra_files(run_dir)  # Hydra rewrote them for this launch, which trains nothing
        log.info(
            "%s already holds a completed run of these settings: skipped (its files, "
            "weights and .hydra/ stay as that run left them)",
            run_dir,
        )
        return float(done.get(metric, math.nan))
    threads = thread_count(cfg.trainer.threads, HydraConfig.get().launcher)
    if threads:
        torch.set_num_threads(threads)
    choices = HydraConfig.get().runtime.choices
    t = cfg.trainer
    with terminate_gracefully(), assigned_device(t.device, t.jobs_per_gpu) as device:
        return float(run(cfg, run_dir, choices.get("case"), choices.get("model"), device)[metric])


def composed_without_added(overrides: list[str]) -> DictConfig | None:
    """This job's config composed from its own sources without its `+`/`++` overrides,
    to tell a key that exists from one that was added; None if it cannot be composed
    (then the check is stricter, see validate_added_keys)."""
    try:
        import hydra.conf  # noqa: F401  (registers Hydra's own schema)
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
        from hydra.core.plugins import Plugins

        Plugins.instance()  # the config sources (pkg://, file://) are plugins
        hc = HydraConfig.get()
        search_path = ConfigSearchPathImpl()
        for source in hc.runtime.config_sources:
            search_path.append(source.provider, f"{source.schema}://{source.path}")
        kept = [o for o in overrides if not o.startswith("+")]
        loaded = ConfigLoaderImpl(config_search_path=search_path).load_configuration(
            hc.job.config_name, kept, run_mode=RunMode.RUN
        )
        return loaded
    except Exception as exc:  # a check's helper must never fail the run
        log.debug("could not compose without the added keys: %s", exc)
        return None


def stop(message: str, code: int) -> None:
    print(f"flowers_sweep: error: {message}", file=sys.stderr)
    sys.exit(code)


def busy(run_dir: Path, exc: RunFolderBusyError, multirun: bool) -> None:
    """Another process trains in run_dir: undo Hydra's rewrite of .hydra/, touch nothing."""
    with contextlib.suppress(FlowersSweepError):  # the running process reports that
        restore_hydra_files(run_dir)
    if multirun:
        print(f"flowers_sweep: {run_dir}: skipped: {exc}", file=sys.stderr)
        note_this_job(run_dir, "skipped", "in use by another process")
        return  # the sweep goes on; its end lists the run as not trained by this launch
    stop(str(exc), 2)


def note_this_job(run_dir: Path, status: str, why: str) -> None:
    """For the sweep's end: this launch did not complete this job (see launch.py)."""
    hc = HydraConfig.get()
    try:
        note_job(Path(hc.sweep.dir), int(hc.job.num), run_dir, status, why)
    except Exception as exc:  # a note is a hint; it must not become the job's failure
        log.warning("could not note the job's outcome for the sweep's end: %s", exc)


def write_hydra_files(run_dir: Path, cfg: DictConfig) -> None:
    """Rewrite .hydra/ from this process's own config, with the folder held.

    Hydra writes .hydra/ before the task runs and before anyone holds the folder, so a
    process that lost the race for the folder may have just overwritten them; the
    process that holds it puts back its own, the same text Hydra writes.
    """
    subdir = HydraConfig.get().output_subdir
    if subdir is None:  # hydra.output_subdir=null: Hydra keeps no copy
        return
    hydra_dir = run_dir / subdir
    atomic_write_text(hydra_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg))
    atomic_write_text(hydra_dir / HYDRA_FILE, OmegaConf.to_yaml(HydraConfig.instance().cfg))
    atomic_write_text(
        hydra_dir / OVERRIDES_FILE, OmegaConf.to_yaml(HydraConfig.get().overrides.task)
    )


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        with hold(run_dir):
            value = claim_and_execute(cfg, run_dir, multirun)
    except RunFolderBusyError as exc:
        busy(run_dir, exc, multirun)
        return None
    if not multirun:  # a sweep names its folder when it starts (Hydra's launcher)
        log.info("run folder: %s", run_dir)
    return value


def claim_and_execute(cfg: DictConfig, run_dir: Path, multirun: bool) -> float | None:
    """With the folder held: check it is this run's, then run; record any failure."""
    try:
        write_hydra_files(run_dir, cfg)
        claim(run_dir, OmegaConf.to_container(cfg, resolve=True), fresh=not cfg.resume)
        return execute(cfg, run_dir)
    except RunFolderMismatchError as exc:
        log.error("%s", exc)
        stop(str(exc), 2)  # never write into another run's folder; stop the sweep too
    except (KeyboardInterrupt, Terminated) as exc:
        record_failure(run_dir, cfg, "interrupted", exc)
        if isinstance(exc, Terminated):
            print(f"flowers_sweep: {run_dir}: {exc}; rerun to resume", file=sys.stderr)
            sys.exit(128 + signal.SIGTERM)  # what a shell reports for a SIGTERM death
        print(f"flowers_sweep: {run_dir}: interrupted (Ctrl-C); run the same command again to "
              f"resume from the last completed epoch", file=sys.stderr)  # fmt: skip
        sys.exit(128 + signal.SIGINT)  # a shell's code for Ctrl-C, without a traceback
    except Exception as exc:
        return failed(cfg, run_dir, exc, multirun)


def failed(cfg: DictConfig, run_dir: Path, exc: Exception, multirun: bool) -> float:
    """Record the failure; in a sweep let the others go on, alone exit (2 for our errors).

    In a sweep the run returns NaN, which a search records as a failed trial and goes on
    (None is kept for a run left to another process: its trial is not over).
    """
    status = "diverged" if isinstance(exc, DivergedError) else "failed"
    record_failure(run_dir, cfg, status, exc)
    log.error("run %s: %s: %s", status, type(exc).__name__, exc)
    if multirun:  # the log line above is the job's word; the sweep's end groups them
        note_this_job(run_dir, status, str(exc))
        return math.nan  # the sweep goes on; its end reports every failure, once each
    if isinstance(exc, FlowersSweepError):
        stop(str(exc), 2)
    raise exc

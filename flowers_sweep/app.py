"""The Hydra task: one case in one run folder, whatever happens to it.

A run that fails (a bad value, a NaN loss, out of memory, broken data) records why in
its folder and lets the other runs of a sweep go on; a run interrupted or killed
resumes from its last checkpoint when the same command is run again; a completed run
is not run twice. How each outcome ends is outcome.py's table; this module applies it.
The task lives in its own module, not `__main__`, so that launchers running jobs in
other processes (joblib, submitit) can pickle it by name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import shlex
import sys
import traceback

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from flowers_sweep.atomic import atomic_write_text
from flowers_sweep.config import CONFIG_MODULE
from flowers_sweep.config.overrides import refuse_preset_lists, validate_added_keys
from flowers_sweep.config.validate import validate
from flowers_sweep.errors import FlowersSweepError, Terminated, TrialPrunedError
from flowers_sweep.job.hydra_job import (
    JobContext,
    composed_without_added,
    held_back_by_fail_fast,
    note_this_job,
    thread_policy,
    write_hydra_files,
)
from flowers_sweep.job.launch import register_resolvers, restore_sweep_description
from flowers_sweep.job.outcome import RULES, STOPPED, Outcome, Pruned, outcome_of
from flowers_sweep.job.stopping import is_stopping, job_signals, running_job
from flowers_sweep.record.labels import activation_label, fold_of, model_label, with_fold
from flowers_sweep.record.runfolder import claim, hold, restore_hydra_files
from flowers_sweep.record.runrecord import (
    TRACEBACK_FILE,
    completed_result,
    read_metrics,
    result_if,
    stopped_record,
    with_tags,
    write_result,
)
from flowers_sweep.search.pruning import trial_report
from flowers_sweep.trainer.cpu_share import presence
from flowers_sweep.trainer.gpu_slots import assigned_device
from flowers_sweep.trainer.training import run

log = logging.getLogger("flowers_sweep")
register_resolvers()  # before Hydra resolves hydra.run.dir / hydra.sweep.dir


def register_sweeper() -> None:
    """Make hparams_search=optuna's sweeper known to Hydra however the package was
    installed: Hydra finds plugins by listing the `hydra_plugins` package, which an
    editable install (pip install -e) does not list, so from any folder but the clone's
    root the search would end in "Unknown plugin class"."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.flowers_sweep_search.study_sweeper import StudySweeper

    Plugins.instance().register(StudySweeper)


register_sweeper()


@hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name="config")
def main(cfg: DictConfig) -> float | Pruned | None:
    """Run the case in Hydra's output folder; then end as the outcome's rule says.

    In a sweep the job registers itself with its launch (stopping.py), so that a launch
    told to stop waits for it to record its stop; a job that starts when the launch is
    already stopping does not train, nor one that starts when `fail_fast=N` of the
    launch's jobs have failed with the same reason.
    """
    job = JobContext(HydraConfig.instance().cfg)  # Hydra's global, read here only
    launch = job.launch_dir  # None: a single run, no launch to register with
    with running_job(launch, job.job_num) if launch else contextlib.nullcontext():
        if launch and is_stopping(launch):  # checked after registering: the launch sees one
            log.info("%s: not started: the launch is stopping", job.run_dir)
            return None
        if launch and held_back_by_fail_fast(job, cfg.get("fail_fast")):
            return None  # the launch's end says why, once (callbacks.SweepEnd)
        outcome, exc, value = attempt(cfg, job)
    return conclude(job, outcome, exc=exc, value=value)


def attempt(cfg: DictConfig, job: JobContext) -> tuple[Outcome, BaseException | None, float]:
    """Hold the folder, check it is this run's, run it: the outcome, with the exception
    that ended the run (None when it completed or was skipped) and the metric's value.

    A failure is recorded in the folder while it is still held (see record_failure). The
    first stop signal raises in the run; later ones wait until it has recorded its stop.
    """
    run_dir = job.run_dir
    try:
        with job_signals(), hold(run_dir):
            try:
                write_hydra_files(job, cfg)
                settings = OmegaConf.to_container(cfg, resolve=True)
                ready = functools.partial(validate_job, cfg, job)
                claim(run_dir, settings, fresh=not cfg.resume, ready=ready)
                outcome, value = execute(cfg, job)
            except (Exception, KeyboardInterrupt, Terminated) as exc:
                record_failure(job, cfg, outcome_of(exc), exc)  # while still held
                raise
    except (Exception, KeyboardInterrupt, Terminated) as exc:
        return outcome_of(exc), exc, math.nan
    return outcome, None, value


def validate_job(cfg: DictConfig, job: JobContext) -> None:
    """Every value, and every `+key=` override, before anything is trained or skipped
    (a sweeper needs the metric it asked for even from a skipped run)."""
    refuse_preset_lists(job.overrides)
    validate(cfg)
    validate_added_keys(cfg, job.overrides, set(job.choices), composed_without_added(job))


def execute(cfg: DictConfig, job: JobContext) -> tuple[Outcome, float]:
    """Skip or run (start or resume) the job's run; the optimized metric's value."""
    run_dir = job.run_dir
    done = completed_result(run_dir)
    if done is not None:
        return "skipped", float(done.get(cfg.optimized_metric, math.nan))
    if (pruned := result_if(run_dir, "pruned")) is not None:  # a relaunch of a pruned trial
        raise TrialPrunedError(pruned.get("error") or "pruned by the search")
    report = trial_report(job.hydra, cfg.optimized_metric, cfg.trainer.epochs)  # None: no trial
    choices, trainer = job.choices, cfg.trainer
    # presence: this run counts in the others' share of the CPUs (cpu_share.py)
    with presence() as share, assigned_device(trainer.device, trainer.jobs_per_gpu) as device:
        threads = thread_policy(trainer.threads, job.launcher, share)
        model = model_label(cfg.model, choices.get("model"))
        result = run(cfg, run_dir, choices.get("case"), model, device, report, threads)
    return "completed", float(result[cfg.optimized_metric])


def conclude(
    job: JobContext, outcome: Outcome, exc: BaseException | None = None, value: float = math.nan
) -> float | Pruned | None:
    """Say, note, return or exit as RULES[outcome] says."""
    rule, multirun, run_dir = RULES[outcome], job.multirun, job.run_dir
    if rule.recorded is None:  # the folder is kept as it was, but Hydra rewrote .hydra/
        with contextlib.suppress(FlowersSweepError):  # a process that holds it reports that
            restore_hydra_files(run_dir)
    if multirun and outcome == "refused":  # and the sweep's multirun.yaml, for this launch
        restore_sweep_description(job.sweep_dir)
    words = dict(run_dir=run_dir, exc=exc, kind=type(exc).__name__, status=rule.recorded)
    words["resume_with"] = resume_override(job)
    level = logging.INFO if exc is None or outcome == "pruned" else logging.ERROR
    for line in (rule.log, None if multirun else rule.log_alone):
        if line:
            log.log(level, line.format(**words))
    if multirun and outcome in STOPPED and is_stopping(job.launch_dir):
        return None  # the launching process waits for its jobs and says the one line
    if multirun and rule.in_sweep != "exit":
        if rule.noted:
            status, why = rule.noted
            note_this_job(job, status, why.format(**words))
        if rule.says_in_sweep:
            print(rule.says_in_sweep.format(**words), file=sys.stderr)
        if rule.in_sweep == "pruned":
            return Pruned(str(exc))
        return {"value": value, "none": None, "nan": math.nan}[rule.in_sweep]
    if rule.alone == 0:
        return value
    if outcome == "failed" and not isinstance(exc, FlowersSweepError):
        raise exc  # a bug: its traceback is the message
    says = rule.says_in_sweep if multirun else rule.says_alone
    print(says.format(**words), file=sys.stderr)
    sys.exit(rule.alone)


def resume_override(job: JobContext) -> str:
    """The override that makes the same command find this run's folder again."""
    if job.multirun:
        return f"hydra.sweep.dir={shlex.quote(str(job.sweep_dir))}"
    return f"hydra.run.dir={shlex.quote(str(job.run_dir))}"


def record_failure(job: JobContext, cfg: DictConfig, outcome: Outcome, exc: BaseException) -> None:
    """result.json says what went wrong, traceback.txt where; metrics.csv stays as it was.

    Nothing is written when the outcome's rule keeps the folder. Recording must not become a second
    failure (a full disk, an unreadable metrics.csv) that escapes the run and sinks the
    sweep: it is logged and the run ends as it would.
    """
    rule, run_dir = RULES[outcome], job.run_dir
    status = rule.recorded
    if status is None:
        return
    try:
        if rule.traceback:
            atomic_write_text(run_dir / TRACEBACK_FILE, "".join(traceback.format_exception(exc)))
        choices = job.choices
        try:
            rows = read_metrics(run_dir, required=())
        except ValueError:
            rows = None
        epochs_done = None if rows is None else len(rows)
        record = stopped_record(
            status,
            exc,
            epochs_done,
            case=choices.get("case"),
            model=model_label(cfg.model, choices.get("model")),
            activation=activation_label(OmegaConf.select(cfg, "model.activation")),
            epochs=OmegaConf.select(cfg, "trainer.epochs"),
            seed=OmegaConf.select(cfg, "seed"),
            best_of=(rows or []) if rule.best_so_far else None,
            traceback=rule.traceback,
        )
        record = with_fold(record, fold_of(OmegaConf.select(cfg, "dataset") or {}, prefix=""))
        write_result(run_dir, with_tags(record, OmegaConf.select(cfg, "tags")))
    except Exception as second:
        log.error(
            "could not record the failure in %s: %s: %s", run_dir, type(second).__name__, second
        )

"""The jobs a launch would run, found without launching it (the plan command): Hydra's
own expansion of the sweep, each job composed as its launch composes it and checked as
its run checks it, and what its folder holds now.

Hydra's steps, in its order: the launch's config is composed in multirun mode
(`hydra.mode` decides the mode as in Hydra's `_run_app`); its sweeper's `params` and the
command line's overrides are parsed by Hydra's grammar (a glob over a config group
needs the config loader) and crossed by `BasicSweeper.split_arguments`, so lists,
`choice`, `range` and `glob` expand as in a real launch and job N is the N-th of that
product, the number Hydra's launchers give its folder; each job is composed with the
launch's hydra overrides and its own (`load_sweep_config`). Nothing is made: the
default `${fs.unique_dir:...}` folder is only named (launch.naming_only).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from flowers_sweep.atomic import read_json
from flowers_sweep.config.composition import initialized, user_config_dir
from flowers_sweep.config.overrides import (
    check_study,
    refuse_preset_lists,
    validate_added_keys,
)
from flowers_sweep.config.validate import validate
from flowers_sweep.errors import ConfigError, FlowersSweepError
from flowers_sweep.job.hydra_job import JobContext, composed_without_added
from flowers_sweep.job.launch import naming_only, register_resolvers
from flowers_sweep.record.runfolder import changed_settings
from flowers_sweep.record.runrecord import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    RUN_CONFIG_FILE,
    RunRecordError,
    completed_result,
    read_metrics,
    read_result,
)

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# What a job's folder holds now, as the plan shows it.
DONE, PARTIAL, OTHER, NEW = "done", "partial", "other settings", "new"


@dataclass
class PlannedJob:
    """One job of the launch: its number (Hydra's), its overrides, its folder, its
    config (without the hydra node; None when it could not be composed), Hydra's group
    choices, what is wrong with it (one line each), and its folder's state."""

    num: int
    overrides: list[str]
    folder: Path | None = None
    cfg: DictConfig | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    state: str = NEW
    detail: str = ""  # the state's reason: the status and epochs, the settings that differ


@dataclass
class LaunchPlan:
    """The jobs, whether it is a sweep, and for a sweeper that picks its jobs as it
    runs (hparams_search=optuna) the line that says so (its one job is the base config)."""

    multirun: bool
    jobs: list[PlannedJob]
    sweep_dir: Path | None = None
    chosen_as_it_runs: str | None = None


def plan_launch(
    overrides: Sequence[str],
    multirun: bool,
    config_dir: str | None = None,
    config_name: str = "config",
) -> LaunchPlan:
    """The launch `python -m flowers_sweep [-m] [-cd DIR] [-cn NAME] OVERRIDES` would
    run, every job composed and checked; nothing is written.

    Raises ConfigError when the launch itself cannot be composed (an unknown group
    option, an override Hydra cannot read, a missing -cd folder): one line.
    """
    register_resolvers()
    folder = None if config_dir is None else user_config_dir(config_dir, config_name)
    with naming_only(), initialized(folder):
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().config_loader()
        return _plan(loader, config_name, list(overrides), multirun)


def _plan(loader: Any, name: str, args: list[str], multirun: bool) -> LaunchPlan:
    from hydra.types import RunMode

    probe = _composed(
        lambda: loader.load_configuration(
            name, args, run_mode=RunMode.MULTIRUN, validate_sweep_overrides=False
        )
    )
    mode = probe.hydra.mode  # as Hydra's _run_app: the config's mode, else the flag's
    if mode is None or (multirun and mode == RunMode.RUN):
        mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        args = [*args, f"hydra.mode={mode.name}"]
    if mode == RunMode.RUN:
        job = PlannedJob(0, [a for a in args if not a.startswith("hydra.")])
        _fill(job, lambda: loader.load_configuration(name, args, run_mode=RunMode.RUN), None)
        return LaunchPlan(False, [job])
    launch = _composed(lambda: loader.load_configuration(name, args, run_mode=RunMode.MULTIRUN))
    sweep_dir = Path(str(launch.hydra.sweep.dir))  # only named (naming_only)
    sweeper = launch.hydra.sweeper
    task = [str(o) for o in launch.hydra.overrides.task]
    check_study(task, launch.hydra.runtime.choices)  # as the launch's start checks it
    if sweeper.get("_target_") != BASIC_SWEEPER:  # hparams_search=optuna: trials as it runs
        base = [str(o.input_line) for o in _parsed(loader, task) if not o.is_sweep_override()]
        job = PlannedJob(0, base)
        _fill(job, lambda: loader.load_sweep_config(launch, base), sweep_dir, read_folder=False)
        job.folder = None  # a trial's folder is known once the search picks it
        job.state, job.detail = "-", "the base config"
        n_trials = sweeper.get("n_trials")
        line = (
            f"hydra.sweeper={str(sweeper.get('_target_')).rsplit('.', 1)[-1]} chooses its "
            f"jobs as it runs{f' ({n_trials} trials)' if n_trials else ''}: they cannot be "
            f"listed before; only the base config is checked, in {sweep_dir}"
        )
        return LaunchPlan(True, [job], sweep_dir, line)
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]  # its own first
    parsed = _parsed(loader, [*params, *task])
    jobs = []
    for num, job_args in enumerate(
        _composed(lambda: BasicSweeper.split_arguments(parsed, None))[0]
    ):
        job = PlannedJob(num, list(job_args))
        _fill(job, lambda a=list(job_args): loader.load_sweep_config(launch, a), sweep_dir)
        jobs.append(job)
    return LaunchPlan(True, jobs, sweep_dir)


def _parsed(loader: Any, overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=loader)
    return _composed(lambda: parser.parse_overrides(overrides))


def _composed(make: Callable[[], Any]) -> Any:
    """What `make` returns; Hydra's and OmegaConf's errors as one ConfigError line."""
    try:
        return make()
    except FlowersSweepError:
        raise
    except Exception as exc:
        raise ConfigError(one_line(exc)) from None


def one_line(exc: BaseException) -> str:
    """An error's message on one line (Hydra's run over several)."""
    text = " ".join(str(exc).split()).split(" Config search path:")[0]  # Hydra's long tail
    return text if isinstance(exc, FlowersSweepError) else (text or type(exc).__name__)


def _fill(
    job: PlannedJob,
    compose: Callable[[], DictConfig],
    sweep_dir: Path | None,
    read_folder: bool = True,
) -> None:
    """Compose the job, name its folder, check its config as its run would (app.py's
    validate_job) and read its folder's state (unless not `read_folder`: a search's base
    config, whose job 0 folder holds a trial's sampled values); what goes wrong is the
    job's error."""
    try:
        whole = compose()
        with open_dict(whole.hydra):
            if sweep_dir is not None:  # what Hydra's launchers set before the job runs
                whole.hydra.job.num = job.num
                whole.hydra.job.id = f"{whole.hydra.job.name}_{job.num}"
                job.folder = sweep_dir / str(OmegaConf.select(whole, "hydra.sweep.subdir"))
            else:
                job.folder = Path(str(whole.hydra.run.dir))
            whole.hydra.runtime.output_dir = str(job.folder.absolute())
        job.choices = dict(whole.hydra.runtime.choices)
        cfg = copy.deepcopy(whole)
        with open_dict(cfg):
            del cfg["hydra"]
        job.cfg = cfg
        refuse_preset_lists(job.overrides)
        validate(cfg)
        if any(str(o).startswith("+") for o in job.overrides):
            context = JobContext(OmegaConf.create({"hydra": whole.hydra}))
            base = composed_without_added(context)
            validate_added_keys(cfg, context.overrides, set(job.choices), base)
        settings = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # a bad value, a key Hydra refuses: the job's one line
        job.errors.append(one_line(exc))
        return
    if not read_folder:
        return
    job.state, job.detail = folder_state(job.folder, settings, cfg.trainer.epochs)
    if job.state == OTHER and cfg.resume is False:
        job.state, job.detail = NEW, "resume=false: its run is started over"
    elif job.state == OTHER:
        job.errors.append(
            f"{job.folder} holds a run with other settings: {job.detail}; the launch would "
            f"stop there (run these in a new hydra.sweep.dir, or delete that folder)"
        )
    elif job.state in (DONE, PARTIAL) and cfg.resume is False:
        job.detail = "resume=false: started over"


def folder_state(run_dir: Path, settings: dict[str, Any], epochs: int) -> tuple[str, str]:
    """What `run_dir` holds for the run of `settings` (a resolved config), and why:
    OTHER (its run_config.json records other experiment settings: what runfolder.claim
    refuses; the reason names up to three), DONE (a completed result), PARTIAL (a run
    started: metrics.csv, a checkpoint, or a stopped or unreadable result.json) or NEW.
    Reads files only."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return NEW, ""
    record = run_dir / RUN_CONFIG_FILE
    if record.is_file():
        try:
            shown = changed_settings(read_json(record)["config"], settings)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return PARTIAL, f"{RUN_CONFIG_FILE} unreadable ({type(exc).__name__})"
        if shown:
            return OTHER, shown
    if completed_result(run_dir) is not None:
        return DONE, ""
    try:
        result = read_result(run_dir)
        rows = len(read_metrics(run_dir, required=()))
    except RunRecordError as exc:
        return PARTIAL, f"unreadable: {exc}"
    status = (result or {}).get("status")
    if result is None and rows == 0 and not (run_dir / CHECKPOINT_FILE).is_file():
        return NEW, ""
    if result is None and not (run_dir / METRICS_FILE).is_file():
        return PARTIAL, "started, no epoch recorded"
    return PARTIAL, f"{status or 'unfinished'}, {rows}/{epochs} epochs"

"""How a search runs (StudySweeper's work), shaped by what a cluster user needs:

- `n_trials` is the size of the study: a relaunch runs only the trials still missing,
  and a larger `n_trials` adds just the difference;
- a trial's job folder is named by its Optuna trial number, so no relaunch writes into
  a finished trial's folder;
- a trial left RUNNING by a killed launch is run again with its own parameters in its
  own folder, where the run resumes from its checkpoint. Only one launch runs in a
  sweep folder at a time (SweepEnd holds SWEEP_DIR/.sweep.lock from before the sweeper
  starts), so a RUNNING trial found at the start belongs to no live process;
- a run that fails or diverges (it returns NaN) is a FAIL trial and the search goes on;
  a run its pruner stopped is PRUNED; a run busy in another process (None) is left;
- once the trials are done, `confirm.top_k` > 0 runs the best ones again on fresh
  seeds, as the search's last phase (_confirm.py).
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.trial import TrialState

from flowers_sweep.atomic import atomic_write_text
from flowers_sweep.errors import ConfigError
from flowers_sweep.job.hydra_job import launcher_parallelism
from flowers_sweep.job.outcome import Pruned
from flowers_sweep.record.runrecord import FINAL_METRICS, MULTIRUN_FILE
from flowers_sweep.search.confirm import confirm_settings
from flowers_sweep.search.space import search_space, trial_overrides
from flowers_sweep.search.study import (
    STORAGES,
    build_pruner,
    build_sampler,
    open_storage,
    storage_url,
)

from ._confirm import run_confirmations

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"
DIRECTIONS = ("maximize", "minimize")
SEARCH_ATTR = "flowers_sweep.search"  # the study's user attribute: what it searches
AUTO = "auto"  # hydra.sweeper.n_jobs: as many trials at once as the launcher runs jobs


def trials_at_once(n_jobs: int | str, launcher: Mapping[str, Any] | None) -> int:
    """The trials launched together: `hydra.sweeper.n_jobs`, or with `auto` (the
    default) as many as the launcher runs jobs in parallel (launcher_parallelism). With
    a number below that, a line says the launcher could run more."""
    parallel = launcher_parallelism(launcher)
    if n_jobs == AUTO:
        return parallel
    if n_jobs < parallel:
        log.info("hydra.sweeper.n_jobs=%d: %d trial(s) at a time, though the launcher runs "
                 "%d jobs at once (hydra.sweeper.n_jobs=auto uses them all)", n_jobs, n_jobs,
                 parallel)  # fmt: skip
    return int(n_jobs)


def check(sweeper: Any) -> None:
    """The sweeper's own settings, before anything is opened or launched."""
    for key in ("n_trials", "n_jobs"):
        value = getattr(sweeper, key)
        if key == "n_jobs" and value == AUTO:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            also = f" or {AUTO}" if key == "n_jobs" else ""
            raise ConfigError(f"hydra.sweeper.{key}={value}: must be an integer >= 1{also}")
    confirm_settings(getattr(sweeper, "confirm", None))
    if sweeper.direction not in DIRECTIONS:
        raise ConfigError(f"hydra.sweeper.direction={sweeper.direction}: allowed values are "
                          f"{', '.join(DIRECTIONS)}")  # fmt: skip
    if not isinstance(sweeper.study_name, str) or not sweeper.study_name:
        raise ConfigError(f"hydra.sweeper.study_name={sweeper.study_name}: must be a name")
    seed = sweeper.seed
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"hydra.sweeper.seed={seed}: must be an integer or null")
    metric = sweeper.config.get("optimized_metric")
    if metric not in FINAL_METRICS:
        raise ConfigError(f"optimized_metric={metric}: allowed values are "
                          f"{', '.join(FINAL_METRICS)}")  # fmt: skip
    _, wanted = FINAL_METRICS[metric]
    if sweeper.direction != wanted:
        raise ConfigError(f"hydra.sweeper.direction={sweeper.direction} with optimized_metric="
                          f"{metric}: a search must {wanted} it")  # fmt: skip


def same_search(
    study: optuna.Study, fixed: Mapping[str, str], space: Mapping[str, BaseDistribution],
    sweep_dir: Path | None, url: str,
) -> None:  # fmt: skip
    """Refuse to continue a study with another search: other fixed settings, another
    space, or (for a storage outside the sweep folder) another sweep folder.

    A study's name is only model and activation: without this, a search with another
    optimizer or epoch count would find the old study full and report its trials.
    """
    this: dict[str, object] = {
        "fixed": sorted(f"{k}={v}" for k, v in fixed.items()),
        "space": {k: distribution_to_json(d) for k, d in sorted(space.items())},
    }
    if sweep_dir is not None:  # only one launch at a time holds a sweep folder
        this["sweep_dir"] = str(sweep_dir.absolute())
    known = study.user_attrs.get(SEARCH_ATTR)
    if known is None:  # a new study, or one from before the check
        study.set_user_attr(SEARCH_ATTR, this)
        return
    if known == this:
        return
    differs = []
    for part in ("fixed", "space", "sweep_dir"):
        if known.get(part) != this.get(part):
            differs.append(
                f"{part}: {_shown(known.get(part))} there, {_shown(this.get(part))} now"
            )
    raise ConfigError(
        f"study {study.study_name} in {url} holds another search ({'; '.join(differs)}): "
        "set hydra.sweep.dir (or hydra.sweeper.study_name) for a new one, or give the "
        "study's settings to continue it"
    )


def _shown(value: object) -> str:
    if isinstance(value, list):
        return " ".join(value) or "none"
    if isinstance(value, dict):
        return ",".join(value) or "none"
    return str(value)


def run_search(sweeper: Any, arguments: list[str]) -> list[Any]:
    """Create or continue the study and run its missing trials; returns their results."""
    check(sweeper)
    space, fixed = search_space(sweeper.params, arguments)
    if not space:
        raise ConfigError("nothing to search: hydra.sweeper.params and the command give no "
                          "interval(...), range(...) or choice(...)")  # fmt: skip
    sampler = build_sampler(sweeper.sampler, sweeper.seed)
    pruner = build_pruner(sweeper.pruner)
    sweep_dir = Path(sweeper.sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)  # an SQLite or journal study lives here
    storage = open_storage(sweeper.storage, sweep_dir)
    study = optuna.create_study(
        study_name=sweeper.study_name, storage=storage, sampler=sampler, pruner=pruner,
        direction=sweeper.direction, load_if_exists=True,
    )  # fmt: skip
    url = storage_url(sweeper.storage, sweep_dir)
    in_folder = sweeper.storage in STORAGES or sweeper.storage is None
    same_search(study, fixed, space, None if in_folder else sweep_dir, url)
    # What Hydra's basic sweeper leaves and the aggregator and status read: what is
    # searched; written once the search is known to be this folder's (a refused launch
    # leaves the folder's description as it was).
    save_atomically(sweeper.config, sweep_dir / MULTIRUN_FILE)
    trials = study.get_trials(deepcopy=False)
    if trials:
        # The sampler was seeded as at the study's start: continuing, it would draw the
        # first trials' parameters again. Fresh random numbers instead.
        study.sampler.reseed_rng()
    stale = [t for t in trials if t.state == TrialState.RUNNING]
    to_go = max(sweeper.n_trials - (len(trials) - len(stale)), 0)
    log.info("Study %s in %s: %d trial(s) recorded, %d to run (watch it: optuna-dashboard "
             "%s)", study.study_name, url, len(trials), to_go, shlex.quote(url))  # fmt: skip
    returns: list[Any] = []
    at_once = trials_at_once(sweeper.n_jobs, OmegaConf.select(sweeper.config, "hydra.launcher"))
    if to_go:
        log.info("%d trial(s) at a time", min(at_once, to_go))
    resumed = stale[:to_go]
    for start in range(0, len(resumed), at_once):
        batch = resumed[start : start + at_once]
        for t in batch:
            log.info("trial %d was left running by an earlier launch: resuming it", t.number)
        returns += launch(sweeper, study, [(t.number, t.params) for t in batch], fixed)
    to_go -= len(resumed)
    while to_go > 0:
        asked = [study.ask(space) for _ in range(min(at_once, to_go))]
        returns += launch(sweeper, study, [(t.number, t.params) for t in asked], fixed)
        to_go -= len(asked)
    save_results(study, sweep_dir)
    return returns + run_confirmations(sweeper, study, fixed)


Numbered = tuple[int, dict[str, Any]]  # a trial's number and parameters


def launch(
    sweeper: Any, study: optuna.Study, batch: Sequence[Numbered], fixed: dict[str, str]
) -> list[Any]:
    """Launch the trials, each as the job numbered like it; tell the study how each ended.

    A launcher numbers a batch's jobs consecutively from `initial_job_idx`, so trials
    whose numbers do not follow each other go in separate launches.
    """
    returns: list[Any] = []
    groups: list[list[Numbered]] = []
    for trial in batch:
        if groups and trial[0] == groups[-1][-1][0] + 1:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    for group in groups:
        overrides = [trial_overrides(params, fixed) for _, params in group]
        rets = sweeper.launcher.launch(overrides, initial_job_idx=group[0][0])
        for (number, _), ret in zip(group, rets, strict=True):
            tell(study, number, ret)
        returns += rets
    return returns


def tell(study: optuna.Study, number: int, ret: JobReturn) -> None:
    """Record in the study how the trial's run ended (see the module's docstring)."""
    try:
        value = ret.return_value  # raises what the job raised
    except Exception as exc:
        log.warning("trial %d failed: %s: %s", number, type(exc).__name__, exc)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        return
    if isinstance(value, Pruned):
        log.info("trial %d %s", number, value.reason)
        study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        return
    if value is None:
        log.warning("trial %d is running in another process: left to it", number)
        return
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        log.warning("trial %d failed (its run returned %s)", number, ret.return_value)
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        return
    study.tell(number, value, skip_if_finished=True)


def save_results(study: optuna.Study, sweep_dir: Path) -> None:
    """optimization_results.yaml: the best trial so far (Optuna's best: completed only)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        log.warning("no trial of study %s has completed yet", study.study_name)
        return
    best = study.best_trial
    log.info("Best trial %d: value %s, parameters %s", best.number, best.value, best.params)
    results = {"name": "optuna", "best_params": best.params, "best_value": best.value,
               "best_trial": best.number}  # fmt: skip
    save_atomically(OmegaConf.create(results), sweep_dir / RESULTS_FILE)


def save_atomically(config: Any, path: Path) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(config))

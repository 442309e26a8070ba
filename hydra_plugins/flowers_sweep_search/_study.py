"""The work of `StudySweeper` (study_sweeper.py): Hydra's Optuna sweeper, made to
continue a study the way a cluster user needs.

The upstream sweeper (hydra-optuna-sweeper 1.3) runs `n_trials` more trials at each
launch, numbers their job folders from 0 again, and stops the search at the first run
that fails. On a shared cluster a search is killed, requeued and extended, so here:

- `n_trials` is the size of the study: a relaunch runs only the trials still missing,
  and a larger `n_trials` adds just the difference;
- a trial's job folder is named by its Optuna trial number, so no relaunch writes into
  a finished trial's folder;
- a trial left RUNNING by a killed launch is run again with its own parameters in its
  own folder, where the run resumes from its checkpoint;
- a run that fails or diverges (it returns NaN) is told to Optuna as a failed trial and
  the search goes on; a run busy in another process (it returns None) is left to it.

Everything else (the search space grammar, samplers, storage) is the upstream plugin's.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# optuna 2.10 uses SQLAlchemy 1.4 APIs that 2.0 removed; pyproject pins sqlalchemy<2 for
# that reason, so its "prepare for 2.0" warning tells a user nothing they can act on.
os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")

import optuna
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import OmegaConf
from optuna.trial import TrialState

log = logging.getLogger(__name__)
RESULTS_FILE = "optimization_results.yaml"


def trial_overrides(params: dict[str, Any]) -> tuple[str, ...]:
    return tuple(f"{name}={value}" for name, value in params.items())


class StudyImpl(OptunaSweeperImpl):
    def sweep(self, arguments: list[str]) -> None:
        space, fixed = self._search_space(arguments)
        directions = self._get_directions()
        if len(directions) != 1:
            raise ValueError(f"hydra.sweeper.direction={directions}: one direction only")
        Path(self.sweep_dir).mkdir(parents=True, exist_ok=True)  # SQLite storage lives here
        # What Hydra's basic sweeper leaves and the aggregator reads: what was searched.
        save_atomically(self.config, Path(self.sweep_dir) / "multirun.yaml")
        study = optuna.create_study(
            study_name=self.study_name, storage=self.storage, sampler=self.sampler,
            directions=directions, load_if_exists=True,
        )  # fmt: skip
        if study.trials:
            # The sampler was seeded as at the study's start: continuing, it would draw
            # the first trials' parameters again. Fresh random numbers instead.
            study.sampler.reseed_rng()
        stale = [t for t in study.trials if t.state == TrialState.RUNNING]
        to_go = self.n_trials - (len(study.trials) - len(stale))
        log.info("Study %s in %s: %d trial(s) recorded, %d to run", study.study_name,
                 self.storage, len(study.trials), max(to_go, 0))  # fmt: skip
        for trial in stale[: max(to_go, 0)]:
            log.info("trial %d was left running by an earlier launch: resuming it", trial.number)
            self._run(study, [trial.number], [trial_overrides({**trial.params, **fixed})])
            to_go -= 1
        while to_go > 0:
            batch = [study.ask() for _ in range(min(self.n_jobs, to_go))]
            overrides = self._configure_trials(batch, space, fixed)
            self._run(study, [t.number for t in batch], overrides)
            to_go -= len(batch)
        self._save_results(study)

    def _search_space(self, arguments: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        self._process_searchspace_config()
        space, fixed = create_params_from_overrides(
            [*self._parse_sweeper_params_config(), *arguments]
        )
        space = {**(self.search_space_distributions or {}), **space}
        return {k: v for k, v in space.items() if k not in fixed}, fixed

    def _run(
        self, study: optuna.Study, numbers: list[int], overrides: Sequence[Sequence[str]]
    ) -> None:
        """Launch trials whose numbers follow each other, as their job numbers."""
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise RuntimeError(f"trial numbers {numbers} are not consecutive: is another "
                               f"process adding trials to study {study.study_name}?")  # fmt: skip
        returns = self.launcher.launch(overrides, initial_job_idx=numbers[0])
        for number, ret in zip(numbers, returns, strict=True):
            tell(study, number, ret)

    def _save_results(self, study: optuna.Study) -> None:
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not done:
            log.warning("no trial of study %s has completed yet", study.study_name)
            return
        best = study.best_trial
        log.info("Best trial %d: value %s, parameters %s", best.number, best.value, best.params)
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value,
                   "best_trial": best.number}  # fmt: skip
        save_atomically(OmegaConf.create(results), Path(self.sweep_dir) / RESULTS_FILE)


def save_atomically(config: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    OmegaConf.save(config, tmp)
    tmp.replace(path)


def tell(study: optuna.Study, number: int, ret: JobReturn) -> None:
    try:
        value = ret.return_value  # raises what the job raised
    except Exception as exc:
        log.warning("trial %d failed: %s: %s", number, type(exc).__name__, exc)
        study.tell(number, state=TrialState.FAIL)
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
        study.tell(number, state=TrialState.FAIL)
        return
    study.tell(number, value)

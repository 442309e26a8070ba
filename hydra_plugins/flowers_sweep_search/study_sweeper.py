"""The `hparams_search=optuna` sweeper: an Optuna study that a cluster user can kill,
requeue, extend and prune (see _study.py for how a search runs).

Hydra imports every module under `hydra_plugins` at each start to find plugins, so this
one stays light: Optuna (a second or more to import) loads only when a search runs.
flowers_sweep's entry point also registers the class itself (app.py), because Hydra's
scan cannot see into an editable install's `hydra_plugins`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StudySweeper(Sweeper):
    """Runs `n_trials` trials of one Optuna study, each a Hydra job named by its trial
    number, then (`confirm.top_k` > 0) the best trials again on fresh seeds (_confirm.py).
    Arguments mirror `conf/hydra/sweeper/optuna.yaml` (docs/tracking.md)."""

    def __init__(
        self,
        study_name: str,
        storage: str | None = "sqlite",
        direction: str = "maximize",
        n_trials: int = 20,
        n_jobs: int | str = "auto",
        sampler: Any = "tpe",
        pruner: Any = "none",
        seed: int | None = None,
        params: DictConfig | None = None,
        confirm: DictConfig | None = None,
    ) -> None:
        self.study_name, self.storage, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs, self.seed = n_trials, n_jobs, seed
        self.sampler, self.pruner, self.params = sampler, pruner, params
        self.confirm = confirm  # {top_k, seeds}: the best trials again on fresh seeds

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> Any:
        from flowers_sweep.errors import FlowersSweepError

        from ._study import run_search

        try:
            return run_search(self, arguments)
        except FlowersSweepError as exc:  # one line, as every error meant for the user
            from flowers_sweep.job.launch import release_sweep
            from flowers_sweep.job.outcome import refuse

            release_sweep(self.sweep_dir)  # SweepEnd's end will not run: let go of it here
            refuse("flowers_sweep", exc)

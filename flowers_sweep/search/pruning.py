"""A search trial's run, reporting to its Optuna trial each epoch and stopping when pruned.

When `hparams_search=optuna` launches a run, the run opens the study itself (study.py:
the storage named in `hydra.sweeper`) and finds its trial by number (the sweeper names
each job after its trial, so `hydra.job.num` is it). After every epoch it reports the
epoch's validation accuracy (validation loss when the search minimises test_loss) and
asks the search's pruner whether to go on; a pruned run raises TrialPrunedError, which
app.py records as status `pruned`, and the sweeper tells Optuna PRUNED. This works the
same in a joblib worker or on a SLURM node: the run talks to the storage, not to the
sweeper. A resumed run does not report again the epochs its trial already has.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.types import RunMode

from flowers_sweep.errors import TrialPrunedError
from flowers_sweep.record.runrecord import FINAL_METRICS
from flowers_sweep.search.confirm import CONFIRM_DIR

log = logging.getLogger(__name__)
SWEEPER = "hydra_plugins.flowers_sweep_search.study_sweeper.StudySweeper"


class TrialReport:
    """Reports one run's epochs to its trial: `report(epoch, row)` after each epoch.

    Raises TrialPrunedError from `report` when the pruner says stop.
    """

    def __init__(
        self, trial: Any, pruner_name: str, column: str, reported: set[int], last: int = 0
    ) -> None:
        self.trial, self.pruner_name, self.column = trial, pruner_name, column
        self.reported = reported  # epochs the trial already has (a resumed run)
        self.last = last  # the run's last epoch: reported, never pruned (it is done)

    def __call__(self, epoch: int, row: Mapping[str, float]) -> None:
        value = float(row[self.column])
        if epoch not in self.reported:
            self.trial.report(value, epoch)
            self.reported.add(epoch)
        if epoch != self.last and self.trial.should_prune():
            raise TrialPrunedError(
                f"pruned by the search's {self.pruner_name} after epoch {epoch} "
                f"({self.column} {value:.4g})"
            )


def sweep_dir_of(hc: Any) -> Path:
    """The sweep folder as the launch saw it (a relative one is from the launch's cwd)."""
    return Path(hc.runtime.cwd) / str(hc.sweep.dir)


def trial_report(hc: Any, optimized_metric: str, epochs: int = 0) -> TrialReport | None:
    """The reporter of this job's trial, or None when the job is not a search's trial.

    `hc` is the job's HydraConfig; `epochs` the run's last epoch, which is never
    pruned (the run is done). A trial the study does not have (a job run by hand in a
    search folder) or has already finished gets no reporter: it trains to the end, as
    does a confirmation run (confirm.py), which is no trial.
    """
    sweeper = hc.sweeper
    if hc.mode != RunMode.MULTIRUN or sweeper.get("_target_") != SWEEPER:
        return None
    if str(hc.sweep.subdir).startswith(f"{CONFIRM_DIR}/"):
        return None
    import optuna

    from flowers_sweep.search.study import build_pruner, open_storage

    storage = open_storage(sweeper.storage, sweep_dir_of(hc))
    pruner = build_pruner(sweeper.pruner)
    name, number = str(sweeper.study_name), int(hc.job.num)
    try:
        study_id = storage.get_study_id_from_name(name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    except KeyError:
        log.warning("study %s has no trial %d: this run reports to no trial", name, number)
        return None
    frozen = storage.get_trial(trial_id)
    if frozen.state.is_finished():
        log.warning("trial %d of study %s is already %s: not reported to it", number, name,
                    frozen.state.name)  # fmt: skip
        return None
    study = optuna.load_study(study_name=name, storage=storage, pruner=pruner,
                              sampler=optuna.samplers.RandomSampler())  # fmt: skip
    trial = optuna.trial.Trial(study, trial_id)
    column, _ = FINAL_METRICS[optimized_metric]
    reported = set(frozen.intermediate_values)
    return TrialReport(trial, type(pruner).__name__, column, reported, last=epochs)

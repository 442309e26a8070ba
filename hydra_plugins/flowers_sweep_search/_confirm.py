"""The search's last phase: its best trials run again on fresh seeds (`confirm.top_k`).

The rules (which trials, which seeds, which folders, chosen.json) are
flowers_sweep/search/confirm.py's; this module applies them to the study and launches
the runs through the sweep's own launcher (basic, joblib, submitit), one Hydra job per
(trial, seed), each in SWEEP_DIR/confirm/<trial>-seed<s>/ by a per-job
`hydra.sweep.subdir` override (Hydra composes each job from the launch's hydra
overrides plus the job's own, so the launcher puts the job's folder there). Their job
numbers come after every trial's, so no two jobs of a launch share a number (the
launch's notes and running jobs are kept by job number). A confirmation tells the
study nothing: it is not a trial.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.study import StudyDirection
from optuna.trial import TrialState

from flowers_sweep.errors import ConfigError
from flowers_sweep.search.confirm import (
    choose,
    confirm_settings,
    confirmation_overrides,
    pending,
    read_chosen,
    rerun_statuses,
    write_chosen,
)

log = logging.getLogger(__name__)


def run_confirmations(sweeper: Any, study: optuna.Study, fixed: Mapping[str, str]) -> list[Any]:
    """Launch the confirmation runs still missing; their JobReturns ([] when off, when
    nothing is left to run, or while a trial is still running in another process)."""
    top_k, seeds = confirm_settings(getattr(sweeper, "confirm", None))
    if top_k == 0:
        return []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running:
        numbers = ", ".join(str(t.number) for t in running)
        log.warning("not confirming yet: trial(s) %s still running in another process; "
                    "relaunch once they have ended", numbers)  # fmt: skip
        return []
    base = OmegaConf.select(sweeper.config, "seed", default=0)
    if not isinstance(base, int) or isinstance(base, bool):
        raise ConfigError(f"seed={base}: confirmation seeds are seed+1, seed+2, ...: give "
                          "an integer seed")  # fmt: skip
    done = [
        (t.number, float(t.value), t.params)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]
    maximize = study.direction == StudyDirection.MAXIMIZE
    sweep_dir = Path(sweeper.sweep_dir)
    chosen, changed = choose(
        read_chosen(sweep_dir), done, top_k, maximize, lambda p: p.get("seed", base)
    )
    if not chosen:
        log.warning("no trial has completed: nothing to confirm")
        return []
    if changed:
        write_chosen(sweep_dir, chosen, str(sweeper.config.optimized_metric), maximize)
    if len(chosen) < top_k:
        which = "it" if len(chosen) == 1 else f"those {len(chosen)}"
        log.warning("hydra.sweeper.confirm.top_k=%d, but only %d trial(s) completed (pruned "
                    "and failed trials are never confirmed): confirming %s", top_k,
                    len(chosen), which)  # fmt: skip
    jobs = pending(sweep_dir, chosen, seeds)
    trials = ", ".join(str(c.trial) for c in chosen)
    log.info("Confirming trial(s) %s on %d fresh seeds each: %d run(s) to go, %d done "
             "(SWEEP_DIR/confirm/)", trials, seeds, len(jobs),
             len(chosen) * seeds - len(jobs))  # fmt: skip
    again = rerun_statuses(sweep_dir, jobs)
    if again:
        said = ", ".join(f"{n} {status}" for status, n in sorted(again.items()))
        caveat = " (from the same checkpoint a diverged run may diverge again)"
        log.info(
            "of those to go, %s ran before without completing: each runs again from its "
            "last checkpoint, as in any sweep's relaunch%s",
            said,
            caveat if "diverged" in again else "",
        )
    if not jobs:
        return []
    overrides = [confirmation_overrides(c, s, fixed) for c, s in jobs]
    first = len(study.get_trials(deepcopy=False))  # after every trial's job number
    return list(sweeper.launcher.launch(overrides, initial_job_idx=first))

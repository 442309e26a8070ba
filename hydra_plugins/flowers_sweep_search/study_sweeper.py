"""The `hparams_search=optuna` preset's sweeper: Hydra's Optuna sweeper with resumable
studies (see _study.py for what it changes, and why).

Hydra imports every public module under `hydra_plugins` at each start to find plugins,
so this one stays light: Optuna (seconds to import) loads only when a search runs.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class StudySweeper(OptunaSweeper):
    def __init__(self, **kwargs: Any) -> None:
        from ._study import StudyImpl

        self.sweeper = StudyImpl(**kwargs)

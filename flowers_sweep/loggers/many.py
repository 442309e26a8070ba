"""Several loggers at once: `logger=many` (TensorBoard and MLflow), or any set of them.

    python -m flowers_sweep logger=many                         # TensorBoard + MLflow
    python -m flowers_sweep logger=many +logger@logger.loggers.wandb=wandb   # + W&B
    python -m flowers_sweep logger=many '~logger.loggers.mlflow'            # - MLflow

Each member is a logger node of its own (a preset of conf/logger/ placed under
`logger.loggers.<name>`), built with the arguments it names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flowers_sweep.config import targets
from flowers_sweep.errors import ConfigError
from flowers_sweep.loggers.base import LOGGER_ARGUMENTS, RunLogger


class ManyLoggers:
    """Calls each of `loggers` in turn (by name order); closes every one that started,
    whatever happens to the others."""

    @staticmethod
    def check_node(node: Any, key: str) -> None:
        members = node.get("loggers")
        if not isinstance(members, Mapping) or not members:
            raise ConfigError(
                f"{key}.loggers is invalid: it needs one or more logger nodes by name, "
                "e.g. logger=many or +logger@logger.loggers.wandb=wandb"
            )
        for name, member in members.items():
            fn = targets.check(f"{key}.loggers.{name}", member, supplied=LOGGER_ARGUMENTS)
            check = getattr(fn, "check_node", None)
            if callable(check):
                check(member, f"{key}.loggers.{name}")

    def __init__(
        self,
        loggers: Mapping[str, Callable[..., RunLogger] | None],
        run_dir: Path,
        resumed_after: int,
        settings: Mapping[str, Any],
        tags: list[str],
        name: str,
    ) -> None:
        supplied = dict(run_dir=run_dir, resumed_after=resumed_after, settings=settings)
        supplied |= dict(tags=tags, name=name)
        self.loggers: list[RunLogger] = []
        try:
            for key in sorted(loggers):
                factory = loggers[key]
                if factory is None:  # a member set to null on the command line
                    continue
                given = {k: v for k, v in supplied.items() if targets.names_parameter(factory, k)}
                self.loggers.append(factory(**given))
        except BaseException:
            self.close()
            raise

    def log_epoch(self, row: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log_epoch(row)

    def log_final(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log_final(settings, metrics)

    def close(self) -> None:
        for logger in self.loggers:
            try:
                logger.close()
            except Exception:  # the others still close
                continue

"""Weights & Biases: one W&B run per run folder, the runs of a sweep in one group.

Offline by default: the run's files go to RUN_DIR/wandb/ and nothing touches the
network; `wandb sync RUN_DIR/wandb/offline-run-*` uploads them later. `mode=online`
logs as it trains (after `wandb login`).

A resumed run continues its W&B run: the run id is kept in the run folder's
trackers.json and given back to `wandb.init(id=..., resume="allow")`. Epochs go on an
`epoch` axis (W&B's define_metric), and an epoch already logged by the process that
stopped is not logged again (the note of the last one logged is written before it is
sent, so a kill between the two loses that point rather than doubling it).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flowers_sweep.errors import ConfigError
from flowers_sweep.loggers.base import (
    FINAL_PREFIX,
    Guarded,
    log,
    read_note,
    require,
    sweep_label,
    write_note,
)

TRACKER = "wandb"
MODES = ("offline", "online", "disabled")  # wandb.init's modes


class WandbLogger:
    """Each run of a sweep a W&B run in the sweep's group (`group`: None names it by the
    sweep folder, as MLflow's experiment).

    Logged: the settings as the run's config (plus `run_dir`, the run folder), every
    metrics.csv column per epoch against `epoch`, the final metrics as `final/...` in
    the run's summary, the run's `tags` as W&B tags. A run that ends before its end is
    finished with exit code 1 (W&B shows it failed); result.json says why.
    """

    @staticmethod
    def check_node(node: Any, key: str) -> None:
        require("wandb", "wandb", key)
        mode = node.get("mode", "offline")
        if mode not in MODES:
            raise ConfigError(f"{key}.mode={mode!r} is invalid: allowed values are {MODES}")

    def __init__(
        self,
        run_dir: Path,
        resumed_after: int,
        settings: Mapping[str, Any],
        tags: list[str],
        name: str,
        project: str = "flowers_sweep",
        entity: str | None = None,
        mode: str = "offline",
        group: str | None = None,
    ) -> None:
        require("wandb", "wandb", "logger")
        import wandb

        self.run_dir = Path(run_dir).absolute()
        self.guard = Guarded(TRACKER)
        note = read_note(self.run_dir, TRACKER)
        run_id = str(note.get("id") or secrets.token_hex(6))  # W&B ids: [a-z0-9]
        self.logged_through = int(note.get("logged_through", 0))
        write_note(self.run_dir, TRACKER, {"id": run_id, "logged_through": self.logged_through})
        config = {**settings, "run_dir": str(self.run_dir)}
        if mode != "online":
            # The process-wide mode too: W&B's telemetry (0.31) reads it, not the run's
            # mode, and would post to the W&B server from an offline run.
            wandb.setup(settings=wandb.Settings(mode=mode))
        self.run = wandb.init(
            project=project,
            entity=entity,
            mode=mode,
            id=run_id,
            resume="allow",
            group=group or sweep_label(self.run_dir),
            name=name,
            tags=list(tags),
            config=config,
            dir=str(self.run_dir),
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")
        self.finished = False
        log.info("wandb: run %s (%s)%s", run_id, mode, " continued" if note else "")

    def log_epoch(self, row: dict[str, float]) -> None:
        epoch = int(row["epoch"])
        if epoch <= self.logged_through:  # logged before the stop; one point per epoch
            return
        self.logged_through = epoch
        write_note(self.run_dir, TRACKER, {"id": self.run.id, "logged_through": epoch})
        self.guard.call(f"log epoch {epoch}", self.run.log, dict(row))

    def log_final(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        final = {FINAL_PREFIX + k: v for k, v in metrics.items()}
        self.guard.call("log the final metrics", self.run.summary.update, final)
        self.finished = True

    def close(self) -> None:
        self.guard.call("end the run", self.run.finish, exit_code=0 if self.finished else 1)
